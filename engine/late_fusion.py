"""Late fusion: read score files of any streams, line their videos up, average their scores.

Used by fusion.py (score files on disk) and tools/predict.py (scores of one video in memory), so
both fuse the same way.
"""

from pathlib import Path

import numpy as np

from utils.classes import class_difference
from utils.errors import UserError
from utils.metrics import guess_kind
from utils.reference_scores import label_reference_scores, read_reference_pickle
from utils.scores import ScoreFile, is_npz, load_npz
from utils.tables import format_table
from utils.video_names import video_key


def load_score_file(path, *, splits_dir=None, split=None, dataset="ucf101") -> ScoreFile:
    """A ``video_scores.npz``, or a reference-implementation pickle labelled from split files.

    ``splits_dir`` and ``split`` are needed only for a pickle: its keys must be videos of that
    split's test list, whose labels and class names it lacks.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"score file not found: {path}")
    if is_npz(path):
        return load_npz(path)
    preds = read_reference_pickle(path)
    if splits_dir is None or split is None:
        raise UserError(
            f"{path} is a reference-implementation pickle without labels: pass --splits-dir DIR "
            f"--split N (the {dataset} split files it was evaluated on) so labels can be read"
        )
    from dataloader.splits import load_split  # only pickles need the split parser

    spec = load_split(dataset, splits_dir, split)
    score = label_reference_scores(
        path,
        preds,
        [(v.name, v.label) for v in spec.test],
        spec.classes,
        f"{dataset} split {split} in {splits_dir}",
    )
    score.split = int(split)
    return score


def check_streams(files: dict[str, ScoreFile], force: bool) -> None:
    """Each file must hold the stream its option names (refused unless ``force``), and the
    files should come from comparable evaluations (a note when split, epoch or test differ)."""
    for name, score in files.items():
        if score.stream not in (name, "unknown") and not force:
            own = score.stream
            option = f"--{own}" if own in ("spatial", "motion") else f"--stream {own}=PATH"
            raise UserError(
                f"{score.path} holds {own}-stream scores, not {name}; give it as "
                f"{option} (or pass --force to fuse it as {name} anyway)"
            )
    for warning in comparability_warnings(files):
        print(f"warning: {warning}")


def _crops(test_mode: str) -> str:
    """The crop part of a test mode ("19 snippets, 10 crops" -> "10 crops")."""
    return test_mode.rsplit(", ", 1)[-1]


def comparability_warnings(files: dict[str, ScoreFile]) -> list[str]:
    """Differences between the score files that signal a mistake, one sentence each.

    Streams differ in epochs (spatial 80, motion 340) and snippets (19 frames, 10 clips) by
    design; what signals a mistake is another split, files of one stream from different epochs
    or test modes (two evaluations of one run mixed up), or other test crops (one stream
    evaluated with --ten-crop, another without).
    """
    warnings = []

    def differ(what: str, names: list[str], value) -> None:
        values = {value(files[n]) for n in names} - {-1, ""}
        if len(values) > 1:
            shown = ", ".join(f"{n} {value(files[n])}" for n in names)
            warnings.append(f"the score files differ in {what}: {shown}")

    differ("split", list(files), lambda f: f.split)
    by_stream: dict[str, list[str]] = {}
    for name, score in files.items():
        by_stream.setdefault(score.stream, []).append(name)
    for stream, names in by_stream.items():
        if len(names) > 1:
            differ(f"epoch (all {stream} stream)", names, lambda f: f.epoch)
            differ(f"test mode (all {stream} stream)", names, lambda f: f.test_mode)
    differ("test crops", list(files), lambda f: _crops(f.test_mode) if f.test_mode else "")
    return warnings


def check_classes(files: list[ScoreFile]) -> None:
    """Every file must have the first one's classes (utils.classes: letter case aside)."""
    first = files[0]
    for other in files[1:]:
        difference = class_difference(first.classes, other.classes)
        if difference is not None:
            raise UserError(
                f"{first.path} and {other.path} have different classes ({difference}); "
                "fuse score files of streams trained on one dataset and classInd order"
            )


def _examples(names: list[str]) -> str:
    return f" (e.g. {', '.join(names[:3])})" if names else ""


def match_videos(files: list[ScoreFile], allow_partial: bool) -> list[np.ndarray]:
    """Row indices into each file of the videos all share, in the first file's order."""
    first = files[0]
    keys = [video_key(v) for v in first.videos]
    shared = set(keys)
    for other in files[1:]:
        rows = {video_key(v) for v in other.videos}
        only_first = [v for v, k in zip(first.videos, keys, strict=True) if k not in rows]
        only_other = [v for v in other.videos if video_key(v) not in set(keys)]
        if only_first or only_other:
            both = len(first) - len(only_first)
            detail = (
                f"{len(only_first)} of {first.path}'s {len(first)} videos are missing from "
                f"{other.path}{_examples(only_first)}, {len(only_other)} of its {len(other)} "
                f"are missing from {first.path}{_examples(only_other)}"
            )
            if not both:
                raise UserError(f"the score files share no video: {detail}")
            if not allow_partial:
                raise UserError(
                    f"video sets differ: {detail}; pass --allow-partial to fuse the {both} in both"
                )
            print(f"note: --allow-partial: fusing the {both} videos in both files; {detail}")
        shared &= rows
    first_rows = np.asarray([i for i, k in enumerate(keys) if k in shared], dtype=np.int64)
    result = [first_rows]
    for other in files[1:]:
        index = {video_key(v): i for i, v in enumerate(other.videos)}
        rows = np.asarray([index[keys[i]] for i in first_rows], dtype=np.int64)
        differ = np.flatnonzero(first.labels[first_rows] != other.labels[rows])
        if len(differ):
            names = [first.videos[first_rows[k]] for k in differ[:3]]
            raise UserError(
                f"labels differ for {len(differ)} videos (e.g. {', '.join(names)}) between "
                f"{first.path} and {other.path}; were they evaluated on different split files?"
            )
        result.append(rows)
    return result


def log_probabilities(scores: np.ndarray, kind: str | None = "logits") -> np.ndarray:
    """Rows as log-probabilities, in float64, from what a score file holds (SCORE_KINDS)."""
    from scipy.special import log_softmax

    scores = np.asarray(scores, dtype=np.float64)
    if kind == "probabilities":
        with np.errstate(divide="ignore"):
            return np.log(scores)
    return log_softmax(scores, axis=-1)


def fused_kind(kinds: list, use_softmax: bool) -> str:
    """What ``fuse`` returns (SCORE_KINDS) for streams of these kinds (already guessed)."""
    if use_softmax or len(set(kinds)) > 1:
        return "log_probabilities"
    return kinds[0]


def fuse(
    scores: list[np.ndarray], weights, use_softmax: bool, kinds: list | None = None
) -> np.ndarray:
    """Weighted average of the streams' scores, or with use_softmax of their probabilities.

    ``kinds`` say what each holds (SCORE_KINDS; None: guessed); ``fused_kind`` says what the
    result holds. Scores of one kind are averaged as they are. Scores of different kinds
    (logits of one stream, probabilities of another) are not comparable numbers: each is turned
    into log-probabilities first, whose average ranks classes as the average of logits does.

    The average of probabilities is returned as its logarithm, computed in log space: softmax
    of the reference's sharp scores (sums of 19 logits) underflows to exact zeros, even in
    float64, and those ties would change top-5. Softmax of the result gives the probabilities.
    """
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != len(scores):
        raise UserError(f"{len(weights)} weights given for {len(scores)} streams; give one each")
    if (weights < 0).any() or weights.sum() <= 0:
        shown = " ".join(f"{w:g}" for w in weights)
        raise UserError(f"--weights must be non-negative with a positive sum, got {shown}")
    kinds = [guess_kind(s, k) for s, k in zip(scores, kinds or [None] * len(scores), strict=True)]
    if not use_softmax:
        if len(set(kinds)) > 1:
            scores = [log_probabilities(s, k) for s, k in zip(scores, kinds, strict=True)]
        total = sum(
            w * np.asarray(s, dtype=np.float64) for w, s in zip(weights, scores, strict=True)
        )
        return total / weights.sum()
    from scipy.special import logsumexp

    logs = np.stack([log_probabilities(s, k) for s, k in zip(scores, kinds, strict=True)])
    shape = (-1,) + (1,) * (logs.ndim - 1)
    return logsumexp(logs, axis=0, b=weights.reshape(shape)) - np.log(weights.sum())


def fuse_files(
    files: dict[str, ScoreFile], weights=None, softmax: bool = False, allow_partial: bool = False
) -> tuple[dict, ScoreFile]:
    """Fuse score files by stream name (load_score_file): the accuracy of each stream and of
    the fusion ("fused") on the videos they share, and the fused scores as a ScoreFile."""
    from utils.metrics import accuracy_report

    streams = list(files.values())
    check_classes(streams)
    rows = match_videos(streams, allow_partial)
    first = streams[0]
    labels = first.labels[rows[0]]
    scores = [f.scores[r] for f, r in zip(streams, rows, strict=True)]
    kinds = [guess_kind(f.scores, f.kind) for f in streams]
    if not softmax and len(set(kinds)) > 1:
        held = ", ".join(f"{name} holds {k}" for name, k in zip(files, kinds, strict=True))
        print(f"note: {held}: each converted to log-probabilities before averaging")
    fused = fuse(scores, weights, softmax, kinds)
    results = {name: accuracy_report(s, labels) for name, s in zip(files, scores, strict=True)}
    results["fused"] = accuracy_report(fused, labels)
    videos = [first.videos[i] for i in rows[0]]
    kind = fused_kind(kinds, softmax)
    fused_file = ScoreFile(
        videos, labels, first.classes, fused, "fused", first.split, -1, kind=kind
    )
    return results, fused_file


def format_results(results: dict, files: dict[str, ScoreFile] | None = None) -> str:
    """The accuracy table: one row per stream and the fusion, all on the same videos, with
    each stream's epoch and test mode."""
    files = files or {}
    rows = []
    for name, r in results.items():
        score = files.get(name)
        epoch = score.epoch if score is not None and score.epoch >= 0 else ""
        mode = score.test_mode if score is not None else ""
        row = [f"{r['top1']:.2f}", f"{r['top5']:.2f}", f"{r['mean_class']:.2f}", r["videos"]]
        rows.append([name, *row, epoch, mode])
    header = ["stream", "top-1", "top-5", "mean class", "videos", "epoch", "test"]
    return format_table(header, rows, {1, 2, 3, 4, 5})


def simplex_grid(streams: int, step: float = 0.1) -> list[tuple[float, ...]]:
    """Every weight vector with entries in multiples of ``step`` that sum to 1."""
    parts = round(1 / step)

    def compose(total, slots):
        if slots == 1:
            yield (total,)
            return
        for first in range(total + 1):
            for rest in compose(total - first, slots - 1):
                yield (first, *rest)

    return [tuple(k / parts for k in c) for c in compose(parts, streams)]


def tune_weights(val_files: list[ScoreFile], softmax_choices, allow_partial: bool) -> dict:
    """The fusion weights (and softmax setting) with the best validation top-1.

    Only ``val_files`` are read: the choice cannot depend on the test split. Ties go to the
    better mean class accuracy, then to the weights closest to equal.
    """
    from utils.metrics import accuracy_report

    check_classes(val_files)
    rows = match_videos(val_files, allow_partial)
    labels = val_files[0].labels[rows[0]]
    scores = [f.scores[r] for f, r in zip(val_files, rows, strict=True)]
    kinds = [guess_kind(f.scores, f.kind) for f in val_files]
    equal = np.full(len(val_files), 1 / len(val_files))
    best = None
    for use_softmax in softmax_choices:
        for weights in simplex_grid(len(val_files)):
            if not any(weights):
                continue
            report = accuracy_report(fuse(scores, weights, use_softmax, kinds), labels)
            key = (report["top1"], report["mean_class"], -np.abs(np.subtract(weights, equal)).sum())
            if best is None or key > best[0]:
                best = (key, weights, use_softmax, report)
    _, weights, use_softmax, report = best
    return {"weights": list(weights), "softmax": use_softmax, "validation": report}
