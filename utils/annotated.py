"""The annotated video of a live run (tools/live.py --out): each frame with the label of its
window, written whole (a temp file renamed at the end, utils.atomic).

A frame's label is known only once the window whose centre is nearest has been scored: frames
wait (at most half a window and a stride of them, at OUT_SIDE) and are written as labels come.
Frames keep their source timestamps, so frames dropped by a slow scorer leave gaps in time, not a
faster video.
"""

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError

OUT_SIDE = 640  # long side of the written frames at most: memory and file size stay small
FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov"}
WAITING = "waiting for the first window"


def draw_lines(rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """A copy of ``rgb`` with ``lines`` of text on a dark band at the bottom."""
    image = rgb.copy()
    scale = max(0.35, image.shape[0] / 720)
    size = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1]
    step = int(size * 1.8)
    top = image.shape[0] - step * len(lines) - 4
    image[max(top, 0) :] //= 3
    for k, line in enumerate(lines):
        y = top + step * (k + 1) - (step - size) // 2
        cv2.putText(image, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
    return image


def fit(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its long side at most OUT_SIDE and even sides (what the encoder takes)."""
    height, width = rgb.shape[:2]
    scale = min(1.0, OUT_SIDE / max(height, width))
    size = (max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2))
    if size == (width, height):
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


class AnnotatedVideo:
    """``add(index, seconds, rgb)`` each frame, ``label(until, lines)`` as windows are scored;
    use as a context manager: on a normal exit the waiting frames get the last label and the
    file appears whole; on an exception nothing is left."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = Path(path), fps
        self.format = FORMATS[self.path.suffix.lower()]
        self.waiting: list[tuple[int, float, np.ndarray]] = []
        self.lines, self.written = [WAITING], 0

    def __enter__(self) -> "AnnotatedVideo":
        self._file = atomic_write(self.path)
        self.container = av.open(self._file.__enter__(), "w", format=self.format)
        self.stream = None
        return self

    def add(self, index: int, seconds: float, rgb: np.ndarray) -> None:
        self.waiting.append((index, seconds, fit(rgb)))

    def label(self, until: float | None, lines: list[str]) -> None:
        """Write the waiting frames before ``until`` seconds (None: all) with ``lines``."""
        self.lines = lines
        while self.waiting and (until is None or self.waiting[0][1] < until):
            index, seconds, rgb = self.waiting.pop(0)
            self._encode(index, draw_lines(rgb, [f"{seconds:6.1f} s", *lines]))

    def _encode(self, index: int, rgb: np.ndarray) -> None:
        if self.stream is None:
            self.stream = self.container.add_stream(
                "mpeg4", rate=Fraction(self.fps).limit_denominator(1001)
            )
            self.stream.height, self.stream.width = rgb.shape[:2]
            self.stream.pix_fmt, self.stream.bit_rate = "yuv420p", 2_000_000
        if rgb.shape[:2] != (self.stream.height, self.stream.width):  # a camera changed size
            rgb = cv2.resize(rgb, (self.stream.width, self.stream.height))
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = index
        self.container.mux(self.stream.encode(frame))
        self.written += 1

    def __exit__(self, kind, error, trace) -> bool:
        try:
            if kind is None:
                self.label(None, self.lines)
                if self.stream is None:
                    raise UserError(f"no frame came from the source: {self.path} not written")
                self.container.mux(self.stream.encode())
            self.container.close()
        except BaseException as err:
            self._file.__exit__(type(err), err, err.__traceback__)  # the temp file goes
            raise
        self._file.__exit__(kind, error, trace)
        return False
