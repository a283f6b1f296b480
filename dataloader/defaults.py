"""The sample options every stream's command line offers, and the motion stream's stack length:
named once here, importable without torch or OpenCV (a command line reads them before parsing)."""

NUM_SEGMENTS = 3  # TSN's training segments: one snippet from each of 3 equal parts
CROP_SIZE = 224  # the side of a sample's square crops
SAMPLE_OPTIONS = ("num_segments", "test_snippets", "test_sequences", "crop_size", "ten_crop")
STACK_LENGTH = 10  # flow frames per motion sample, as in the two-stream paper
CLIP_LENGTH = 16  # frames per clip of the clip stream (C3D, torchvision video models)
VIDEO_SHORT_SIDE = 256  # frames decoded from videos are resized to it, as extraction's default
CLIP_SHORT_SIDE = 128  # the short side clip crops are taken at: "resize to 128, crop 112"
# Snippets per test video (frames, flow stacks or clips by stream), as the two-stream reference
# implementation; TSN's word for what one sampled position gives.
TEST_SNIPPETS = 19
# Test sequences of a recurrent head when none are given: this many K-segment sequences at
# different offsets, scores averaged (an RNN meets at test the length and spacing it learnt).
RECURRENT_TEST_SEQUENCES = 3
