"""A video's predictions over time: one CSV row per window, a plot, and the runs of one label.

``OUT.csv``: start and end of each window in seconds, then the top-k classes and probabilities of
each column (the streams, then fused). ``OUT.png``: the probabilities of the classes that lead
some window, one panel per column, seconds on the axis. ``OUT_segments.csv``: runs of windows with
the same top-1 label in the last column (fused where there is one); consecutive windows meet
half-way between their centres, so segments cover the video without overlapping.

With a ``threshold`` (utils.unknown), a window whose last-column top probability is below it is
labelled ``unknown``: a ``label`` column after ``end`` in OUT.csv (the top-k kept), unknown
segments (their mean_prob the mean of those windows' top probability), a dashed line at the
threshold on the last panel.
"""

import csv
import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from utils.atomic import atomic_write, write_text
from utils.unknown import UNKNOWN, label

PLOTTED = 6  # classes drawn at most: those leading the most windows


def _csv(rows: list[list]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def timeline_rows(times, columns: dict, classes: list[str], top: int, threshold=None) -> list:
    """Header and one row per window; ``columns``: name -> [windows, classes] probabilities."""
    top = min(top, len(classes))
    labels = None if threshold is None else _labels(columns, classes, threshold)
    header = ["start", "end", *(["label"] if labels else [])]
    header += [f"{c}_{what}{k}" for c in columns for k in range(1, top + 1)
               for what in ("class", "prob")]  # fmt: skip
    rows = [header]
    for w, (start, end) in enumerate(times):
        cells = [f"{start:.2f}", f"{end:.2f}", *([labels[w]] if labels else [])]
        for probs in columns.values():
            for i in np.argsort(-probs[w], kind="stable")[:top]:
                cells += [classes[i], f"{probs[w][i]:.4f}"]
        rows.append(cells)
    return rows


def _labels(columns: dict, classes: list[str], threshold: float) -> list[str]:
    return [label(p, classes, threshold) for p in list(columns.values())[-1]]


def segments(times, probs: np.ndarray, classes: list[str], threshold=None) -> list[list]:
    """Runs of windows with the same label: (start, end, class or unknown, mean probability)."""
    centres = [(a + b) / 2 for a, b in times]
    cuts = [
        0.0,
        *((a + b) / 2 for a, b in zip(centres[:-1], centres[1:], strict=True)),
        times[-1][1],
    ]
    names = [label(p, classes, threshold) for p in probs]
    best = probs.argmax(axis=1)
    rows, first = [["start", "end", "class", "mean_prob"]], 0
    for w in range(1, len(times) + 1):
        if w == len(times) or names[w] != names[first]:
            run = probs[first:w]
            known = names[first] != UNKNOWN
            mean = run[:, best[first]].mean() if known else run.max(axis=1).mean()
            rows.append([f"{cuts[first]:.2f}", f"{cuts[w]:.2f}", names[first], f"{mean:.4f}"])
            first = w
    return rows


def plot_timeline(path: Path, times, columns: dict, classes: list[str], threshold=None) -> Path:
    """Probabilities of the leading classes over time, one panel per column."""
    last = list(columns.values())[-1]
    leads = np.bincount(last.argmax(axis=1), minlength=len(classes))
    shown = [int(i) for i in np.argsort(-(leads + last.mean(axis=0)), kind="stable")[:PLOTTED]]
    centres = [(a + b) / 2 for a, b in times]
    figure = Figure(figsize=(10, 1.2 + 2.2 * len(columns)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(columns), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, probs) in zip(axes, columns.items(), strict=True):
        for i in shown:
            ax.plot(centres, probs[:, i], marker="o" if len(times) < 40 else None, label=classes[i])
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"{name}\nprobability")
        ax.grid(alpha=0.3)
    if threshold is not None:
        axes[-1].axhline(threshold, color="gray", linestyle="--", label=f"below: {UNKNOWN}")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    axes[-1].set_xlabel("seconds (window centres)")
    axes[-1].set_xlim(0, times[-1][1])
    figure.suptitle(f"{len(times)} windows of {times[0][1] - times[0][0]:.1f} s")
    figure.tight_layout()
    with atomic_write(path) as file:  # a kill leaves no half picture
        figure.savefig(file, dpi=100, format="png")
    return path


def write_timeline(
    path: Path, times, columns: dict, classes: list[str], top: int, threshold=None
) -> list[Path]:
    """``path`` (CSV), the plot beside it (.png) and ``<stem>_segments.csv``."""
    path = Path(path)
    plot = path.with_suffix(".png")
    parts = path.with_name(f"{path.stem}_segments.csv")
    write_text(path, _csv(timeline_rows(times, columns, classes, top, threshold)))
    write_text(parts, _csv(segments(times, list(columns.values())[-1], classes, threshold)))
    return [path, plot_timeline(plot, times, columns, classes, threshold), parts]
