"""The first convolution of a network, and cross-modality averaging for inputs other than RGB.

TSN (Wang et al., 2016) and two-stream I3D (Carreira and Zisserman, 2017) start a flow network
from RGB weights: the first convolution's kernels are averaged over the 3 colour channels and the
mean is copied to every input channel (x and y flow), the bias is kept, and every other tensor is
the RGB network's. The first convolution is found by module order, not by name: torchvision
registers the layer that reads the input before any other (ResNets' ``conv1`` or ``stem.0``,
S3D's ``features.0.0.0``, MViT's ``conv_proj``, Swin3D's ``patch_embed.proj``, C3D's ``conv1``),
so any 2-D or 3-D network works without a table of layer names.
"""

import torch
from torch import nn


def input_conv(net: nn.Module, kind: type = nn.Conv2d) -> tuple[str, nn.Module]:
    """The first convolution of ``kind`` (nn.Conv2d, nn.Conv3d) in module order, and its name."""
    for name, module in net.named_modules():
        if isinstance(module, kind):
            return name, module
    raise ValueError(f"{type(net).__name__} has no {kind.__name__}")


def replace_module(net: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where the submodule ``name`` ('stem.0', 'fc') is."""
    parent, _, child = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, module)


def cross_modality(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Cross-modality averaging: the mean RGB kernel, copied to each of ``in_channels`` (a 2-D
    or 3-D convolution's weight, [out, in, (T,) H, W])."""
    if weight.shape[1] == in_channels:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    return mean.expand(-1, in_channels, *weight.shape[2:]).contiguous()


def widen_input(net: nn.Module, in_channels: int, kind: type = nn.Conv2d) -> str:
    """Give the first convolution of ``kind`` ``in_channels`` input channels (a fresh one, for
    weights to be loaded into: see cross_modality_state); its name. One that already reads
    ``in_channels`` is kept."""
    name, conv = input_conv(net, kind)
    if conv.in_channels == in_channels:
        return name
    wide = kind(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    replace_module(net, name, wide)
    return name


def cross_modality_state(state: dict, conv_name: str, in_channels: int) -> dict:
    """``state`` (RGB weights) for a network whose convolution ``conv_name`` reads
    ``in_channels``: its kernels averaged across modality, every other tensor (its bias too)
    the same object as in ``state``."""
    key = f"{conv_name}.weight"
    if key not in state:
        return state
    return {**state, key: cross_modality(state[key], in_channels)}
