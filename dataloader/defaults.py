"""The sample options every stream's command line offers, and the motion stream's stack length:
named once here, importable without torch or OpenCV (a command line reads them before parsing)."""

SAMPLE_OPTIONS = ("num_segments", "test_frames", "crop_size", "ten_crop")
STACK_LENGTH = 10  # flow frames per motion sample, as in the two-stream paper
