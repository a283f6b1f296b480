"""Video-level score files: this toolkit's ``video_scores.npz`` and the reference implementation's pickle.

Both hold one row of class scores per test video. The npz carries its own labels and class names;
the reference pickle (``{'ApplyEyeMakeup_g01_c01': float32[101], ...}``) does not, so its labels
come from the split files. Pickles are read with an unpickler that builds only plain containers,
strings, numbers and numpy arrays: a crafted file cannot run code.
"""

import codecs
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataloader.splits import load_split, video_key
from utils.atomic import atomic_write
from utils.errors import UserError

NPZ_KEYS = ("videos", "labels", "classes", "scores", "stream", "split", "epoch")


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

    def __len__(self) -> int:
        return len(self.videos)


def save_scores(path, *, videos, labels, classes, scores, stream, split, epoch) -> Path:
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
        )
    return path


def load_scores(path, *, splits_dir=None, split=None, dataset="ucf101") -> ScoreFile:
    """Read a score file, telling the npz and the reference pickle apart by their content.

    ``splits_dir`` and ``split`` are needed only for a reference pickle: they give its labels
    and class names (the pickle's keys must be videos of that split's test list).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"score file not found: {path}")
    if zipfile.is_zipfile(path):
        score = _load_npz(path)
    else:
        score = _load_reference_pickle(path, splits_dir, split, dataset)
    _check_finite(score)
    return score


def _load_npz(path: Path) -> ScoreFile:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in NPZ_KEYS if k not in data.files]
            if missing:
                raise UserError(
                    f"{path} lacks the arrays {', '.join(missing)}: it is a zip or npz file but "
                    "not a video_scores.npz written by this toolkit"
                )
            arrays = {k: data[k] for k in NPZ_KEYS}
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
    score = ScoreFile(
        videos=videos.tolist(),
        labels=labels.astype(np.int64),
        classes=classes.tolist(),
        scores=scores.astype(np.float32),
        stream=str(arrays["stream"].item()),
        split=int(arrays["split"].item()),
        epoch=int(arrays["epoch"].item()),
        path=path,
    )
    _check_unique(score.videos, path)
    return score


def _latin1_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2; only the latin-1 form it uses."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError("_codecs.encode is allowed only as encode(str, 'latin1')")
    return codecs.encode(text, encoding)


def _allowed_globals() -> dict[tuple[str, str], object]:
    """Exactly what a pickled dict of numpy arrays refers to (numpy 1.x and 2.x spellings)."""
    from collections import OrderedDict

    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 1.26
        from numpy.core import multiarray, numeric

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    allowed[("_codecs", "encode")] = _latin1_encode
    allowed[("collections", "OrderedDict")] = OrderedDict
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds plain containers, strings, numbers and numpy arrays; refuses every other global."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # latin1: numpy arrays in Python 2 pickles
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module, name):
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise UserError(
            f"{self.path}: refused to load the pickled global {module}.{name}; a score file holds "
            "only a dict of numpy arrays (was it crafted, or is it not a score file?)"
        )

    def persistent_load(self, pid):
        raise UserError(f"{self.path}: refused a pickle persistent id; not a score file")


def _unpickle(path: Path):
    data = path.read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), path).load()
    except UserError:
        raise
    except Exception as err:  # any failure to parse means: not a pickle we can read
        raise UserError(
            f"{path} is neither a video_scores.npz nor a reference-implementation pickle "
            f"({type(err).__name__}: {err})"
        ) from None


def _load_reference_pickle(path: Path, splits_dir, split, dataset) -> ScoreFile:
    preds = _unpickle(path)
    if not isinstance(preds, dict) or not preds:
        raise UserError(
            f"{path} holds a {type(preds).__name__}, not a dict from video name to class scores"
        )
    if not all(isinstance(k, str) for k in preds):
        raise UserError(f"{path}: the pickled dict's keys must be video names (strings)")
    try:
        rows = [np.asarray(v, dtype=np.float32).reshape(-1) for v in preds.values()]
    except (TypeError, ValueError) as err:
        raise UserError(
            f"{path}: the pickled dict's values must be arrays of numbers ({err})"
        ) from None
    if len({len(r) for r in rows}) != 1:
        raise UserError(
            f"{path}: the score arrays have different lengths {sorted({len(r) for r in rows})}"
        )
    if splits_dir is None or split is None:
        raise UserError(
            f"{path} is a reference-implementation pickle without labels: pass --splits-dir DIR "
            f"--split N (the {dataset} split files it was evaluated on) so labels can be read"
        )
    spec = load_split(dataset, splits_dir, split)
    if len(rows[0]) != len(spec.classes):
        raise UserError(
            f"{path} has {len(rows[0])} scores per video but {dataset} split {split} "
            f"in {splits_dir} has {len(spec.classes)} classes"
        )
    test = {video_key(v.name): (i, v) for i, v in enumerate(spec.test)}
    unknown = [k for k in preds if video_key(k) not in test]
    if unknown:
        raise UserError(
            f"{path}: {len(unknown)} of its {len(preds)} videos are not in the test list of "
            f"{dataset} split {split} (e.g. {', '.join(unknown[:3])}); check --split and --splits-dir"
        )
    _check_unique(list(preds), path)
    keys = list(preds)
    order = sorted(range(len(keys)), key=lambda j: test[video_key(keys[j])][0])  # test-list order
    videos = [test[video_key(keys[j])][1] for j in order]
    stem = path.stem.lower()
    stream = next((s for s in ("spatial", "motion", "fused") if s in stem), "unknown")
    return ScoreFile(
        videos=[v.name for v in videos],
        labels=np.asarray([v.label for v in videos], dtype=np.int64),
        classes=list(spec.classes),
        scores=np.stack([rows[j] for j in order]),
        stream=stream,
        split=int(split),
        epoch=-1,
        path=path,
    )


def _check_unique(videos: list[str], path: Path) -> None:
    seen: dict[str, str] = {}
    for name in videos:
        key = video_key(name)
        if key in seen:
            raise UserError(f"{path}: video {name!r} appears twice (also as {seen[key]!r})")
        seen[key] = name


def _check_finite(score: ScoreFile) -> None:
    bad = ~np.isfinite(score.scores).all(axis=1)
    if bad.any():
        first = [score.videos[i] for i in np.flatnonzero(bad)[:3]]
        raise UserError(
            f"{score.path}: {int(bad.sum())} videos have NaN or infinite scores "
            f"(e.g. {', '.join(first)}); the model that wrote it diverged or the file is damaged"
        )
