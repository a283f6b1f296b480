"""The two streams' datasets: sampled RGB frames or stacked flow frames of one video per item.

Both return ``(clips, label)`` with ``clips`` a float32 tensor [N, C, H, W]: N = num_segments
snippets in training, ``test_frames`` (x10 with ten-crop) at test. The streams differ only in
which files a position reads and how they are stacked; sampling, cropping and decoding are shared.
"""

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from dataloader.frame_index import IndexedVideo, index_videos
from dataloader.layout import Layout, frame_path
from dataloader.sampling import num_stack_starts, segment_indices, stack_indices, uniform_indices
from dataloader.splits import Video
from dataloader.transforms import Crop, flow_clip, multiscale_crop, rgb_clip, test_crops
from utils.errors import UserError

_JPEG_END = b"\xff\xd9"


class DataError(UserError):
    """A frame file that is missing or cannot be decoded."""


def _bad_frame(what: str, path: str) -> DataError:
    video = os.path.basename(os.path.dirname(path))
    return DataError(
        f"{what} frame {path} (video {video}); re-extract the video, or run with --skip-bad-videos"
    )


def read_jpeg(path: str, color: bool) -> np.ndarray:
    """Decode one frame to uint8 RGB [H, W, 3] or gray [H, W]; a bad file is a DataError."""
    try:
        with open(path, "rb") as file:
            data = np.frombuffer(file.read(), np.uint8)
    except OSError:
        raise _bad_frame("missing", path) from None
    if _JPEG_END not in data[-64:].tobytes():
        raise _bad_frame("truncated", path)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB if color else cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise _bad_frame("corrupt", path)
    return image


def worker_init(worker_id: int) -> None:
    """DataLoader workers decode in parallel already: keep OpenCV to one thread each."""
    cv2.setNumThreads(1)


class FrameDataset(torch.utils.data.Dataset):
    modality = ""  # "rgb" or "flow"

    def __init__(
        self,
        data_root: str | Path,
        videos: list[Video],
        train: bool,
        *,
        num_segments: int = 3,
        test_frames: int = 19,
        crop_size: int = 224,
        ten_crop: bool = False,
        layout: Layout = Layout(),
        cache: bool = True,
        strict: bool = True,
    ):
        """``strict=False`` records missing videos in ``self.missing`` instead of raising and
        keeps empty ones, so that dataloader.checks can report or drop every bad video at once.
        """
        if num_segments < 1 or test_frames < 1 or crop_size < 1:
            raise UserError("--num-segments, --test-frames and --crop-size must be at least 1")
        self.videos = list(videos)
        self.train = train
        self.num_segments = num_segments
        self.test_frames = test_frames
        self.crop_size = crop_size
        self.ten_crop = ten_crop
        self.layout = layout
        self.data_root = Path(data_root)
        self.missing: list[str] = []
        self.items: list[IndexedVideo] = index_videos(
            data_root, self.videos, self.modality, layout, cache, None if strict else self.missing
        )
        empty = [item.dirs[0] for item in self.items if item.num_frames < 1]
        if empty and strict:
            others = f" and {len(empty) - 1} other videos" if len(empty) > 1 else ""
            raise UserError(
                f"no {self.modality} frames in {empty[0]}{others}; re-extract them or drop them"
            )

    @property
    def names(self) -> list[str]:
        return [item.name for item in self.items]

    @property
    def labels(self) -> list[int]:
        return [item.label for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def drop(self, names) -> None:
        """Leave these videos out of the run (see dataloader.checks)."""
        names = set(names)
        self.items = [item for item in self.items if item.name not in names]
        self.missing = [name for name in self.missing if name not in names]

    def positions(self, length: int) -> np.ndarray:
        """Sampled positions out of ``length`` candidates: TSN segments or uniform test points."""
        if self.train:
            return segment_indices(length, self.num_segments)
        return uniform_indices(length, self.test_frames)

    def crops(self, width: int, height: int) -> list[Crop]:
        """One crop for every frame of the sample (training), centre or ten crops (test)."""
        if self.train:
            return [multiscale_crop(width, height)]
        return test_crops(width, height, self.ten_crop)


class SpatialDataset(FrameDataset):
    """RGB frames: one per TSN segment in training, ``test_frames`` uniform ones at test."""

    modality = "rgb"
    in_channels = 3

    def __getitem__(self, index: int):
        item = self.items[index]
        (folder,) = item.dirs
        idx = self.positions(item.num_frames)
        frames = {
            i: read_jpeg(frame_path(folder, self.layout.rgb_pattern, i), color=True)
            for i in np.unique(idx).tolist()
        }
        height, width = frames[int(idx[0])].shape[:2]
        return rgb_clip(frames, idx, self.crops(width, height), self.crop_size), item.label


class MotionDataset(FrameDataset):
    """Stacks of ``stack_length`` consecutive flow frames, x and y interleaved in the channels.

    Channel 2j is the x-flow and 2j+1 the y-flow of the stack's j-th flow frame, so the first
    flow frame lands in channels 0 and 1. A video with fewer flow frames than ``stack_length``
    repeats its last flow frame to fill the stack.
    """

    modality = "flow"

    def __init__(self, *args, stack_length: int = 10, **kwargs):
        if stack_length < 1:
            raise UserError("--stack-length must be at least 1")
        self.stack_length = stack_length
        super().__init__(*args, **kwargs)

    @property
    def in_channels(self) -> int:
        return 2 * self.stack_length

    def __getitem__(self, index: int):
        item = self.items[index]
        x_dir, y_dir = item.dirs
        length = self.stack_length
        starts = self.positions(num_stack_starts(item.num_frames, length))
        idx = stack_indices(starts, length, item.num_frames)
        flows = {
            i: (
                read_jpeg(frame_path(x_dir, self.layout.flow_x_pattern, i), color=False),
                read_jpeg(frame_path(y_dir, self.layout.flow_y_pattern, i), color=False),
            )
            for i in np.unique(idx).tolist()
        }
        height, width = flows[int(idx[0, 0])][0].shape
        return flow_clip(flows, idx, self.crops(width, height), self.crop_size), item.label
