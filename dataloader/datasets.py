"""One dataset for every stream: a split's videos found on disk, one sample of a video per item.

Items are ``(clips, label)``; what ``clips`` holds is the stream's sample builder's business
(dataloader.samples): the dataset finds the frame folders, reads JPEG files and hands the
builder a ``read(i)`` function.
"""

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from dataloader.defaults import SAMPLE_OPTIONS
from dataloader.frame_index import IndexedVideo, index_videos
from dataloader.layout import Layout, frame_path
from dataloader.packs import PackError, read_member
from dataloader.samples import FlowSampleBuilder, RgbSampleBuilder, SampleBuilder
from dataloader.splits import Video
from utils.errors import UserError

_JPEG_END = b"\xff\xd9"


class DataError(UserError):
    """A frame file that is missing or cannot be decoded."""


def _bad_frame(what: str, path: str) -> DataError:
    video = os.path.basename(os.path.dirname(path))
    return DataError(
        f"{what} frame {path} (video {video}); re-extract the video, or run with --skip-bad-videos"
    )


# (color, half): OpenCV's decoding flags. Half size is JPEG's own scaled decoding (cheaper).
_DECODE_FLAGS = {
    (True, False): cv2.IMREAD_COLOR,
    (True, True): cv2.IMREAD_REDUCED_COLOR_2,
    (False, False): cv2.IMREAD_GRAYSCALE,
    (False, True): cv2.IMREAD_REDUCED_GRAYSCALE_2,
}


def decode_jpeg(data: np.ndarray, color: bool, half: bool = False) -> np.ndarray | None:
    """JPEG bytes -> uint8 BGR [H, W, 3] or gray [H, W], at half size if asked; None when they
    do not decode. BGR stays: the sample builders write RGB planes from it (no whole-frame copy).
    """
    return cv2.imdecode(data, _DECODE_FLAGS[color, half])


def read_bytes(path: str) -> np.ndarray:
    """A frame file's bytes; a missing one is a DataError."""
    try:  # fewer system calls than open().read(): a third of a small frame's reading time
        fd = os.open(path, os.O_RDONLY)
        try:
            data = np.empty(os.fstat(fd).st_size, np.uint8)
            return data[: os.readv(fd, [data])]  # shorter only if the file shrank meanwhile
        finally:
            os.close(fd)
    except OSError:
        raise _bad_frame("missing", path) from None


def pack_bytes(pack: str, member: str) -> np.ndarray:
    """A packed frame's bytes (dataloader.packs); a missing or unreadable one is a DataError
    naming it ``<pack>/<member>``."""
    try:
        return read_member(pack, member)
    except KeyError:
        raise _bad_frame("missing", f"{pack}/{member}") from None
    except (OSError, PackError) as err:
        raise DataError(
            f"unreadable pack {pack} ({err}); re-extract or repack the video, or run with "
            "--skip-bad-videos"
        ) from None


def decode_checked(data: np.ndarray, color: bool, half: bool, path: str) -> np.ndarray:
    """Decode a frame's bytes; a truncated or undecodable one is a DataError naming ``path``."""
    if _JPEG_END not in data[-64:].tobytes():
        raise _bad_frame("truncated", path)
    image = decode_jpeg(data, color, half)
    if image is None:
        raise _bad_frame("corrupt", path)
    return image


def read_jpeg(path: str, color: bool, half: bool = False) -> np.ndarray:
    """Decode one frame to uint8 BGR [H, W, 3] or gray [H, W]; a bad file is a DataError."""
    return decode_checked(read_bytes(path), color, half, path)


def read_packed_jpeg(pack: str, member: str, color: bool, half: bool = False) -> np.ndarray:
    """``read_jpeg`` of a frame in a pack: the same bytes, decoded the same way."""
    return decode_checked(pack_bytes(pack, member), color, half, f"{pack}/{member}")


def worker_init(worker_id: int) -> None:
    """DataLoader workers decode in parallel already: keep OpenCV to one thread each."""
    cv2.setNumThreads(1)


def before_workers(workers: int) -> None:
    """Call before a DataLoader forks ``workers`` decoding processes.

    OpenCV's thread pool does not survive fork: a forked child that touches it hangs forever
    when the parent had used it (a second run in one Python process, a notebook, a test). The
    parent of decoding workers decodes nothing itself, so it gives its pool up first.
    """
    if workers > 0:
        cv2.setNumThreads(1)


class FrameDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        data_root: str | Path,
        videos: list[Video],
        train: bool,
        builder: SampleBuilder,
        *,
        layout: Layout = Layout(),
        cache: bool = True,
        strict: bool = True,
    ):
        """``strict=False`` records missing videos in ``self.missing`` instead of raising and
        keeps empty ones, so that dataloader.checks can report or drop every bad video at once.
        """
        self.videos = list(videos)
        self.train = train
        self.builder = builder
        self.modality = builder.modality
        self.layout = layout
        self.data_root = Path(data_root)
        self.missing: list[str] = []
        self.items: list[IndexedVideo] = self.find_items(cache, None if strict else self.missing)
        empty = [item.dirs[0] for item in self.items if item.num_frames < 1]
        if empty and strict:
            others = f" and {len(empty) - 1} other videos" if len(empty) > 1 else ""
            raise UserError(
                f"no {self.modality} frames in {empty[0]}{others}; re-extract them or drop them"
            )

    def find_items(self, cache: bool, missing: list[str] | None) -> list[IndexedVideo]:
        """The split's videos on disk (dataloader.frame_index; a subclass finds others)."""
        return index_videos(self.data_root, self.videos, self.modality, self.layout, cache, missing)

    @property
    def in_channels(self) -> int:
        return self.builder.in_channels

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

    def reader(self, item: IndexedVideo):
        """``read(i, half=False)``: frame i of the video from disk (at half size if asked);
        one image, or (x, y) for flow. Its folders' files, or its pack's members."""
        color = self.modality == "rgb"
        if item.pack:
            reads = [
                lambda i, half=False, t=template: read_packed_jpeg(
                    item.pack, t % (i + 1), color, half
                )
                for template in item.templates
            ]
        else:
            reads = [
                lambda i, half=False, d=folder, p=pattern: read_jpeg(
                    frame_path(d, p, i), color, half
                )
                for folder, (_, pattern) in zip(
                    item.dirs, self.layout.modality(self.modality), strict=True
                )
            ]
        if len(reads) == 1:
            return reads[0]
        return lambda i, half=False: tuple(read(i, half) for read in reads)

    def __getitem__(self, index: int):
        item = self.items[index]
        return self.builder(self.reader(item), item.num_frames, self.train), item.label


def _split_options(options: dict) -> tuple[dict, dict]:
    """(sample builder options, dataset options) out of one keyword set."""
    sample = {k: options.pop(k) for k in (*SAMPLE_OPTIONS, "stack_length") if k in options}
    return sample, options


def SpatialDataset(data_root, videos, train, **options) -> FrameDataset:  # noqa: N802
    """The spatial stream's dataset: RGB frames (options of RgbSampleBuilder and FrameDataset)."""
    sample, rest = _split_options(options)
    return FrameDataset(data_root, videos, train, RgbSampleBuilder(**sample), **rest)


def MotionDataset(data_root, videos, train, **options) -> FrameDataset:  # noqa: N802
    """The motion stream's dataset: stacks of flow frames (options of FlowSampleBuilder and FrameDataset)."""
    sample, rest = _split_options(options)
    return FrameDataset(data_root, videos, train, FlowSampleBuilder(**sample), **rest)
