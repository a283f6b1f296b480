"""The recognizer: input normalisation, a backbone per snippet, a consensus head per video.

It takes a batch of videos, each K snippets, ``[B, K, C, H, W]`` uint8 (or 0..255 float), and
returns ``[B, classes]``: the engine never flattens or averages segments itself, so a head that
reads the snippets in order (a recurrent one) or a 3D backbone fits without touching it.

The model normalises its own input (mean and std are buffers, saved with the weights), so batches
travel small and a checkpoint is evaluated with the statistics it was trained with. Its
``config`` (plain types) is saved in checkpoints; ``model_from_checkpoint`` rebuilds it.

Partial BN (TSN): in training, every BatchNorm layer of the backbone but the first keeps its
statistics and scale/shift frozen. With small video batches the statistics would otherwise
drift away from the ones the pretrained weights were learnt with.
"""

import torch
from torch import nn

from network.archs import HEAD_DEFAULTS, is_clip_arch
from network.backbones import Backbone, build_backbone
from network.heads import build_head
from utils.errors import UserError

# The config a recognizer is built from, and so what a checkpoint must hold to rebuild it.
CONFIG_KEYS = ("arch", "num_classes", "in_channels", "dropout", "partial_bn", "consensus")
# The head settings a config may leave out (a non-recurrent head has none of its own).
CONFIG_DEFAULTS = dict(HEAD_DEFAULTS)


class Recognizer(nn.Module):
    def __init__(
        self, backbone: nn.Module, head: nn.Module, mean, std, config: dict, weights: str = "none"
    ):
        super().__init__()
        self.weights = weights  # what the backbone started from (network.weights.Pretrained)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.backbone = backbone
        self.head = head
        self.config = dict(config)
        self.partial_bn = bool(config.get("partial_bn", False))
        if self.partial_bn:
            for bn in self._frozen_bns():
                bn.weight.requires_grad_(False)
                bn.bias.requires_grad_(False)

    def _frozen_bns(self) -> list[nn.Module]:
        bns = [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return bns[1:]

    def train(self, mode: bool = True):
        """Like nn.Module.train, but partial BN keeps all BN layers but the first in eval mode."""
        super().train(mode)
        if mode and self.partial_bn:
            for bn in self._frozen_bns():
                bn.eval()
        return self

    def to_channels_last(self) -> "Recognizer":
        """Weights in the memory format normalise() gives the input on CUDA (channels_last_3d for
        a 3D network), so cuDNN does not convert them on every call."""
        clip = is_clip_arch(self.config["arch"])
        return self.to(memory_format=torch.channels_last_3d if clip else torch.channels_last)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, ...] uint8 snippets -> normalised float, channels-last on CUDA."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        x = (x.float() - self.mean.view(shape)) / self.std.view(shape)
        if x.is_cuda and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        elif x.is_cuda and x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x

    def features(self, snippets: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        """[N, C, ...] snippets -> [N, D] pooled features, ``chunk`` snippets per pass (0: all)."""
        parts = snippets.split(chunk) if chunk > 0 else (snippets,)
        return torch.cat([self.backbone(self.normalise(part)) for part in parts])

    def forward(self, x: torch.Tensor, chunk: int = 0, probabilities: bool = False) -> torch.Tensor:
        """[B, K, C, ...] -> [B, classes]; ``probabilities``: combine snippets' softmax."""
        batch, segments = x.shape[:2]
        features = self.features(x.flatten(0, 1), chunk)
        return self.head(features.view(batch, segments, -1), probabilities=probabilities)


def build_recognizer(
    arch: str = "resnet101",
    num_classes: int = 101,
    in_channels: int = 3,
    dropout: float = 0.8,
    pretrained: str = "none",
    partial_bn: bool = True,
    consensus: str = "avg",
    *,
    statistics=None,
    **head_options,
) -> Recognizer:
    """The one builder of a recognizer, for any stream: from Python by its settings, from a run's
    or a checkpoint's config as ``build_recognizer(**config, statistics=spec.statistics)``.

    ``statistics``: the input's mean and std, ``(in_channels) -> (mean, std)`` (a stream spec's:
    network.statistics.flow_statistics for flow); None for RGB, whose statistics are those of
    its weights (network.statistics.weights_statistics: the loaded weights' own transforms, or
    for 'none' or a file those of the arch's default weights). ``head_options``: a recurrent
    head's settings (network.archs.HEAD_DEFAULTS).
    """
    from network.statistics import weights_statistics

    unknown = sorted(set(head_options) - set(CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown model settings {unknown}; the head takes {list(HEAD_DEFAULTS)}")
    config = dict(arch=arch, num_classes=num_classes, in_channels=in_channels, dropout=dropout,
                  partial_bn=partial_bn, consensus=consensus)  # fmt: skip
    config.update({**CONFIG_DEFAULTS, **head_options})
    backbone = _any_backbone(arch, in_channels, pretrained)
    if statistics is None:
        mean, std = weights_statistics(arch, in_channels, backbone.member)
    else:
        mean, std = statistics(in_channels)
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"statistics for {len(mean)} channels, not {in_channels}")
    head = build_head(
        consensus,
        backbone.features,
        num_classes,
        dropout,
        **{key: config[key] for key in HEAD_DEFAULTS},
    )
    return Recognizer(backbone.net, head, mean, std, config, backbone.weights)


def _any_backbone(arch: str, in_channels: int, pretrained) -> Backbone:
    if is_clip_arch(arch):
        from network.backbones3d import build_backbone3d

        return build_backbone3d(arch, in_channels, pretrained)
    return build_backbone(arch, in_channels, pretrained)


def _from_state(in_channels: int) -> tuple[list[float], list[float]]:
    """Placeholders: a checkpoint's state brings the mean and std it was trained with."""
    return [0.0] * in_channels, [1.0] * in_channels


def model_config(ckpt: dict) -> dict:
    """The recognizer config a checkpoint was trained with."""
    return {**CONFIG_DEFAULTS, **ckpt["model_config"]}


def model_state(ckpt: dict) -> dict:
    """The recognizer's state dict in a checkpoint."""
    return ckpt["model"]


def model_from_checkpoint(ckpt: dict, path="checkpoint") -> Recognizer:
    """Rebuild the network a checkpoint was trained with and load its weights."""
    config, state = model_config(ckpt), model_state(ckpt)
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise UserError(f"{path}: its model config lacks {', '.join(missing)}; give a checkpoint "
                        "this toolkit's training wrote")  # fmt: skip
    model = build_recognizer(**config, statistics=_from_state)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:200]
        raise UserError(f"{path}: weights do not fit {config['arch']}: {detail}") from err
    return model
