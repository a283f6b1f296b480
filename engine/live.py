"""Sliding windows over frames as they arrive (tools/live.py): the work of predict's streaming,
spread over the frames so that a window's label comes soon after its last frame.

A window is ``window`` seconds of frames, one every ``stride`` seconds, sampled as the stream's
test protocol samples a video (engine.streaming: the same plans, readers and cache). Each frame
is resized only if some window's sample reads it, and each flow frame a sample reads is computed
as soon as its second frame arrives: when a window ends, only its last flow frames and the
networks are left to run. Frames are counted as they reach the scorer: a frame dropped before
(engine.capture) is simply not one of them.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from dataloader.frame_size import resize_short_side
from engine.streaming import Window, forget_before, stream_plans, video_reader, window_sample


@dataclass
class LiveWindow:
    """One scored window."""

    index: int
    start: float  # seconds (the source's clock) of its first frame
    end: float  # ... of the end of its last frame
    arrived: float  # time.monotonic() when its last frame was captured
    scores: dict[str, np.ndarray]  # stream -> [classes] test scores
    scored: float = 0.0  # time.monotonic() when the scores were ready


class LiveScorer:
    """``add(rgb, time, arrived)`` frame by frame; returns a LiveWindow when one ends."""

    def __init__(self, streams: dict, settings: dict, fps: float, window: float, stride: float,
                 device):  # fmt: skip
        self.fps, self.device = fps, device
        self.size = max(2, round(window * fps))
        self.step = max(1, round(stride * fps))
        self.plans = stream_plans(streams, settings, [Window(0, self.size)])
        self.held = {plan.side: {} for plan in self.plans}  # side -> frame -> resized RGB
        self.cache = {plan.name: {} for plan in self.plans}  # stream -> (frame, ...) -> read
        self.readers = {p.name: video_reader(p, self.held[p.side], device) for p in self.plans}
        whole = Window(0, self.size)
        self.kept = {p.name: sorted(p.frames(whole, p.reads[0])) for p in self.plans}
        self.flows = {p.name: p.reads[0] for p in self.plans if p.flow}
        self.times: dict[int, tuple[float, float]] = {}  # frame -> (seconds, arrived)
        self.count = self.windows = 0

    def _needed(self, frame: int, positions: list[int]) -> bool:
        """Whether some window (one every ``step`` frames) reads window position ``positions``
        at video frame ``frame``."""
        return any(r <= frame and (frame - r) % self.step == 0 for r in positions)

    def add(self, rgb: np.ndarray, seconds: float, arrived: float) -> LiveWindow | None:
        i = self.count
        self.count += 1
        self.times[i] = (seconds, arrived)
        for plan in self.plans:
            held = self.held[plan.side]
            if i not in held and self._needed(i, self.kept[plan.name]):
                held[i] = resize_short_side(rgb, plan.side)
            if plan.flow and i and self._needed(i - 1, self.flows[plan.name]):
                cache = self.cache[plan.name]  # flow from frame i - 1 to i, now
                if (i - 1,) not in cache:
                    cache[(i - 1,)] = self.readers[plan.name](i - 1)
        start = i + 1 - self.size
        if start < 0 or start % self.step:
            return None
        return self._score(Window(start, i + 1))

    def _score(self, window: Window) -> LiveWindow:
        scores = {}
        for plan in self.plans:
            sample = window_sample(plan, window, self.readers[plan.name], self.cache[plan.name])
            scores[plan.name] = plan.stream.scores(sample, self.device)
        (first, _), (last, arrived) = self.times[window.start], self.times[window.end - 1]
        done = LiveWindow(self.windows, first, last + 1 / self.fps, arrived, scores)
        done.scored = time.monotonic()
        self.windows += 1
        keep = window.start + self.step  # the next window's first frame
        forget_before(keep, self.held, self.cache)
        for frame in [f for f in self.times if f < keep]:
            del self.times[frame]
        return done


@dataclass
class LiveStats:
    """What a live run reports: frames read and dropped, windows, latency (capture to label)."""

    started: float = field(default_factory=time.monotonic)
    frames: int = 0  # that reached the scorer
    windows: int = 0
    latencies: list[float] = field(default_factory=list)

    def window(self, done: LiveWindow) -> None:
        self.windows += 1
        self.latencies.append(done.scored - done.arrived)

    def summary(self, read: int, dropped: int) -> dict:
        seconds = max(time.monotonic() - self.started, 1e-9)
        latency = np.percentile(self.latencies, [50, 95, 100]) if self.latencies else [0.0] * 3
        return {
            "seconds": round(seconds, 2),
            "frames": read,
            "fps": round(read / seconds, 2),
            "frames_scored": self.frames,
            "windows": self.windows,
            "windows_per_second": round(self.windows / seconds, 3),
            "dropped": dropped,
            "dropped_fraction": round(dropped / max(read, 1), 4),
            "latency_p50": round(float(latency[0]), 3),
            "latency_p95": round(float(latency[1]), 3),
            "latency_max": round(float(latency[2]), 3),
        }

    def line(self, read: int, dropped: int) -> str:
        s = self.summary(read, dropped)
        return (
            f"{s['seconds']:.0f} s: {s['frames']} frames ({s['fps']:.1f} fps), {s['windows']} "
            f"windows ({s['windows_per_second']:.2f}/s), {s['dropped']} dropped "
            f"({100 * s['dropped_fraction']:.1f}%), latency (capture to label) median "
            f"{s['latency_p50']:.2f} s, 95% {s['latency_p95']:.2f} s, max {s['latency_max']:.2f} s"
        )
