"""What one item of a stream is: which frames a video gives, cropped how, stacked in what shape.

A sample builder reads frames through a ``read(i)`` function, so the same code serves the
datasets (frames from JPEG files) and tools/predict.py (frames decoded and turned into flow in
memory): a prediction sees exactly what evaluation sees. Colour frames are BGR, as OpenCV decodes
them; samples are RGB (dataloader.transforms). ``read(i, half=True)`` decodes at half the size.
Shapes (uint8):

- training: ``[K, C, S, S]``, one snippet per TSN segment, all with the same random crop;
- test: ``[crops, N, C, S, S]``, N uniformly spaced snippets under each of 1 (centre) or 10
  crops; the model scores every crop's sequence and the crops' scores are averaged. With
  ``test_sequences`` M (recurrent heads), ``[crops * M, K, C, S, S]`` instead: M sequences of the
  training's K segments at different offsets, so the head meets the length and spacing it
  learnt; their scores are averaged like crops'.

A clip stream's snippet is a clip, ``[3, T, S, S]`` in place of ``[C, S, S]`` (ClipSampleBuilder);
a flow-clip stream's, ``[2, T, S, S]`` (FlowClipSampleBuilder).
"""

import numpy as np
import torch

from dataloader.defaults import (
    CLIP_LENGTH,
    CLIP_SHORT_SIDE,
    CROP_SIZE,
    NUM_SEGMENTS,
    STACK_LENGTH,
    TEST_SNIPPETS,
)
from dataloader.sampling import (
    clip_indices,
    num_clip_starts,
    num_stack_starts,
    segment_indices,
    sequence_indices,
    stack_indices,
    uniform_indices,
)
from dataloader.transforms import (
    FLOW_SCALES,
    TSN_SCALES,
    Crop,
    crop_resize_planes,
    flow_clip,
    multiscale_crop,
    random_square_crop,
    rgb_clip,
    test_crops,
)
from utils.errors import UserError


class OnDemand:
    """``frames[i]``: ``read(i)`` when asked, kept by nobody; ``first`` (whose size sets the
    crops) is read at once and handed over at its turn. A sample holds one decoded frame at a
    time, still in the CPU's cache while dataloader.transforms.rgb_clip cuts it."""

    def __init__(self, read, first: int):
        self.read, self.first_id, self.first = read, first, read(first)

    def __getitem__(self, i: int):
        if i == self.first_id and self.first is not None:
            frame, self.first = self.first, None
            return frame
        return self.read(i)


class SampleBuilder:
    """Positions and crops shared by every stream; subclasses say what a position reads."""

    modality = ""  # which frame folders a video needs: "rgb" or "flow" (dataloader.layout)
    in_channels = 0
    scales = TSN_SCALES  # training crop sizes, fractions of the short side

    def __init__(
        self,
        *,
        num_segments: int = NUM_SEGMENTS,
        test_snippets: int = TEST_SNIPPETS,
        test_sequences: int | None = 0,
        crop_size: int = CROP_SIZE,
        ten_crop: bool = False,
    ):
        if num_segments < 1 or test_snippets < 1 or crop_size < 1:
            raise UserError("--num-segments, --test-snippets and --crop-size must be at least 1")
        if test_sequences is not None and test_sequences < 0:
            raise UserError(
                "--test-sequences must be at least 0 (0: --test-snippets in one sequence)"
            )
        self.num_segments = num_segments
        self.test_snippets = test_snippets
        self.test_sequences = test_sequences or 0
        self.crop_size = crop_size
        self.ten_crop = ten_crop

    def positions(self, length: int, train: bool) -> np.ndarray:
        """Sampled positions out of ``length`` candidates: TSN segments or uniform test points."""
        if train:
            return segment_indices(length, self.num_segments)
        if self.test_sequences:
            return sequence_indices(length, self.num_segments, self.test_sequences).reshape(-1)
        return uniform_indices(length, self.test_snippets)

    def crops(self, width: int, height: int, train: bool) -> list[Crop]:
        """One crop for every frame of the sample (training), centre or ten crops (test)."""
        if train:
            return [multiscale_crop(width, height, scales=self.scales)]
        return test_crops(width, height, self.ten_crop)

    def __call__(self, read, num_frames: int, train: bool) -> torch.Tensor:
        """The sample of a video of ``num_frames`` frames whose frame ``i`` is ``read(i)``."""
        clips, num_crops = self.build(read, num_frames, train)
        if train:
            return clips
        if self.test_sequences:  # crop-major, then sequence: one row per (crop, sequence)
            return clips.view(num_crops * self.test_sequences, self.num_segments, *clips.shape[1:])
        return clips.view(num_crops, -1, *clips.shape[1:])

    def build(self, read, num_frames: int, train: bool) -> tuple[torch.Tensor, int]:
        """[crops * N, C, S, S] uint8 snippets, crop-major, and the number of crops."""
        raise NotImplementedError

    def indices(self, num_frames: int, train: bool) -> np.ndarray:
        """The positions ``read`` is called with, one row per snippet where a snippet reads
        several (random for training)."""
        raise NotImplementedError

    def test_reads(self, num_frames: int) -> list[int]:
        """Which positions the test sample of a ``num_frames`` video reads, sorted: a streaming
        reader decodes only these (tools/predict.py)."""
        return np.unique(self.indices(num_frames, train=False)).tolist()


class RgbSampleBuilder(SampleBuilder):
    """The spatial stream: single RGB frames; ``read(i)`` gives an [H, W, 3] BGR image."""

    modality = "rgb"
    in_channels = 3

    def indices(self, num_frames, train):
        return self.positions(num_frames, train)

    def build(self, read, num_frames, train):
        idx = self.indices(num_frames, train)
        first = int(idx[0])
        frames = OnDemand(read, first)
        height, width = frames.first.shape[:2]
        crops = self.crops(width, height, train)
        return rgb_clip(frames, idx, crops, self.crop_size), len(crops)


class FlowSampleBuilder(SampleBuilder):
    """The motion stream: stacks of ``stack_length`` consecutive flow frames, x and y interleaved.

    ``read(i)`` gives flow frame i as (x, y) gray images. Channel 2j is the x-flow and 2j+1 the
    y-flow of the stack's j-th flow frame. A video with fewer flow frames than ``stack_length``
    repeats its last flow frame to fill the stack.
    """

    modality = "flow"
    scales = FLOW_SCALES

    def __init__(self, *, stack_length: int = STACK_LENGTH, **options):
        if stack_length < 1:
            raise UserError("--stack-length must be at least 1")
        super().__init__(**options)
        self.stack_length = stack_length

    @property
    def in_channels(self) -> int:
        return 2 * self.stack_length

    def indices(self, num_frames, train):
        length = self.stack_length
        starts = self.positions(num_stack_starts(num_frames, length), train)
        return stack_indices(starts, length, num_frames)

    def build(self, read, num_frames, train):
        idx = self.indices(num_frames, train)
        flows, width, height = read_flows(read, idx)
        crops = self.crops(width, height, train)
        return flow_clip(flows, idx, crops, self.crop_size), len(crops)


def read_flows(read, idx: np.ndarray) -> tuple[dict, int, int]:
    """Each flow frame ``idx`` names, once, as (x, y) images; and their width and height."""
    flows = {i: read(i) for i in np.unique(idx).tolist()}
    height, width = flows[int(idx.flat[0])][0].shape
    return flows, width, height


class ClipSampleBuilder(SampleBuilder):
    """The clip stream: clips of ``clip_length`` RGB frames, every ``frame_stride``-th one.

    Training takes ``num_segments`` clips, each at a random start within its equal segment of the
    video, with one random crop and flip for the whole sample; test takes ``test_snippets`` clips at
    uniformly spaced starts, under the centre crop (or ten crops). Crops follow the C3D and
    torchvision video convention "short side 128, crop 112": a crop of ``crop_size`` pixels of
    the frame scaled to a short side of ``short_side``, cut from the unscaled frame and resized
    once. A video shorter than a clip repeats its last frame. Snippets are ``[3, T, S, S]``.

    Frames whose short side is at least twice ``short_side`` (340x256 ones for 128) are decoded
    at half size, where the crop needs no resize: decoding costs less, and the sample differs
    from a full-size decode by JPEG's scaled decoding only (tests/test_fast_samples.py).
    """

    modality = "rgb"
    in_channels = 3

    def __init__(
        self,
        *,
        clip_length: int = CLIP_LENGTH,
        frame_stride: int = 1,
        short_side: int = CLIP_SHORT_SIDE,
        **options,
    ):
        super().__init__(**options)
        if clip_length < 1 or frame_stride < 1:
            raise UserError("--clip-length and --frame-stride must be at least 1")
        if short_side < self.crop_size:
            raise UserError(
                f"--clip-short-side {short_side} must be at least --crop-size {self.crop_size}"
            )
        self.clip_length = clip_length
        self.frame_stride = frame_stride
        self.short_side = short_side

    def clip_crops(self, width: int, height: int, train: bool) -> list[Crop]:
        """Square crops of crop_size / short_side of the frame's short side."""
        base = min(width, height)
        side = max(1, min(base, int(round(base * self.crop_size / self.short_side))))
        if train:
            return [random_square_crop(width, height, side)]
        return test_crops(width, height, self.ten_crop, side)

    def read_frames(self, read, ids: list[int]) -> dict:
        """Frames ``ids`` by index, at half size where that still has a short side of at least
        ``short_side`` (the crops then need no resize)."""
        first = read(ids[0], half=True)
        if min(first.shape[:2]) < self.short_side:
            return {i: read(i) for i in ids}
        return {i: first if i == ids[0] else read(i, half=True) for i in ids}

    def indices(self, num_frames, train):
        length, stride = self.clip_length, self.frame_stride
        starts = self.positions(num_clip_starts(num_frames, length, stride), train)
        return clip_indices(starts, length, stride, num_frames)

    def build(self, read, num_frames, train):
        idx = self.indices(num_frames, train)
        length = self.clip_length
        frames = self.read_frames(read, np.unique(idx).tolist())
        height, width = frames[int(idx[0, 0])].shape[:2]
        crops = self.clip_crops(width, height, train)
        size, n = self.crop_size, len(idx)
        out = np.empty((len(crops) * n, 3, length, size, size), np.uint8)
        for c, crop in enumerate(crops):
            for k, frame_ids in enumerate(idx.tolist()):
                for t, i in enumerate(frame_ids):
                    crop_resize_planes(frames[i], crop, size, out[c * n + k, :, t])
        return torch.from_numpy(out), len(crops)


class FlowClipSampleBuilder(ClipSampleBuilder):
    """The flow-clip stream (two-stream I3D's flow half): clips of ``clip_length`` consecutive
    flow frames, every ``frame_stride``-th one, ``[2, T, S, S]`` with x-flow in channel 0 and
    y-flow in channel 1.

    The clip stream's positions, clip length, stride and crops ("short side 128, crop 112"); a
    mirrored crop reverses x-flow, as in the motion stream (dataloader.transforms.flow_clip).
    ``read(i)`` gives flow frame i as (x, y) gray images, read at full size (the crop is resized).
    """

    modality = "flow"
    in_channels = 2

    def build(self, read, num_frames, train):
        idx = self.indices(num_frames, train)
        flows, width, height = read_flows(read, idx)
        crops = self.clip_crops(width, height, train)
        stacks = flow_clip(flows, idx, crops, self.crop_size)  # [crops*N, T*2, S, S]: x, y, x, ...
        clips = stacks.unflatten(1, (self.clip_length, 2)).transpose(1, 2)
        return clips.contiguous(), len(crops)
