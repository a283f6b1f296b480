"""Evaluation reports beside a score file: per-class accuracy, confusion matrix, misclassified videos;
and a run's learning curves (curves.png from its train/val/test CSVs).

These are the things users otherwise open a notebook for after an evaluation.
"""

import csv
import io
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from utils.atomic import atomic_write
from utils.metrics import probabilities
from utils.scores import ScoreFile

# What every evaluation writes beside its score file, and what it adds for many classes.
REPORTS = ("per_class_accuracy.csv", "confusion_matrix.png", "misclassified.csv")
MORE_REPORTS = ("confused_pairs.png",)


def reports_current(scores_path, prefix: str = "") -> bool:
    """Whether every report of the score file is there and written after it: a run killed while
    writing them (or between the scores and them) has not finished."""
    scores_path = Path(scores_path)
    made = scores_path.stat().st_mtime_ns
    paths = [scores_path.parent / f"{prefix}{name}" for name in REPORTS]
    return all(p.is_file() and p.stat().st_mtime_ns >= made for p in paths)


@contextmanager
def _csv_writer(path: Path):
    """A csv.writer whose file replaces ``path`` whole when the block ends (utils.atomic)."""
    with atomic_write(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        yield csv.writer(text)
        text.flush()
        text.detach()


def _save_figure(fig, path: Path, dpi: int) -> Path:
    with atomic_write(path) as file:
        fig.savefig(file, dpi=dpi, format="png")
    return path


def confusion_counts(labels, predicted, num_classes: int) -> np.ndarray:
    """[true, predicted] video counts (scikit-learn's confusion_matrix without its import time)."""
    pairs = np.asarray(labels, np.int64) * num_classes + np.asarray(predicted, np.int64)
    return np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def write_reports(score: ScoreFile, out_dir, prefix: str = "") -> list[Path]:
    """Write ``{prefix}per_class_accuracy.csv``, ``{prefix}confusion_matrix.png`` and
    ``{prefix}misclassified.csv`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = len(score.classes)
    predicted = score.scores.argmax(axis=1) if len(score) else np.zeros(0, dtype=np.int64)
    counts = confusion_counts(score.labels, predicted, num_classes)
    more = []
    present = np.flatnonzero(counts.sum(axis=0) + counts.sum(axis=1))
    if len(present) > PAIRS_ABOVE:  # first: REPORTS, written last, say the set is whole
        pairs = out_dir / f"{prefix}{MORE_REPORTS[0]}"
        more.append(_plot_confused_pairs(pairs, score, counts))
    per_class, confusion, misclassified = (out_dir / f"{prefix}{name}" for name in REPORTS)
    return [
        _write_per_class(per_class, score.classes, counts),
        _plot_confusion(confusion, score, counts),
        _write_misclassified(misclassified, score, predicted),
        *more,
    ]


def _write_per_class(path: Path, classes: list[str], counts: np.ndarray) -> Path:
    videos = counts.sum(axis=1)
    correct = np.diag(counts)
    with _csv_writer(path) as writer:
        writer.writerow(["class", "videos", "correct", "accuracy"])
        for name, n, k in zip(classes, videos, correct, strict=True):
            writer.writerow([name, int(n), int(k), f"{100.0 * k / n:.2f}" if n else ""])
    return path


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # late: seconds to import
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plot_confusion(path: Path, score: ScoreFile, counts: np.ndarray) -> Path:
    """Row-normalised (each true class sums to 1), over the classes that occur (as truth or
    prediction), each class a cell large enough for its name in a readable font."""
    present = np.flatnonzero(counts.sum(axis=0) + counts.sum(axis=1))
    if not len(present):
        present = np.arange(len(score.classes))
    counts = counts[np.ix_(present, present)]
    names = [score.classes[i] for i in present]
    n = len(names)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    longest = max(len(name) for name in names)
    font = 10 if n <= 20 else 8
    cell = 0.5 if n <= 20 else 0.16  # inches; 8 pt text is ~0.11 in high
    margin = 1.5 + longest * font / 72 * 0.6  # room for the rotated / left labels
    fig = _figure(max(6.0, n * cell + margin + 1.5), max(6.0, n * cell + margin))
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ticks = np.arange(n)
    ax.set_xticks(ticks, names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    shown = f"{n} of {len(score.classes)} classes" if n < len(score.classes) else f"{n} classes"
    split = f" split {score.split}" if score.split > 0 else ""  # 0: a custom dataset's split
    ax.set_title(f"{score.stream}{split}: {len(score)} videos, {shown}, rows normalised")
    if n <= 20:
        for i, j in zip(*np.nonzero(rates), strict=True):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, shrink=0.6, label="fraction of the true class")
    return _save_figure(fig, path, 120)


PAIRS_ABOVE = 20  # classes present beyond which the most-confused pairs get a view of their own
TOP_PAIRS = 20


def _plot_confused_pairs(path: Path, score: ScoreFile, counts: np.ndarray) -> Path:
    """The most-confused (true -> predicted) pairs as bars: a 101-class matrix hides them."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    np.fill_diagonal(rates, 0.0)
    order = np.argsort(-rates, axis=None, kind="stable")[:TOP_PAIRS]
    pairs = [np.unravel_index(k, rates.shape) for k in order if rates.flat[k] > 0]
    fig = _figure(9.0, 1.5 + 0.35 * max(len(pairs), 1))
    ax = fig.add_subplot()
    labels = [f"{score.classes[t]} -> {score.classes[p]}" for t, p in pairs]
    values = [rates[t, p] for t, p in pairs]
    ax.barh(np.arange(len(pairs)), values, color="tab:blue")
    ax.set_yticks(np.arange(len(pairs)), labels, fontsize=10)
    ax.invert_yaxis()
    for y, (t, p) in enumerate(pairs):
        ax.text(rates[t, p], y, f" {int(counts[t, p])} of {int(counts[t].sum())}", va="center")
    ax.set_xlim(0, 1.15)  # room for the counts after the longest bar
    ax.set_xlabel("fraction of the true class predicted as the other")
    ax.set_title(f"{score.stream}: the {len(pairs)} most confused pairs (true -> predicted)")
    return _save_figure(fig, path, 120)


def _write_misclassified(path: Path, score: ScoreFile, predicted: np.ndarray) -> Path:
    """Most confident mistakes first: those are the ones worth looking at."""
    probs = probabilities(score.scores, score.kind)
    rows = np.arange(len(score))
    wrong = rows[predicted != score.labels]
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")]
    with _csv_writer(path) as writer:
        writer.writerow(
            [
                "video",
                "true_class",
                "predicted_class",
                "true_score",
                "predicted_score",
                "true_probability",
                "predicted_probability",
            ]
        )
        for i in wrong:
            t, p = score.labels[i], predicted[i]
            writer.writerow(
                [
                    score.videos[i],
                    score.classes[t],
                    score.classes[p],
                    f"{score.scores[i, t]:.4f}",
                    f"{score.scores[i, p]:.4f}",
                    f"{probs[i, t]:.4f}",
                    f"{probs[i, p]:.4f}",
                ]
            )
    return path


CURVE_PHASES = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def _read_curve(path: Path) -> dict[str, list[float]]:
    """epoch, loss and top1 columns of a records CSV (utils.records); empty when absent."""
    columns = {"epoch": [], "loss": [], "top1": []}
    if not path.is_file():
        return columns
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                values = [float(row[k]) for k in columns]
            except (KeyError, TypeError, ValueError):
                continue
            for key, value in zip(columns, values, strict=True):
                columns[key].append(value)
    return columns


def plot_curves(record_dir, path, title: str = "") -> Path:
    """Loss and top-1 per epoch of train.csv, val.csv and test.csv in ``record_dir``, side by
    side; a phase with one row (the final test) is a marker."""
    record_dir, path = Path(record_dir), Path(path)
    fig = _figure(10.0, 4.0)
    axes = fig.subplots(1, 2)
    for phase, colour in CURVE_PHASES.items():
        curve = _read_curve(record_dir / f"{phase}.csv")
        if not curve["epoch"]:
            continue
        for ax, key in zip(axes, ("loss", "top1"), strict=True):
            ax.plot(curve["epoch"], curve[key], "o-", color=colour, label=phase, markersize=3)
    for ax, label in zip(axes, ("loss", "video top-1 (%)"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path, 100)  # rewritten each epoch: a kill leaves the previous one
