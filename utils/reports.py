"""Evaluation reports beside a score file: per-class accuracy, confusion matrix, misclassified videos.

These are the three things users otherwise open a notebook for after an evaluation.
"""

import csv
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from utils.metrics import probabilities
from utils.scores import ScoreFile


def write_reports(score: ScoreFile, out_dir, prefix: str = "") -> list[Path]:
    """Write ``{prefix}per_class_accuracy.csv``, ``{prefix}confusion_matrix.png`` and
    ``{prefix}misclassified.csv`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = len(score.classes)
    predicted = score.scores.argmax(axis=1) if len(score) else np.zeros(0, dtype=np.int64)
    counts = confusion_matrix(score.labels, predicted, labels=np.arange(num_classes))
    paths = [
        _write_per_class(out_dir / f"{prefix}per_class_accuracy.csv", score.classes, counts),
        _plot_confusion(out_dir / f"{prefix}confusion_matrix.png", score, counts),
        _write_misclassified(out_dir / f"{prefix}misclassified.csv", score, predicted),
    ]
    return paths


def _write_per_class(path: Path, classes: list[str], counts: np.ndarray) -> Path:
    videos = counts.sum(axis=1)
    correct = np.diag(counts)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "videos", "correct", "accuracy"])
        for name, n, k in zip(classes, videos, correct, strict=True):
            writer.writerow([name, int(n), int(k), f"{100.0 * k / n:.2f}" if n else ""])
    return path


def _plot_confusion(path: Path, score: ScoreFile, counts: np.ndarray) -> Path:
    """Row-normalised (each true class sums to 1), sized so 101 class names stay legible."""
    num_classes = len(score.classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    side = max(6.0, 0.16 * num_classes + 3.0)  # inches: ~19 for 101 classes
    font = 10 if num_classes <= 20 else 5
    fig = Figure(figsize=(side, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ticks = np.arange(num_classes)
    ax.set_xticks(ticks, score.classes, rotation=90, fontsize=font)
    ax.set_yticks(ticks, score.classes, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    title = f"{score.stream} split {score.split}: {len(score)} videos, rows normalised"
    ax.set_title(title)
    if num_classes <= 20:
        for i, j in zip(*np.nonzero(rates), strict=True):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, shrink=0.6, label="fraction of the true class")
    fig.savefig(path, dpi=120)
    return path


def _write_misclassified(path: Path, score: ScoreFile, predicted: np.ndarray) -> Path:
    """Most confident mistakes first: those are the ones worth looking at."""
    probs = probabilities(score.scores, score.kind)
    rows = np.arange(len(score))
    wrong = rows[predicted != score.labels]
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
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
