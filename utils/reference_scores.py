"""The original two-stream reference implementation's score pickles, read safely.

A pickle (``{'ApplyEyeMakeup_g01_c01': float32[101], ...}``) holds neither labels nor class
names: the caller passes the split's test list and classes in. It is read with an unpickler that
builds only plain containers, strings, numbers and numpy arrays: a crafted file cannot run code.
"""

import codecs
import io
import pickle
from pathlib import Path

import numpy as np

from utils.errors import UserError
from utils.scores import ScoreFile, check_finite, check_unique
from utils.video_names import video_key


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


def read_reference_pickle(path) -> dict[str, np.ndarray]:
    """{video name: float32 [classes]} from a pickle, built with the restricted unpickler;
    anything but a dict of equally long score arrays is a one-line UserError."""
    path = Path(path)
    preds = _unpickle(path)
    if not isinstance(preds, dict) or not preds:
        raise UserError(
            f"{path} holds a {type(preds).__name__}, not a dict from video name to class scores"
        )
    if not all(isinstance(k, str) for k in preds):
        raise UserError(f"{path}: the pickled dict's keys must be video names (strings)")
    try:
        rows = {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in preds.items()}
    except (TypeError, ValueError) as err:
        raise UserError(
            f"{path}: the pickled dict's values must be arrays of numbers ({err})"
        ) from None
    lengths = sorted({len(r) for r in rows.values()})
    if len(lengths) != 1:
        raise UserError(f"{path}: the score arrays have different lengths {lengths}")
    return rows


def label_reference_scores(
    path, preds: dict, test_videos: list[tuple[str, int]], classes: list[str], where: str
) -> ScoreFile:
    """``read_reference_pickle``'s dict as a ScoreFile, labelled by ``test_videos`` ((name,
    label) pairs of the split's test list, in order) and ``classes``; ``where`` names that split.

    Rows come in test-list order. The values are the reference's summed frame logits.
    """
    path = Path(path)
    rows = list(preds.values())
    if len(rows[0]) != len(classes):
        raise UserError(
            f"{path} has {len(rows[0])} scores per video but {where} has {len(classes)} classes"
        )
    test = {video_key(name): (i, name, label) for i, (name, label) in enumerate(test_videos)}
    unknown = [k for k in preds if video_key(k) not in test]
    if unknown:
        raise UserError(
            f"{path}: {len(unknown)} of its {len(preds)} videos are not in the test list of "
            f"{where} (e.g. {', '.join(unknown[:3])}); check --split and --splits-dir"
        )
    check_unique(list(preds), path)
    keys = list(preds)
    order = sorted(range(len(keys)), key=lambda j: test[video_key(keys[j])][0])  # test-list order
    videos = [test[video_key(keys[j])] for j in order]
    stem = path.stem.lower()
    stream = next((s for s in ("spatial", "motion", "fused") if s in stem), "unknown")
    score = ScoreFile(
        videos=[name for _, name, _ in videos],
        labels=np.asarray([label for _, _, label in videos], dtype=np.int64),
        classes=list(classes),
        scores=np.stack([rows[j] for j in order]),
        stream=stream,
        split=-1,
        epoch=-1,
        path=path,
        kind="logits",
    )
    check_finite(score)
    return score
