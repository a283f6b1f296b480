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

In MPEG-4 Part 2 (UCF101's and HMDB51's XviD/DivX) no frame refers to a B-frame, so the
B-frames before frame k are not decoded (FFmpeg's ``skip_frame``, about half of the frames a
read decodes where a clip has B-frames): each frame that comes out is placed by its pts, known
per packet from demuxing, and the rules of ``VideoReader._skip_to``; a frame they cannot place
sends the reader back to counting every frame. Frames are converted to BGR by one swscale
context per reader, on one thread.
"""

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from dataloader.frame_size import half_size, resize_short_side

# DataLoader workers decode videos in parallel: one decoding thread each.
DECODER_THREADS = 1
# Readers a process keeps open: those of the few videos it read last (an LRU).
OPEN_VIDEOS = 4
# Codecs whose B-frames no frame refers to and whose frames are shown in MPEG-4 Part 2's order:
# reading frame k skips the B-frames before it (VideoReader._skip_to). UCF101's and HMDB51's.
SKIPPING_CODECS = {"mpeg4"}


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


class _Lost(Exception):
    """Decoding with B-frames skipped gave frames the numbering rules cannot place."""


class VideoReader:
    """One open video file: ``frame(k)`` decodes frame k (module docstring)."""

    def __init__(self, path: str, index: VideoIndex, threads: int = DECODER_THREADS):
        self.path, self.index, self.threads = path, index, threads
        self.ranks = [rank for _, rank in index.keyframes]
        self.starts = dict(index.keyframes)  # pts -> frame number
        self.reformatter = VideoReformatter()  # one swscale context, kept between frames
        self.container = None
        self._restart()
        self.skips = self.codec in SKIPPING_CODECS

    def _restart(self) -> None:
        """Open the file afresh, positioned at its first frame."""
        self.close()
        self.container = open_video(self.path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_count = self.threads
        self.codec = self.stream.codec_context.name
        self.skipping = False  # the decoder's skip_frame is NONREF
        self.packets = self.container.demux(self.stream)
        self._position(0)

    def _position(self, number: int) -> None:
        """The next frame-bearing packet, and the next frame decoding gives, are ``number``."""
        self.pending: deque = deque()
        self.next = number  # the number of the next frame decoding gives
        self.sent = number  # the decode-order number of the next frame-bearing packet
        self.packet_numbers: dict = {}  # pts -> decode-order number, of the packets sent
        self.skip_until = -1  # B-frames of packets numbered up to this are not decoded

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def _seek(self, key: int) -> None:
        """Position at keyframe ``key`` of the index, or at another clean one before it where
        the container lands there; from the start where it lands elsewhere."""
        target, rank = self.index.keyframes[key]
        try:
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
            self.packets = self.container.demux(self.stream)
            first = next((p for p in self.packets if _bears_frame(p, self.codec)), None)
        except av.FFmpegError:
            first = None
        landed = self.starts.get(_pts(first)) if first is not None else None
        if landed is None or landed > rank:
            self._restart()
            return
        self._position(landed)
        self._decode(first)

    def _decode(self, packet) -> None:
        """Send one packet (numbered first where B-frames may be skipped)."""
        if self.skips and _bears_frame(packet, self.codec):
            self._number(packet)
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
        while self.pending and self.next < k:
            self.pending.popleft()
            self.next += 1
        if self.skips and self.next < k and not self.pending:
            try:
                return self._skip_to(k)
            except _Lost:  # decode it again, every frame counted
                self.skips = False
                self._restart()
                return self.frame(k)
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

    def _number(self, packet) -> None:
        """Number a frame-bearing packet, and skip its B-frame (if it is one) where the number
        is at most ``skip_until``. A packet without pts, or with one seen before, gives a frame
        that cannot be placed: skipping ends there (the frames are counted)."""
        pts = packet.pts  # what the frame it gives carries
        if pts is None or pts in self.packet_numbers:
            self.skips = False
            if pts is not None:
                self.packet_numbers[pts] = None  # neither frame of that pts is placed
        else:
            self.packet_numbers[pts] = self.sent
        skip = self.skips and self.sent <= self.skip_until
        if skip != self.skipping:  # set on a change only: most packets keep the setting
            self.stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            self.skipping = skip
        self.sent += 1

    def _placed(self, frame: av.VideoFrame) -> int:
        """The decode-order number of the packet that gave ``frame``."""
        number = self.packet_numbers.get(frame.pts)
        if number is None:
            raise _Lost
        return number

    def _skip_to(self, k: int) -> av.VideoFrame:
        """Frame k, with the B-frames shown before it not decoded (MPEG-4 Part 2 order).

        A B-frame from packet j is frame j - 1; a reference frame (never skipped) is frame
        n - 1, n the packet of the next reference frame (the frame count after the last one);
        frames come out in order. Skipping the B-frames of packets before k leaves every frame
        from k - 1 on, so frame k is a B-frame of packet k + 1, or the last reference frame of
        a packet up to k when what follows it is a reference frame of packet k + 1 or a
        B-frame of packet k + 2. Anything else is _Lost: the frame is decoded again, counted.
        """
        self.skip_until = k - 1  # packed B-frames: packet k may decode frame k's B-frame
        held = None  # the last reference frame of a packet up to k
        while True:
            frame = self._next_frame()
            if frame is None:  # the last reference frame is the last frame
                if held is None or k != self.index.num_frames - 1:
                    raise _Lost
                self.next = k + 1
                return held
            number = self._placed(frame)
            b_frame = frame.pict_type == PictureType.B
            if not b_frame and number <= k:
                held = frame
                continue
            if b_frame and number <= k:  # shown before frame k, after ``held``
                held = None
                continue
            self.next = k + 1
            if b_frame and number == k + 1:
                return frame
            if held is None or number != k + (2 if b_frame else 1):
                raise _Lost
            self.pending.appendleft(frame)  # frame k + 1
            return held

    def image(self, k: int, short_side: int | None, half: bool = False) -> np.ndarray:
        """Frame k as ``to_image`` gives it, converted by this reader's swscale context."""
        return to_image(self.frame(k), short_side, half, self.reformatter)


def to_image(
    frame: av.VideoFrame, short_side: int | None, half: bool = False, reformatter=None
) -> np.ndarray:
    """A decoded frame as cv2.imread gives an extracted one: BGR uint8 [H, W, 3], resized as
    extraction resizes (dataloader.frame_size); at half that size if asked. One swscale thread
    (swscale's own pool costs more to start than the conversion); ``reformatter`` is kept."""
    bgr = (reformatter or VideoReformatter()).reformat(frame, format="bgr24", threads=1)
    image = resize_short_side(bgr.to_ndarray(), short_side)
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
