"""'unknown' below a threshold: a prediction whose top probability is under P names no class.

A model knows only its classes: a clip of another action is still given one of them, often
confidently. ``--threshold P`` (tools/predict.py, tools/live.py) labels a video or window whose
fused top probability is below P ``unknown``, its probabilities kept; ``coverage`` says, on a
validation set's scores, what fraction of videos each P keeps and how accurate those are
(tools/threshold.py), so P can be chosen before it meets videos of unknown classes.
"""

import numpy as np

UNKNOWN = "unknown"


def label(probs: np.ndarray, classes: list[str], threshold: float | None = None) -> str:
    """The top class of ``probs``, or UNKNOWN when its probability is below ``threshold``."""
    best = int(np.argmax(probs))
    return UNKNOWN if threshold is not None and probs[best] < threshold else classes[best]


def shown(probs: np.ndarray, classes: list[str], threshold: float | None = None) -> str:
    """The label as drawn and printed: 'Diving 87%', or 'unknown (Diving 34%)' below P."""
    best = int(np.argmax(probs))
    top = f"{classes[best]} {100 * probs[best]:.0f}%"
    return top if label(probs, classes, threshold) != UNKNOWN else f"{UNKNOWN} ({top})"


def coverage(probs: np.ndarray, labels: np.ndarray, thresholds) -> list[tuple]:
    """For each threshold P: (P, videos kept, percent kept, top-1 percent of those kept or None).

    ``probs``: [videos, classes]; a video is kept when its top probability is at least P."""
    top = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    rows = []
    for p in thresholds:
        kept = top >= p
        n = int(kept.sum())
        accuracy = 100.0 * right[kept].mean() if n else None
        rows.append((float(p), n, 100.0 * n / max(len(top), 1), accuracy))
    return rows
