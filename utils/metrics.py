"""Video-level accuracy figures, the same for a stream's evaluation and for fusion."""

from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import balanced_accuracy_score, top_k_accuracy_score

if TYPE_CHECKING:  # not imported at run time: fusion.py needs no torch and starts 4 s sooner
    import torch


def topk_correct(logits: "torch.Tensor", labels: "torch.Tensor", ks=(1, 5)) -> list[int]:
    """How many rows have their label among the top-k scores, for each k (k capped at classes)."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hits = top.eq(labels.view(-1, 1))
    return [int(hits[:, : min(k, maxk)].any(dim=1).sum()) for k in ks]


def accuracy_report(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, top-5 and mean class accuracy in percent, and the number of videos.

    Mean class accuracy is the mean over classes present of each class's top-1 recall.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    num_classes = scores.shape[1]
    classes = np.arange(num_classes)
    top1 = float((scores.argmax(1) == labels).mean()) if len(labels) else 0.0
    if num_classes > 5:
        top5 = top_k_accuracy_score(labels, scores, k=5, labels=classes)
    else:
        top5 = 1.0 if len(labels) else 0.0
    mean_class = balanced_accuracy_score(labels, scores.argmax(1)) if len(labels) else 0.0
    return {
        "top1": 100.0 * top1,
        "top5": 100.0 * float(top5),
        "mean_class": 100.0 * float(mean_class),
        "videos": int(len(labels)),
    }
