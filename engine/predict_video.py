"""One video scored as tools/predict.py scores it, for every command that does (predict, the
web page tools/app.py): the record of a video and what its drawings need (their shared options
are engine/cli_predict.py's).

A video is scored in windows (--window seconds every --stride seconds, engine/streaming.py); its
result is each stream's scores averaged over its windows, then fused (engine.inference.columns).
With --threshold the label is ``unknown`` below it (utils.unknown).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import UserError
from utils.gif import GifFrames
from utils.unknown import label

WINDOW, STRIDE = 10.0, 5.0  # seconds: most UCF101/HMDB51 clips are one window
TOP = 5  # classes listed per column


@dataclass(frozen=True)
class VideoOptions:
    """How a video is scored and told: windows of ``window`` seconds (None: the whole video
    in one) every ``stride``, fused with ``weights`` and ``softmax`` (engine.inference.columns),
    ``top`` classes listed per column, ``unknown`` below ``threshold`` (None: never)."""

    window: float | None = WINDOW
    stride: float = STRIDE
    weights: tuple[float, ...] | None = None
    softmax: bool | None = None
    threshold: float | None = None
    top: int = TOP
    allow_truncated: bool = False


def column_names(streams: dict) -> list[str]:
    """A result's score columns: each stream's, then "fused" where there are two or more."""
    return [*streams, *(["fused"] if len(streams) >= 2 else [])]


def final_column(columns: dict) -> np.ndarray:
    """The column a label is read from: the fused one, or the only stream's."""
    return columns["fused"] if "fused" in columns else next(iter(columns.values()))


def ranked(columns: dict, classes: list[str], top: int) -> dict:
    """Each column's ``top`` (class, probability), best first."""
    return {
        name: [(classes[i], float(p[i])) for i in np.argsort(-p, kind="stable")[:top]]
        for name, p in columns.items()
    }


def predict_one(path: Path, streams: dict, settings: dict, options: VideoOptions, device,
                gif: bool = False, cam: bool = False) -> tuple[dict, dict]:  # fmt: skip
    """One video's result (predict's JSON record) and what the drawings need: the frames of a
    ``gif``, and with ``cam`` the test samples of the most confident window."""
    from engine.inference import columns
    from engine.streaming import Truncated, score_video
    from extraction.decode import DecodeError, count_frames, video_fps

    def fuse(scores: dict) -> dict:
        return columns(streams, scores, options.weights, options.softmax)

    frames, best = None, {"prob": -1.0, "samples": None}
    if gif:
        try:
            frames = GifFrames(video_fps(path), count_frames(path))
        except DecodeError as err:
            raise UserError(f"cannot decode {path} ({err}); give a readable video file") from None

    def on_window(w: int, scores: dict, samples: dict) -> None:
        if cam:
            probs = final_column(fuse(scores))
            if w == 0 or probs.max() > best["prob"]:  # the most confident window
                best.update(prob=float(probs.max()), samples=samples)

    try:
        video = score_video(path, streams, settings, device, options.window, options.stride,
                            on_window, frames, allow_truncated=options.allow_truncated,
                            show_progress=True)  # fmt: skip
    except Truncated as err:
        raise Truncated(f"{err}; or pass --allow-truncated to score the frames it has") from None
    per_window = [
        fuse({n: s[w] for n, s in video.scores.items()}) for w in range(len(video.windows))
    ]
    window_columns = {name: np.stack([c[name] for c in per_window]) for name in per_window[0]}
    whole = fuse({name: s.mean(axis=0) for name, s in video.scores.items()})
    classes = next(iter(streams.values())).classes
    final = final_column(whole)
    result = {
        "video": str(path),
        "classes": classes,
        "top1": label(final, classes, options.threshold),
        **({"threshold": options.threshold} if options.threshold is not None else {}),
        "top": ranked(whole, classes, min(options.top, len(classes))),
        **{name: [float(x) for x in p] for name, p in whole.items()},
        "seconds": video.num_frames / (video.fps or 25.0),
        "windows": len(video.windows),
        "work_seconds": {name: round(t, 3) for name, t in video.seconds.items()},
        "work_cpu_seconds": {name: round(t, 3) for name, t in video.cpu_seconds.items()},
        **({"warning": video.warning} if video.warning else {}),
    }
    drawn = dict(video=video, whole=whole, windows=window_columns, gif=frames, cam=best["samples"])
    return result, drawn


def write_cam(path: Path, streams: dict, samples: dict, best: int, classes: list) -> Path:
    """Grad-CAM of class ``best`` for each stream's test sample, side by side (engine.cam)."""
    from engine.cam import stream_heatmaps
    from utils.heatmaps import write_heatmaps

    rows = stream_heatmaps(streams, samples, best)
    return write_heatmaps(path, rows, f"Grad-CAM for {classes[best]}")
