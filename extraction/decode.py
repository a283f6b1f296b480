"""Raw video -> RGB frames in memory, with PyAV: decoding, resizing, probing, finding videos.

The core of tools/extract_frames_flow.py (which writes the frames as JPEG folders) and of
tools/predict.py (which classifies a clip without writing anything), so both see the same frames.
Frames are resized so the short side is ``short_side`` (aspect kept, the long side rounded down to
an even number: 320x240 -> 340x256, as the published UCF101 frames). Flow from them:
extraction/tvl1.py.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from dataloader.frame_size import resize_short_side
from dataloader.video_frames import open_video
from utils.video_names import VIDEO_EXTENSIONS


class DecodeError(Exception):
    """A video that cannot be decoded (corrupt, no video stream, no frames)."""


class TruncatedVideo(DecodeError):
    """A video that gave fewer frames than its container declares: cut short or damaged."""


class TooShortVideo(DecodeError):
    """A video of fewer than 2 frames: no frame pair, so no optical flow."""


# Frames a whole video may decode short of its container's count: HMDB51's AVIs declare one
# frame more than FFmpeg decodes from them.
TRUNCATION_SLACK = 2


@dataclass
class VideoInfo:
    """What the container says: frame rate (0.0 when unknown), frame count (0 when unknown)."""

    fps: float
    frames: int


@dataclass
class DecodedVideo:
    """Frames of one video: ``frames`` is [N, H, W, 3] uint8 RGB; ``fps`` as the stream says."""

    frames: np.ndarray
    fps: float

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])


def probe_video(path) -> VideoInfo:
    """Frame rate and declared frame count of the first video stream, without decoding."""
    with open_video(path, DecodeError) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(float(rate) if rate else 0.0, int(stream.frames or 0))


def video_fps(path) -> float:
    """Frame rate of the first video stream (0.0 where the file does not say)."""
    return probe_video(path).fps


def check_complete(path, decoded: int, declared: int, max_frames: int | None = None) -> None:
    """Raise TruncatedVideo when ``decoded`` frames fall short of the ``declared`` ones (of the
    first ``max_frames``) by more than TRUNCATION_SLACK; a count of 0 (unknown) passes."""
    wanted = declared if max_frames is None else min(declared, max_frames)
    if declared and decoded < wanted - TRUNCATION_SLACK:
        raise TruncatedVideo(
            f"{path}: truncated: {decoded} of the {declared} frames its container declares "
            "decoded (the file is cut short or damaged; download or copy it again)"
        )


def iter_frames(path, short_side: int | None = 256, max_frames: int | None = None) -> Iterator:
    """Yield the frames of ``path`` as HxWx3 uint8 RGB, resized (see ``resize_short_side``).

    Streams, so a long video never sits in memory whole. Raises DecodeError on a bad file.
    """
    if max_frames is not None and max_frames <= 0:
        return
    with open_video(path, DecodeError) as container:
        count = 0
        try:
            for frame in container.decode(video=0):
                yield resize_short_side(frame.to_ndarray(format="rgb24"), short_side)
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except av.FFmpegError as err:
            declared = container.streams.video[0].frames
            of = f" of the {declared} frames its container declares" if declared else " frames"
            raise TruncatedVideo(
                f"{path}: truncated: decoding stopped with an error after {count}{of}: {err}"
            ) from err


def count_frames(path) -> int:
    """How many frames ``path`` holds, from its packets (no decoding: fast for a long video)."""
    with open_video(path, DecodeError) as container:
        try:
            return sum(1 for packet in container.demux(video=0) if packet.size)
        except av.FFmpegError as err:
            raise DecodeError(f"{path}: cannot read its packets: {err}") from err


def iter_raw_frames(path) -> Iterator:
    """Yield the decoded frames of ``path`` as PyAV frames, unconverted: a caller that needs
    only some of them converts only those (``frame.to_ndarray(format="rgb24")``)."""
    with open_video(path, DecodeError) as container:
        count = 0
        try:
            for frame in container.decode(video=0):
                yield frame
                count += 1
        except av.FFmpegError as err:
            raise DecodeError(f"{path}: decoding failed after {count} frames: {err}") from err


def decode_video(path, short_side: int | None = 256, max_frames: int | None = None) -> DecodedVideo:
    """All frames of ``path`` (at most ``max_frames``) as one array, with the frame rate."""
    frames = list(iter_frames(path, short_side, max_frames))
    if not frames:
        raise DecodeError(f"{path}: no frames decoded")
    return DecodedVideo(frames=np.stack(frames), fps=video_fps(path))


def find_videos(folder) -> list[Path]:
    """Video files (VIDEO_EXTENSIONS, any case) under ``folder`` at any depth, sorted."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
    )


def write_video(path, frames, fps: int = 25, bit_rate: int = 4_000_000) -> Path:
    """RGB uint8 frames -> an MPEG-4 Part 2 file (the codec of the UCF101 clips).

    For generated data: the demo's synthetic dataset, the flow benchmark and the tests.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = np.asarray(frames[0]).shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = bit_rate
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path
