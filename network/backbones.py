"""Backbones: torchvision ResNets for any number of input channels, returning pooled features.

The recipe is TSN's (Wang et al., 2016): ImageNet weights, and the first conv of a flow network
made by cross-modality averaging. The classifier belongs to the head (network.heads).
"""

from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from network.archs import ARCHS, CLIP_ARCHS
from utils.errors import UserError


def _load_state_dict_file(path: Path) -> dict:
    """A torchvision-style state dict from a file (plain, or under 'state_dict'/'model')."""
    if not path.is_file():
        raise UserError(f"--pretrained file not found: {path}; give 'imagenet', 'none' or a path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read pretrained weights {path}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _adapt_conv1(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Cross-modality averaging (TSN): the mean RGB kernel, copied to every input channel."""
    if weight.shape[1] == in_channels:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    return mean.expand(-1, in_channels, -1, -1).contiguous()


def build_backbone(
    arch: str = "resnet101", in_channels: int = 3, pretrained: str = "none"
) -> tuple[nn.Module, int]:
    """A ResNet trunk without its classifier, and the size of its pooled features.

    ``pretrained``: 'imagenet' (torchvision's default ImageNet weights, downloaded once into the
    torch hub cache), 'none' (random initialisation) or the path of a torchvision state-dict file
    for ``arch``. A 3-channel conv1 is adapted to ``in_channels`` by cross-modality averaging.
    A 3D ``arch`` (network.archs.CLIP_ARCHS) is built by network.backbones3d.
    """
    if arch in CLIP_ARCHS:
        from network.backbones3d import build_backbone3d

        return build_backbone3d(arch, in_channels, pretrained)
    if arch not in ARCHS:
        choices = ", ".join(ARCHS + CLIP_ARCHS)
        raise UserError(f"unknown --arch {arch!r}; choose one of {choices}")
    base = get_model(arch)
    if pretrained == "imagenet":
        weights = get_model_weights(arch).DEFAULT
        try:
            state = weights.get_state_dict(progress=True)
        except Exception as err:  # no network, proxy, broken cache file
            raise UserError(
                f"cannot download the ImageNet weights of {arch} ({err}); download "
                f"{weights.url} and pass the file with --pretrained PATH"
            ) from err
    elif pretrained not in ("none", "", None):
        state = _load_state_dict_file(Path(pretrained))
    else:
        state = None
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if "conv1.weight" in state:
            state["conv1.weight"] = _adapt_conv1(state["conv1.weight"], in_channels)
    if in_channels != 3:
        old = base.conv1
        base.conv1 = nn.Conv2d(
            in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
        )
    if state is not None:
        try:
            missing, unexpected = base.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatch: weights of another arch
            detail = " ".join(str(err).split())[:300]
            raise UserError(f"--pretrained {pretrained} does not fit {arch}: {detail}") from err
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise UserError(
                f"--pretrained {pretrained} does not fit {arch}: "
                f"{len(missing)} missing keys (e.g. {missing[:2]}), "
                f"{len(unexpected)} unexpected keys (e.g. {unexpected[:2]})"
            )
    features = base.fc.in_features
    base.fc = nn.Identity()
    return base, features
