"""Consensus heads: how a recognizer turns its snippets' features into one video score.

A head takes the backbone's pooled features of a video's K snippets, ``[B, K, D]``, in time
order, and returns ``[B, classes]``. ``SegmentConsensus`` is TSN's: the classifier scores every
snippet and the scores are averaged (or max-pooled), so snippet order does not matter.
``RecurrentHead`` (CNN + LSTM/GRU) reads the features in order, so it can tell a clip from the
same clip played backwards, which no order-free consensus can.
"""

import torch
from torch import nn

from network.archs import HEAD_DEFAULTS, RECURRENT

# The recurrent head's settings and the values a config without them (older checkpoints) gets.


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


class RecurrentHead(nn.Module):
    """An LSTM or GRU over the snippets' pooled features, a classifier on its mean output.

    The classifier reads the RNN's output averaged over time (not only the last step): every
    step gets a gradient, a bidirectional RNN needs no choice of "last", and it is the
    time-averaged prediction of Ng et al. (2015). ``rnn_dropout`` drops the features entering
    the RNN and, with several layers, between them; ``dropout`` is before the classifier.

    Every step is a real snippet: the samplers never pad (a video shorter than K repeats
    frames, in order), so there is nothing to mask.
    """

    def __init__(
        self,
        features: int,
        num_classes: int,
        dropout: float,
        cell: str = "lstm",
        rnn_hidden: int = HEAD_DEFAULTS["rnn_hidden"],
        rnn_layers: int = HEAD_DEFAULTS["rnn_layers"],
        rnn_dropout: float = HEAD_DEFAULTS["rnn_dropout"],
        bidirectional: bool = HEAD_DEFAULTS["bidirectional"],
    ):
        super().__init__()
        if cell not in RECURRENT:
            raise ValueError(f"unknown recurrent cell {cell!r}")
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.input_dropout = nn.Dropout(rnn_dropout)
        self.rnn = rnn(
            features,
            rnn_hidden,
            num_layers=rnn_layers,
            batch_first=True,
            dropout=rnn_dropout if rnn_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(rnn_hidden * (2 if bidirectional else 1), num_classes)
        if cell == "lstm":  # measured: it helps the LSTM and slows the GRU (README)
            init_lstm(self.rnn)

    def forward(self, features: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
        """``probabilities``: the softmax of the video's score (there is one score per video)."""
        outputs, _ = self.rnn(self.input_dropout(features))
        scores = self.fc(self.dropout(outputs.mean(dim=1)))
        return scores.float().softmax(dim=-1) if probabilities else scores


@torch.no_grad()
def init_lstm(rnn: nn.LSTM) -> None:
    """Per gate: orthogonal recurrent weights (Saxe et al. 2014), Xavier input weights, zero
    biases and a forget-gate bias of 1 (Jozefowicz et al. 2015).

    PyTorch's default (uniform in +-1/sqrt(hidden)) made the LSTM learn order slowly and
    seed-dependently on the demo's synthetic directions; with this its state carries over steps
    from the start. A GRU keeps PyTorch's default, which learnt faster there than this one.
    """
    hidden = rnn.hidden_size
    for name, param in rnn.named_parameters():
        if name.startswith("weight_hh"):
            for gate in param.split(hidden):
                nn.init.orthogonal_(gate)
        elif name.startswith("weight_ih"):
            for gate in param.split(hidden):
                nn.init.xavier_uniform_(gate)
        else:
            nn.init.zeros_(param)
            if name.startswith("bias_ih"):
                param[hidden : 2 * hidden] = 1.0  # gates i, f, g, o: f is the second


def build_head(
    consensus: str, features: int, num_classes: int, dropout: float, **options
) -> nn.Module:
    """The head named by ``consensus``; ``options`` are HEAD_DEFAULTS' keys (recurrent heads)."""
    if consensus in RECURRENT:
        return RecurrentHead(
            features, num_classes, dropout, consensus, **{**HEAD_DEFAULTS, **options}
        )
    return SegmentConsensus(features, num_classes, dropout, consensus)
