"""A video's predictions over time: one CSV row per window, a plot, and the runs of one label.

``OUT.csv``: start and end of each window in seconds, then the top-k classes and probabilities of
each column (the streams, then fused). ``OUT.png``: the probabilities of the classes that lead
some window, one panel per column, seconds on the axis. ``OUT_segments.csv``: runs of windows with
the same top-1 label in the last column (fused where there is one); consecutive windows meet
half-way between their centres, so segments cover the video without overlapping.
"""

import csv
import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from utils.atomic import atomic_write, write_text

PLOTTED = 6  # classes drawn at most: those leading the most windows


def _csv(rows: list[list]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def timeline_rows(times, columns: dict, classes: list[str], top: int) -> list[list]:
    """Header and one row per window; ``columns``: name -> [windows, classes] probabilities."""
    top = min(top, len(classes))
    header = ["start", "end"] + [f"{c}_{what}{k}" for c in columns for k in range(1, top + 1)
                                 for what in ("class", "prob")]  # fmt: skip
    rows = [header]
    for w, (start, end) in enumerate(times):
        cells = [f"{start:.2f}", f"{end:.2f}"]
        for probs in columns.values():
            for i in np.argsort(-probs[w], kind="stable")[:top]:
                cells += [classes[i], f"{probs[w][i]:.4f}"]
        rows.append(cells)
    return rows


def segments(times, probs: np.ndarray, classes: list[str]) -> list[list]:
    """Runs of windows with the same top-1 class: (start, end, class, mean probability)."""
    centres = [(a + b) / 2 for a, b in times]
    cuts = [
        0.0,
        *((a + b) / 2 for a, b in zip(centres[:-1], centres[1:], strict=True)),
        times[-1][1],
    ]
    best = probs.argmax(axis=1)
    rows, first = [["start", "end", "class", "mean_prob"]], 0
    for w in range(1, len(times) + 1):
        if w == len(times) or best[w] != best[first]:
            mean = probs[first:w, best[first]].mean()
            rows.append(
                [f"{cuts[first]:.2f}", f"{cuts[w]:.2f}", classes[best[first]], f"{mean:.4f}"]
            )
            first = w
    return rows


def plot_timeline(path: Path, times, columns: dict, classes: list[str]) -> Path:
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
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    axes[-1].set_xlabel("seconds (window centres)")
    axes[-1].set_xlim(0, times[-1][1])
    figure.suptitle(f"{len(times)} windows of {times[0][1] - times[0][0]:.1f} s")
    figure.tight_layout()
    with atomic_write(path) as file:  # a kill leaves no half picture
        figure.savefig(file, dpi=100, format="png")
    return path


def write_timeline(path: Path, times, columns: dict, classes: list[str], top: int) -> list[Path]:
    """``path`` (CSV), the plot beside it (.png) and ``<stem>_segments.csv``."""
    path = Path(path)
    plot = path.with_suffix(".png")
    parts = path.with_name(f"{path.stem}_segments.csv")
    write_text(path, _csv(timeline_rows(times, columns, classes, top)))
    write_text(parts, _csv(segments(times, list(columns.values())[-1], classes)))
    return [path, plot_timeline(plot, times, columns, classes), parts]
