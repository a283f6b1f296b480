"""Training straight from video files (``--videos DIR``): a split's videos found as files, each
sample's frames decoded where it reads them (dataloader.video_frames), resized as extraction
resizes, then sampled and cropped exactly as frames from disk.

Frame counts come from demuxing (no decoding) and are cached with each file's modification
time, as frame folders' counts are (dataloader.frame_index). Only RGB streams read videos: flow
must be extracted first.
"""

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dataloader.datasets import DataError, FrameDataset
from dataloader.defaults import VIDEO_SHORT_SIDE
from dataloader.frame_index import FrameCounter
from dataloader.open_files import OpenFiles
from dataloader.samples import SampleBuilder
from dataloader.splits import Video
from dataloader.video_frames import (
    OPEN_VIDEOS,
    BadVideo,
    VideoIndex,
    VideoReader,
    decoded_count,
    index_video,
)
from utils.errors import UserError
from utils.video_names import VIDEO_EXTENSIONS, video_key

_TABLE = (".", "video-packets")  # the frame counter's table of video files


@dataclass(frozen=True)
class IndexedVideoFile:
    """A split video found as a file: its path and what demuxing told of it."""

    name: str
    label: int
    path: str
    index: VideoIndex

    @property
    def num_frames(self) -> int:
        return self.index.num_frames

    @property
    def dirs(self) -> tuple[str, ...]:
        """Where the video's frames are, as FrameDataset's items say it: the file."""
        return (self.path,)


def _bad(problem) -> DataError:
    return DataError(f"bad video: {problem}; replace the file, or run with --skip-bad-videos")


def find_video_files(videos_dir: Path, wanted: set[str]) -> dict[str, str]:
    """Video key -> path of the video files under ``videos_dir`` at any depth (as extraction
    finds them: the extensions of utils.video_names, any case); a wanted name found twice is
    refused."""
    found: dict[str, str] = {}
    for path in sorted(videos_dir.rglob("*")):
        if not path.name.lower().endswith(VIDEO_EXTENSIONS) or not path.is_file():
            continue
        key = video_key(path.name)
        if key in found and key in wanted:
            raise UserError(
                f"two video files are named {path.stem!r} ({found[key]} and {path}); "
                "rename one so each video name is unique"
            )
        found.setdefault(key, str(path))
    return found


class VideoCounter(FrameCounter):
    """Frame counts and keyframes of video files, kept in the frame index cache of the videos
    folder with each file's modification time (a changed file is demuxed again)."""

    def video_index(self, root: Path, path: str) -> VideoIndex:
        table = self.table(*_TABLE)
        name = os.path.relpath(path, root)
        mtime = os.stat(path).st_mtime_ns
        cached = table.get(name)
        if cached and cached[0] == mtime:
            return VideoIndex(cached[1], tuple(tuple(k) for k in cached[2]))
        index = index_video(path)
        table[name] = [mtime, index.num_frames, [list(k) for k in index.keyframes]]
        self.dirty = True
        return index


def index_video_files(
    videos_dir, videos: list[Video], cache: bool = True, missing: list[str] | None = None
) -> list[IndexedVideoFile]:
    """Find and count every split video's file. Absent or unreadable files are an error naming
    them; with a ``missing`` list, absent ones are listed there and unreadable ones kept with
    no frames (for dataloader.checks to report)."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise UserError(f"--videos {root} is not a folder; give the folder holding the videos")
    files = find_video_files(root, {video_key(v.name) for v in videos})
    counter = VideoCounter(root, cache)
    items, absent = [], []
    for video in videos:
        path = files.get(video_key(video.name))
        if path is None:
            absent.append(video.name)
            continue
        try:
            index = counter.video_index(root, path)
        except BadVideo as err:
            if missing is None:
                raise _bad(err) from None
            index = VideoIndex(0, ())
        if index.num_frames < 1 and missing is None:
            raise _bad(f"no frames in {path}")
        items.append(IndexedVideoFile(video.name, video.label, path, index))
    counter.save()
    if missing is not None:
        missing.extend(absent)
    elif absent:
        others = f" and {len(absent) - 1} other videos" if len(absent) > 1 else ""
        raise UserError(
            f"no video file for {absent[0]}{others} of the split under --videos {root}; "
            "check --videos and the split files"
        )
    return items


class VideoDataset(FrameDataset):
    """FrameDataset's items read from video files: frame i of a video is decoded on demand and
    resized to ``short_side`` (0: as stored), BGR as cv2.imread gives an extracted frame."""

    video_reader = VideoReader  # what opens a video (bench/storage_bench.py tries decoder threads)

    def __init__(
        self,
        videos_dir: str | Path,
        videos: list[Video],
        train: bool,
        builder: SampleBuilder,
        *,
        short_side: int = VIDEO_SHORT_SIDE,
        cache: bool = True,
        strict: bool = True,
    ):
        if builder.modality != "rgb":
            raise UserError(
                f"{builder.modality} samples cannot be read from video files; extract them "
                "first (tools/extract_frames_flow.py) and use --data-root"
            )
        self.short_side = short_side
        self.open_videos = OpenFiles(OPEN_VIDEOS)
        super().__init__(videos_dir, videos, train, builder, cache=cache, strict=strict)

    def find_items(self, cache: bool, missing: list[str] | None) -> list[IndexedVideoFile]:
        return index_video_files(self.data_root, self.videos, cache, missing)

    def reader(self, item: IndexedVideoFile):
        """``read(i, half=False)``: frame i of the video; a bad video is a DataError."""

        def read(i: int, half: bool = False):
            try:
                video = self.open_videos.get(
                    item.path, partial(self.video_reader, index=item.index)
                )
                return video.image(i, self.short_side, half)
            except BadVideo as err:
                raise _bad(err) from None

        return read

    def problems(self, item: IndexedVideoFile) -> list[str]:
        """What is wrong with one video file (dataloader.checks): it does not open or decode,
        or it decodes to fewer frames than its packets count. Every frame is decoded."""
        try:
            decoded = decoded_count(item.path)
        except BadVideo as err:
            return [f"bad video: {err}"]
        if decoded < max(item.num_frames, 1):
            return [
                f"bad video {item.path}: it decodes to {decoded} frames, not the "
                f"{item.num_frames} its packets count"
            ]
        return []
