"""Score a video window by window in one pass of its decoder, holding only what a window needs.

A video of N frames is cut into windows of ``window`` seconds every ``stride`` seconds, the last
one ending with the video; a video no longer than a window (or ``window`` None) is one window,
whose sample is exactly the one evaluation takes. Each stream's sample builder says which
positions of a window its test sample reads (SampleBuilder.test_reads): only those frames are
converted and resized (for flow, the two frames of each needed pair), kept until the last window
that needs them is scored, and each flow frame is computed once. Memory follows the window, not
the video's length.

A video that decodes to fewer frames than its container declares (the check extraction makes,
extraction.decode.check_complete) is refused as Truncated, or scored with a warning.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.inference import memory_reader
from extraction.decode import (
    DecodeError,
    TruncatedVideo,
    check_complete,
    count_frames,
    iter_raw_frames,
    probe_video,
    resize_short_side,
)
from utils.errors import UserError
from utils.progress import progress


class Truncated(UserError):
    """A video with fewer decodable frames than its container declares."""


@dataclass(frozen=True)
class Window:
    start: int  # first frame
    end: int  # one past the last frame


def plan_windows(num_frames: int, fps: float, window: float | None, stride: float) -> list:
    """Windows of ``window`` seconds every ``stride`` seconds; the last ends with the video."""
    size = num_frames if window is None else max(1, round(window * fps))
    if num_frames <= size:
        return [Window(0, num_frames)]
    step = max(1, round(stride * fps))
    windows = [Window(s, s + size) for s in range(0, num_frames - size, step)]
    return [*windows, Window(num_frames - size, num_frames)]


@dataclass
class Plan:
    """What one stream reads of every window: positions, and the frames and sizes they need."""

    name: str
    stream: object  # engine.inference.StreamModel
    builder: object  # its test-time sample builder (dataloader.samples.SampleBuilder)
    settings: object  # extraction.settings.ExtractionSettings
    side: int | None  # short side its frames are resized to
    reads: list[list[int]]  # per window: the positions its test sample reads

    @property
    def flow(self) -> bool:
        return self.builder.modality == "flow"

    def frames(self, window: Window, reads: list[int]) -> set[int]:
        """The video frames those positions need: a flow frame i needs frames i and i + 1."""
        pair = (0, 1) if self.flow else (0,)
        return {window.start + i + d for i in reads for d in pair}


@dataclass
class VideoScores:
    """A video's scores window by window, and what they cost."""

    fps: float
    num_frames: int
    windows: list[Window]
    scores: dict[str, np.ndarray]  # stream -> [windows, classes]
    seconds: dict[str, float] = field(default_factory=dict)  # stream -> work; "decode" too
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # the same in CPU time
    max_held: int = 0  # most decoded frames held at once
    warning: str | None = None  # why a video scored anyway (allow_truncated) is short of frames

    def times(self) -> list[tuple[float, float]]:
        """Each window's (start, end) in seconds."""
        fps = self.fps or 25.0
        return [(w.start / fps, w.end / fps) for w in self.windows]


def stream_plans(streams: dict, settings: dict, windows: list[Window]) -> list[Plan]:
    """Each stream's Plan over ``windows``."""
    plans = []
    for name, stream in streams.items():
        config, builder = settings[name][0], stream.sample_builder()
        flow = builder.modality == "flow"
        if flow and windows[0].end - windows[0].start < 2:
            raise UserError(
                f"{name} stream: windows of a single frame; a flow stream needs two (a longer "
                "video or --window)"
            )
        reads = [builder.test_reads(w.end - w.start - flow) for w in windows]
        plans.append(Plan(name, stream, builder, config, config.short_side or None, reads))
    return plans


class _WindowView:
    """A window's frames as ``memory_reader`` reads an array: ``view[i]``, ``len(view)``."""

    def __init__(self, frames: dict, window: Window):
        self.frames, self.window = frames, window

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames[self.window.start + i]

    def __len__(self) -> int:
        return self.window.end - self.window.start


class _Pass:
    """One pass over the decoded frames: holds the needed ones, scores each finished window."""

    def __init__(self, plans, windows, device, on_window, score=True):
        self.plans, self.windows, self.device, self.on_window = plans, windows, device, on_window
        self.score_samples = score
        self.needed: dict[int, set] = {}  # frame -> short sides it is needed at
        for plan in plans:
            for window, reads in zip(windows, plan.reads, strict=True):
                for frame in plan.frames(window, reads):
                    self.needed.setdefault(frame, set()).add(plan.side)
        self.held = {plan.side: {} for plan in plans}  # side -> frame -> resized RGB
        self.cache = {plan.name: {} for plan in plans}  # stream -> (frame, *options) -> read
        self.readers = {
            plan.name: video_reader(plan, self.held[plan.side], device) for plan in plans
        }
        self.scores = {plan.name: [] for plan in plans}
        self.seconds = {plan.name: 0.0 for plan in plans}
        self.cpu = {plan.name: 0.0 for plan in plans}  # this process's CPU time
        self.next, self.max_held = 0, 0

    def add(self, index: int, frame) -> None:
        """Frame ``index`` decoded (a PyAV frame): keep it where needed, score finished windows."""
        sides = self.needed.get(index)
        if sides:
            rgb = frame.to_ndarray(format="rgb24")
            for side in sides:
                self.held[side][index] = resize_short_side(rgb, side)
            self.max_held = max(self.max_held, sum(len(h) for h in self.held.values()))
        while self.next < len(self.windows) and self.windows[self.next].end <= index + 1:
            self.score(self.next)
            self.next += 1

    def score(self, w: int) -> None:
        window, samples = self.windows[w], {}
        for plan in self.plans:
            start, cpu = time.perf_counter(), time.process_time()
            sample = window_sample(plan, window, self.readers[plan.name], self.cache[plan.name])
            if self.score_samples:
                self.scores[plan.name].append(plan.stream.scores(sample, self.device))
            self.seconds[plan.name] += time.perf_counter() - start
            self.cpu[plan.name] += time.process_time() - cpu
            samples[plan.name] = sample
        if self.on_window is not None:
            self.on_window(w, {n: s[-1] for n, s in self.scores.items() if s}, samples)
        keep = self.windows[w + 1].start if w + 1 < len(self.windows) else window.end
        forget_before(keep, self.held, self.cache)


def video_reader(plan: Plan, held: dict, device) -> Callable:
    """``read(frame, ...)`` of a stream over the ``held`` frames (frame -> resized RGB), by
    video frame: the frame as training stored it, or the flow from it to the next."""
    everything = _WindowView(held, Window(0, 2**62))
    return memory_reader(everything, plan.builder.modality, plan.settings, str(device))[0]


def window_sample(plan: Plan, window: Window, read: Callable, cache: dict):
    """The stream's test sample of ``window`` from ``read`` (video_reader); what it reads is
    kept in ``cache`` by video frame, so overlapping windows compute each flow frame once."""
    shifted = _cached(lambda i, **options: read(window.start + i, **options), window.start, cache)
    return plan.builder(shifted, window.end - window.start - plan.flow, train=False)


def forget_before(keep: int, held: dict, cache: dict) -> None:
    """Drop the frames and reads before video frame ``keep`` (no later window needs them)."""
    for frames in held.values():
        for frame in [f for f in frames if f < keep]:
            del frames[frame]
    for reads in cache.values():
        for key in [k for k in reads if k[0] < keep]:
            del reads[key]


def _cached(read, offset: int, cache: dict) -> Callable:
    """``read`` of a window, remembered by video frame: overlapping windows compute it once."""

    def read_cached(i, **options):
        key = (offset + i, *options.values())
        if key not in cache:
            cache[key] = read(i, **options)
        return cache[key]

    return read_cached


def _one_pass(path, plans, windows, num_frames, limited, device, callbacks) -> tuple:
    """Decode ``path`` once, scoring each window as its last frame arrives; the frames decoded
    (counted to the end, to check the plan, unless ``limited`` to ``num_frames``)."""
    on_window, on_frame, score = callbacks
    run = _Pass(plans, windows, device, on_window, score)
    decoded, start, cpu, error = 0, time.perf_counter(), time.process_time(), None
    try:
        for index, frame in enumerate(iter_raw_frames(path)):
            decoded = index + 1
            if index < num_frames:
                if on_frame is not None:
                    on_frame(index, frame)
                run.add(index, frame)
            elif limited:
                break
    except DecodeError as err:
        if not decoded:
            raise
        error = err  # a damaged end: the frames before it are what the video has
    run.seconds["decode"] = time.perf_counter() - start - sum(run.seconds.values())
    run.cpu["decode"] = time.process_time() - cpu - sum(run.cpu.values())
    return run, decoded, error


def _short_of_frames(path, decoded: int, declared: int, limit, error) -> str | None:
    """Why ``path`` is short of its frames (extraction's check_complete), or None."""
    try:
        check_complete(path, decoded, declared, limit)
    except TruncatedVideo as err:
        return str(err)
    if error is not None:
        return (
            f"{path}: truncated: decoding stopped with an error after {decoded} frames (the "
            "file is damaged; download or copy it again)"
        )
    return None


def score_video(
    path,
    streams: dict,
    settings: dict,
    device,
    window: float | None = None,
    stride: float | None = None,
    on_window: Callable | None = None,
    on_frame: Callable | None = None,
    score: bool = True,
    allow_truncated: bool = False,
    show_progress: bool = False,
) -> VideoScores:
    """Each stream's test scores of every window of ``path`` (see the module docstring).

    ``settings``: stream -> (ExtractionSettings, source). ``on_window(w, scores, samples)`` is
    called as window ``w`` is scored, ``on_frame(index, frame)`` with each decoded PyAV frame.
    ``score`` False builds the samples (for on_window) without running the models.
    A video whose packets miscount its frames is decoded again with the true count (the
    callbacks then start again from window and frame 0). A truncated video raises Truncated,
    or with ``allow_truncated`` is scored on the frames it has (``warning`` says so).
    ``show_progress``: windows done of all, on a terminal, or a line a minute in a log.
    """
    limits = [s.max_frames for s, _ in settings.values() if s.max_frames]
    limit = min(limits) if limits else None
    bar = None
    try:
        info, total = probe_video(path), count_frames(path)
        short = _short_of_frames(path, total, info.frames, limit, None)  # from the packets
        if short and not allow_truncated:
            raise Truncated(short)
        fps = info.fps
        for _attempt in range(2):
            num_frames = min([total, *limits])
            if num_frames < 1:
                raise DecodeError(f"{path}: no frames decoded")
            windows = plan_windows(num_frames, fps or 25.0, window, stride or window or 1.0)
            plans = stream_plans(streams, settings, windows)
            limited = num_frames < total or bool(limits) and num_frames == min(limits)
            if bar is None:
                bar = progress(desc=Path(path).name, total=len(windows), unit="window",
                               show=show_progress, log=True)  # fmt: skip
            else:
                bar.reset(total=len(windows))
            callbacks = _counted(on_window, bar), on_frame, score
            run, decoded, error = _one_pass(
                path, plans, windows, num_frames, limited, device, callbacks
            )
            if min([decoded, *limits]) == num_frames:
                break
            total = decoded
    except DecodeError as err:
        raise UserError(f"cannot decode {path} ({err}); give a readable video file") from None
    finally:
        if bar is not None:
            bar.close()
    if run.next < len(windows):
        raise UserError(f"cannot decode {path}: it ended before its last frames; re-encode it")
    short = _short_of_frames(path, min([decoded, *limits]), info.frames, limit, error)
    if short and not allow_truncated:
        raise Truncated(short)
    scores = {name: np.stack(s) if s else np.zeros((0, 0)) for name, s in run.scores.items()}
    video = VideoScores(fps, num_frames, windows, scores, run.seconds, run.cpu, run.max_held)
    video.warning = short and f"{short}; scored the {num_frames} frames it has"
    return video


def _counted(on_window: Callable | None, bar) -> Callable:
    """``on_window`` that also moves the progress bar on."""

    def counted(w: int, scores: dict, samples: dict) -> None:
        bar.update(1)
        if on_window is not None:
            on_window(w, scores, samples)

    return counted
