"""Frame k of a video file, decoded on demand: what training from video files reads.

Frame k is the k-th frame that sequential decoding of the file yields, the numbering extraction
gives its frame files. One demuxing pass (no decoding) counts the frames and notes each
keyframe's number (``index_video``): where no frame decoded after a keyframe is shown before it
(a closed GOP: H.264 as x264 writes it, VP8/VP9, MPEG-4 Part 2 with packed B-frames as in
UCF101), its number is the count of frame-bearing packets before it.

A ``VideoReader`` reads frame k by seeking to the last keyframe at or before k and decoding
forward; the next read goes on decoding when no keyframe lies between (one pass for indices
close together, as a sample's sorted positions and a clip's consecutive frames are). A seek the
container lands elsewhere than asked, or a stream without keyframes, decodes from the start.
A decode that ends before frame k, or fails, is a ``BadVideo``.
"""

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass

import av
import numpy as np

from dataloader.frame_size import half_size, resize_short_side

# DataLoader workers decode videos in parallel: one decoding thread each.
DECODER_THREADS = 1
# Readers a process keeps open: those of the few videos it read last (an LRU).
OPEN_VIDEOS = 4


class BadVideo(Exception):
    """A video that cannot be opened, or decoded as far as a frame asked for."""


@dataclass(frozen=True)
class VideoIndex:
    """What demuxing tells of a video: its frame count and, for each keyframe decoding can
    start from, its pts and frame number."""

    num_frames: int
    keyframes: tuple[tuple[int, int], ...]


def open_video(path, error: type[Exception] = BadVideo) -> av.container.InputContainer:
    """``path`` opened by PyAV, or ``error`` naming it where it does not open or has no video."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise error(f"{path}: cannot open: {err}") from None
    if not container.streams.video:
        container.close()
        raise error(f"{path}: no video stream")
    return container


def _bears_frame(packet: av.Packet, codec: str) -> bool:
    """Whether decoding the packet gives a frame: Xvid (mpeg4) writes 1-byte packets for
    dropped frames that decode to nothing (HMDB51's AVIs); a packet of no bytes ends a stream."""
    return packet.size > (1 if codec == "mpeg4" else 0)


def _pts(packet: av.Packet) -> int | None:
    """When the packet's frame is shown (its dts where the container gives no pts): what a
    seek aims at, and what the first packet after it is checked by."""
    return packet.pts if packet.pts is not None else packet.dts


def _clean_keyframes(packets: list[tuple]) -> tuple[tuple[int, int], ...]:
    """(pts, frame number) of the keyframes decoding can start from.

    ``packets``: (pts, keyframe) of every frame-bearing packet in decode order. A
    keyframe is clean when every packet before it is presented before it and every one after
    it after it: then its frame number is the count of packets before it, and decoding from it
    gives it first. Open GOPs (leading frames decoded after their keyframe but shown before
    it, as FFmpeg's mpeg4 encoder writes) are not clean; neither is anything without timestamps.
    """
    if any(pts is None for pts, _ in packets):
        return ()
    after = [float("inf")] * (len(packets) + 1)
    for i in range(len(packets) - 1, -1, -1):
        after[i] = min(after[i + 1], packets[i][0])
    clean, before = [], float("-inf")
    for i, (pts, key) in enumerate(packets):
        if key and before < pts < after[i + 1]:
            clean.append((pts, i))
        before = max(before, pts)
    return tuple(clean)


def index_video(path) -> VideoIndex:
    """Count the frames of ``path`` from its packets and note its keyframes (no decoding)."""
    packets = []
    with open_video(path) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        try:
            for p in container.demux(stream):
                if _bears_frame(p, codec):
                    packets.append((_pts(p), p.is_keyframe))
        except av.FFmpegError as err:
            raise BadVideo(f"cannot read the packets of {path} ({err})") from None
    return VideoIndex(len(packets), _clean_keyframes(packets))


class VideoReader:
    """One open video file: ``frame(k)`` decodes frame k (module docstring)."""

    def __init__(self, path: str, index: VideoIndex, threads: int = DECODER_THREADS):
        self.path, self.index, self.threads = path, index, threads
        self.ranks = [rank for _, rank in index.keyframes]
        self.starts = dict(index.keyframes)  # pts -> frame number
        self.container = None
        self._restart()

    def _restart(self) -> None:
        """Open the file afresh, positioned at its first frame."""
        self.close()
        self.container = open_video(self.path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_count = self.threads
        self.packets = self.container.demux(self.stream)
        self.pending: deque = deque()
        self.next = 0  # the number of the next frame decoding gives

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def _seek(self, key: int) -> None:
        """Position at keyframe ``key`` of the index, or at another clean one before it where
        the container lands there; from the start where it lands elsewhere."""
        target, rank = self.index.keyframes[key]
        codec = self.stream.codec_context.name
        try:
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
            self.packets = self.container.demux(self.stream)
            first = next((p for p in self.packets if _bears_frame(p, codec)), None)
        except av.FFmpegError:
            first = None
        landed = self.starts.get(_pts(first)) if first is not None else None
        if landed is None or landed > rank:
            self._restart()
            return
        self.pending.clear()
        self.next = landed
        self._decode(first)

    def _decode(self, packet) -> None:
        try:
            self.pending.extend(self.stream.decode(packet))
        except av.FFmpegError as err:
            raise BadVideo(f"cannot decode {self.path} after frame {self.next} ({err})") from None

    def _next_frame(self) -> av.VideoFrame | None:
        while not self.pending:
            try:
                packet = next(self.packets, None)
            except av.FFmpegError as err:
                raise BadVideo(f"cannot read {self.path} after frame {self.next} ({err})") from None
            if packet is None:
                return None
            self._decode(packet)
        return self.pending.popleft()

    def frame(self, k: int) -> av.VideoFrame:
        """Frame k, decoded forward from where the reader is when no keyframe lies between."""
        key = bisect_right(self.ranks, k) - 1  # the last keyframe at or before k
        if not (self.next <= k and (key < 0 or self.ranks[key] <= self.next)):
            if key >= 0:
                self._seek(key)
            else:
                self._restart()
        while True:
            frame = self._next_frame()
            if frame is None:
                raise BadVideo(
                    f"{self.path} decodes to {self.next} frames, not the {self.index.num_frames} "
                    f"its packets count (frame {k + 1} asked for)"
                )
            self.next += 1
            if self.next > k:
                return frame


def to_image(frame: av.VideoFrame, short_side: int | None, half: bool = False) -> np.ndarray:
    """A decoded frame as cv2.imread gives an extracted one: BGR uint8 [H, W, 3], resized as
    extraction resizes (dataloader.frame_size); at half that size if asked."""
    image = resize_short_side(frame.to_ndarray(format="bgr24"), short_side)
    return half_size(image) if half else image


def decoded_count(path) -> int:
    """How many frames sequential decoding of ``path`` gives (every frame decoded)."""
    count = 0
    with open_video(path) as container:
        try:
            for _ in container.decode(video=0):
                count += 1
        except av.FFmpegError as err:
            raise BadVideo(f"cannot decode {path} after frame {count} ({err})") from None
    return count
