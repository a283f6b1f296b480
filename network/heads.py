"""Consensus heads: how a recognizer turns its snippets' features into one video score.

A head takes the backbone's pooled features of a video's K snippets, ``[B, K, D]``, and returns
``[B, classes]``. ``SegmentConsensus`` is TSN's: the classifier scores every snippet and the
scores are averaged (or max-pooled), so snippet order does not matter.
"""

import torch
from torch import nn


class SegmentConsensus(nn.Module):
    """Dropout and a linear classifier on every snippet, then the mean (or max) over snippets."""

    def __init__(self, features: int, num_classes: int, dropout: float, mode: str = "avg"):
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"unknown consensus {mode!r}")
        self.mode = mode
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, num_classes)
        # TSN's initialisation of the new classifier (tsn-pytorch models.py): N(0, 0.001), bias 0,
        # so the first steps do not undo the pretrained features with large random logits.
        nn.init.normal_(self.fc.weight, 0.0, 0.001)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
        """``probabilities``: combine the snippets' softmax instead of their logits."""
        scores = self.fc(self.dropout(features))
        if probabilities:
            scores = scores.float().softmax(dim=-1)
        return scores.mean(dim=1) if self.mode == "avg" else scores.amax(dim=1)


def build_head(consensus: str, features: int, num_classes: int, dropout: float) -> nn.Module:
    return SegmentConsensus(features, num_classes, dropout, consensus)
