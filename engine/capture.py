"""A live source's frames, read by a thread into a bounded queue (tools/live.py).

The source is a camera index (Linux: /dev/videoN; macOS: AVFoundation), a stream URL or a video
file, opened with PyAV. A live source (a camera, a URL, or a file with ``realtime``: played at
its own frame rate) never waits for the scorer: when the queue is full the frame is dropped and
counted, so the labels stay close to the present however slow scoring is. A file without
``realtime`` is read as fast as it is scored, every frame kept.
"""

import os
import platform
import queue
import threading
import time
from dataclasses import dataclass

import av
import numpy as np

from utils.errors import UserError
from utils.faults import fault_point

END = None  # put in the queue after the last frame


@dataclass
class Frame:
    index: int  # in the source, dropped frames counted
    seconds: float  # the source's clock, from its first frame
    arrived: float  # time.monotonic() when it was captured
    rgb: np.ndarray  # [H, W, 3] uint8


def open_source(source: str):
    """The PyAV container of a camera index, a URL or a file; one line when it cannot open."""
    try:
        if source.isdigit():
            system = platform.system()
            if system == "Linux":
                return av.open(f"/dev/video{source}", format="v4l2")
            if system == "Darwin":
                return av.open(source, format="avfoundation")
            raise UserError(f"camera {source}: give the camera's stream URL on {system}")
        return av.open(source)
    except (av.FFmpegError, OSError) as err:
        raise UserError(
            f"cannot open {source} ({err}); give a camera index (0), a video file or a stream "
            "URL that FFmpeg reads"
        ) from None


class Capture:
    """``frames()`` yields the source's frames that the queue took, until its end or ``stop``."""

    def __init__(self, source: str, realtime: bool, queue_seconds: float):
        self.source, self.container = source, open_source(source)
        if not self.container.streams.video:
            self.container.close()
            raise UserError(f"{source} has no video stream; give a video source")
        stream = self.container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 25.0
        # A regular file; a camera index, a URL or a device (/dev/video0) is live.
        self.is_file = os.path.isfile(source)
        self.paced = self.is_file and realtime  # a file played at its own rate
        self.drops = not self.is_file or realtime
        self.queue = queue.Queue(maxsize=max(2, round(queue_seconds * self.fps)))
        self.read = self.dropped = 0
        self.error: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _put(self, item) -> bool:
        """Queue ``item``: at once or dropped (False) for a live source, else as room comes."""
        if self.drops and item is not END:
            try:
                self.queue.put_nowait(item)
                return True
            except queue.Full:
                return False
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        first, started = None, time.monotonic()
        try:
            for index, frame in enumerate(self.container.decode(video=0)):
                if self.stop.is_set():
                    break
                at = frame.time if frame.time is not None else index / self.fps
                first = at if first is None else first
                if self.paced:  # the frame arrives when the clip shows it
                    time.sleep(max(0.0, started + at - first - time.monotonic()))
                rgb = frame.to_ndarray(format="rgb24")
                self.read += 1
                fault_point("live.frame")
                if not self._put(Frame(index, at - first, time.monotonic(), rgb)):
                    self.dropped += not self.stop.is_set()
        except Exception as err:  # a crash is said, never taken for the source's end
            self.error = f"{self.source}: reading stopped after {self.read} frames: {err}"
        finally:
            self.container.close()
            self._put(END)

    def frames(self):
        """The queued frames, in order, until the source ends or ``stop`` is set."""
        while not self.stop.is_set():
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is END:
                return
            yield item

    def close(self) -> None:
        """Stop reading and wait a little for the thread (a stalled stream is left behind: the
        thread is a daemon)."""
        self.stop.set()
        self.thread.join(timeout=2.0)
