"""Video-level accuracy figures and probabilities, the same for evaluation, fusion and predict."""

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # not imported at run time: fusion.py needs no torch and starts sooner
    import torch

# What the rows of a score file hold; see utils.scores.
SCORE_KINDS = ("logits", "probabilities", "log_probabilities")


def topk_hits(logits: "torch.Tensor", labels: "torch.Tensor", ks=(1, 5)) -> "torch.Tensor":
    """How many rows have their label among the top-k scores, for each k (k capped at classes):
    a float tensor on the logits' device, read by the caller when it syncs anyway."""
    import torch  # here: fusion and reports use this module without torch

    maxk = min(max(ks), logits.shape[1])
    found = logits.topk(maxk, dim=1).indices.eq(labels.view(-1, 1)).cumsum(dim=1).clamp_(max=1)
    # Plain indexing only: a list index would be copied to the device, a sync per batch.
    return torch.stack([found[:, min(k, maxk) - 1] for k in ks]).sum(dim=1).float()


def guess_kind(scores: np.ndarray, kind: str | None) -> str:
    """``kind``, or for a file that does not say: probabilities when every row is non-negative
    and sums to 1, else logits."""
    if kind is not None:
        return kind
    scores = np.asarray(scores, dtype=np.float64)
    is_prob = scores.size and (scores >= 0).all()
    if is_prob and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3):
        return "probabilities"
    return "logits"


def probabilities(scores: np.ndarray, kind: str | None = "logits") -> np.ndarray:
    """Rows of class scores as float64 probabilities.

    ``kind`` says what the rows hold (SCORE_KINDS): probabilities are kept, logits and
    log-probabilities go through softmax (which is exp for the latter). ``None`` (a file that does
    not say) keeps rows that already sum to 1 and applies softmax to the others.
    """
    scores = np.asarray(scores, dtype=np.float64)
    kind = guess_kind(scores, kind)
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown score kind {kind!r}; one of {', '.join(SCORE_KINDS)}")
    if kind == "probabilities":
        return scores
    from scipy.special import softmax  # here, not above: command lines start faster

    return softmax(scores, axis=-1)


def accuracy_report(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, top-5 and mean class accuracy in percent, and the number of videos.

    Mean class accuracy is the mean over classes present of each class's top-1 recall.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    num_classes = scores.shape[1]
    top1 = float((scores.argmax(1) == labels).mean()) if len(labels) else 0.0
    if num_classes > 5 and len(labels):
        best5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        top5 = float((best5 == labels[:, None]).any(axis=1).mean())
    else:
        top5 = 1.0 if len(labels) else 0.0
    predicted = scores.argmax(1)
    recalls = [float((predicted[labels == c] == c).mean()) for c in np.unique(labels)]
    mean_class = float(np.mean(recalls)) if recalls else 0.0  # sklearn's would warn on subsets
    return {
        "top1": 100.0 * top1,
        "top5": 100.0 * float(top5),
        "mean_class": 100.0 * float(mean_class),
        "videos": int(len(labels)),
    }
