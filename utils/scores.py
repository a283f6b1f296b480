"""This toolkit's score file, ``video_scores.npz``: one row of class scores per video.

It carries its own video names, labels, class names, stream, split and epoch, and ``kind``: what
the rows hold (logits, probabilities or log-probabilities; see utils.metrics.SCORE_KINDS), so
fusion and reports convert each file correctly. The reference implementation's pickles are
read by utils.reference_scores (their ``kind`` is None: guessed from the numbers).
"""

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError
from utils.metrics import SCORE_KINDS
from utils.video_names import video_key

NPZ_KEYS = ("videos", "labels", "classes", "scores", "stream", "split", "epoch")
FORMAT_KEYS = ("kind", "test_mode")  # written by every release; a file without is older


@dataclass
class ScoreFile:
    """One evaluation's video-level scores; ``labels`` index ``classes``, rows of ``scores`` follow ``videos``."""

    videos: list[str]
    labels: np.ndarray  # int64 [V]
    classes: list[str]
    scores: np.ndarray  # float32 [V, C]
    stream: str
    split: int
    epoch: int
    path: Path | None = None
    kind: str | None = "logits"  # SCORE_KINDS; None: not recorded
    test_mode: str = ""  # how videos were sampled at test, e.g. "19 snippets x 10 crops"

    def __len__(self) -> int:
        return len(self.videos)


def save_scores(
    path, *, videos, labels, classes, scores, stream, split, epoch, kind="logits", test_mode=""
) -> Path:
    """Write ``video_scores.npz`` atomically (temp file + os.replace), so a kill leaves no half file."""
    path = Path(path)
    scores = np.asarray(scores, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    videos = np.asarray([str(v) for v in videos], dtype=str)
    classes = np.asarray([str(c) for c in classes], dtype=str)
    if (
        scores.ndim != 2
        or scores.shape != (len(videos), len(classes))
        or labels.shape != (len(videos),)
    ):
        raise ValueError(
            f"scores {scores.shape} must be [videos, classes] = [{len(videos)}, {len(classes)}] "
            f"and labels {labels.shape} [videos]"
        )
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown score kind {kind!r}")
    with atomic_write(path) as file:
        np.savez(
            file,
            videos=videos,
            labels=labels,
            classes=classes,
            scores=scores,
            stream=np.asarray(str(stream)),
            split=np.asarray(int(split), dtype=np.int64),
            epoch=np.asarray(int(epoch), dtype=np.int64),
            kind=np.asarray(kind),
            test_mode=np.asarray(str(test_mode)),
        )
    return path


def is_npz(path) -> bool:
    return zipfile.is_zipfile(path)


def load_npz(path) -> ScoreFile:
    """Read a ``video_scores.npz``; anything else is a one-line UserError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"score file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise UserError(
                    f"{path} lacks the arrays {', '.join(missing)}: it is a zip or npz file but "
                    "not a video_scores.npz written by this toolkit"
                )
            older = [k for k in FORMAT_KEYS if k not in data.files]
            if older:
                raise UserError(
                    f"{path} is a score file of a development version of this toolkit (no "
                    f"{', '.join(older)}); evaluate its checkpoint again: --resume CKPT --evaluate"
                )
            arrays = {k: data[k] for k in NPZ_KEYS}
            kind = str(data["kind"].item())
            test_mode = str(data["test_mode"].item())
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{path} is not a readable video_scores.npz ({err})") from None
    scores, labels = arrays["scores"], arrays["labels"]
    videos, classes = arrays["videos"], arrays["classes"]
    if (
        videos.dtype.kind != "U"
        or classes.dtype.kind != "U"
        or videos.ndim != 1
        or classes.ndim != 1
    ):
        raise UserError(f"{path}: 'videos' and 'classes' must be 1-D string arrays")
    if (
        any(arrays[k].size != 1 for k in ("stream", "split", "epoch"))
        or arrays["split"].dtype.kind not in "iu"
    ):
        raise UserError(f"{path}: 'stream', 'split' and 'epoch' must be single values")
    if scores.dtype.kind not in "fiu" or labels.dtype.kind not in "iu":
        raise UserError(f"{path}: 'scores' must be numbers and 'labels' integers")
    if (
        scores.ndim != 2
        or scores.shape != (len(videos), len(classes))
        or labels.shape != videos.shape
    ):
        raise UserError(
            f"{path}: scores have shape {scores.shape}, expected [videos, classes] = "
            f"[{len(videos)}, {len(classes)}] with {len(videos)} labels (got {labels.shape})"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise UserError(f"{path}: labels must lie in 0..{len(classes) - 1}")
    if kind not in SCORE_KINDS:
        raise UserError(f"{path}: unknown score kind {kind!r}; one of {', '.join(SCORE_KINDS)}")
    score = ScoreFile(
        videos=videos.tolist(),
        labels=labels.astype(np.int64),
        classes=classes.tolist(),
        scores=scores.astype(np.float32),
        stream=str(arrays["stream"].item()),
        split=int(arrays["split"].item()),
        epoch=int(arrays["epoch"].item()),
        path=path,
        kind=kind,
        test_mode=test_mode,
    )
    check_unique(score.videos, path)
    check_finite(score)
    return score


def check_unique(videos: list[str], path: Path) -> None:
    seen: dict[str, str] = {}
    for name in videos:
        key = video_key(name)
        if key in seen:
            raise UserError(f"{path}: video {name!r} appears twice (also as {seen[key]!r})")
        seen[key] = name


def check_finite(score: ScoreFile) -> None:
    bad = ~np.isfinite(score.scores).all(axis=1)
    if bad.any():
        first = [score.videos[i] for i in np.flatnonzero(bad)[:3]]
        raise UserError(
            f"{score.path}: {int(bad.sum())} videos have NaN or infinite scores "
            f"(e.g. {', '.join(first)}); the model that wrote it diverged or the file is damaged"
        )
