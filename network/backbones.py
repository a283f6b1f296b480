"""2-D backbones: any torchvision image classification model, for any number of input channels,
returning pooled features.

The recipe is TSN's (Wang et al., 2016): ImageNet weights, and the first convolution of a flow
network made by cross-modality averaging. Nothing here is kept per architecture: the first
convolution is the first one that reads the 3-channel input, whatever its name (``conv1``,
``features.0.0``, ``stem.0``, ``conv_proj``); the classifier is the model's last linear layer,
which the recognizer's head replaces (with the dropout right before it: the head has its own).
"""

from dataclasses import dataclass

from torch import nn
from torchvision.models import get_model

from network.archs import check_image_arch
from network.first_conv import cross_modality_state, replace_module, widen_input
from network.weights import load_into, resolve


@dataclass
class Backbone:
    net: nn.Module  # images [N, C, H, W] -> pooled features [N, features]
    features: int
    weights: str  # what it was initialised from (network.weights.Pretrained.source)
    member: object = None  # the torchvision weights it was initialised from (Pretrained.member)


def classifier(net: nn.Module) -> tuple[str, nn.Linear]:
    """The last linear layer: the ImageNet classifier."""
    found = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(net).__name__} has no linear classifier")
    return found[-1]


def _strip_classifier(net: nn.Module) -> tuple[str, int]:
    """Replace the classifier (and the dropout right before it) by identities; its name and the
    size of the features it read."""
    name, fc = classifier(net)
    replace_module(net, name, nn.Identity())
    parent, _, index = name.rpartition(".")
    holder = net.get_submodule(parent) if parent else net
    if isinstance(holder, nn.Sequential) and index.isdigit():
        for i in range(int(index) - 1, -1, -1):
            if not isinstance(holder[i], nn.Dropout):
                break
            holder[i] = nn.Identity()
    return name, fc.in_features


def build_backbone(
    arch: str = "resnet101", in_channels: int = 3, pretrained: str = "none"
) -> Backbone:
    """A torchvision image model without its classifier, and the size of its pooled features.

    ``pretrained``: 'imagenet' (torchvision's IMAGENET1K_V1 weights where the arch has them,
    downloaded once into the torch hub cache), a version of the arch's weights enum
    ('imagenet1k_v2'), 'none' (random initialisation) or the path of a torchvision state-dict
    file for ``arch``. A 3-channel first convolution is adapted to ``in_channels`` by
    cross-modality averaging.
    """
    check_image_arch(arch)
    weights = resolve(arch, pretrained, "imagenet")
    net = get_model(arch)
    head_name, features = _strip_classifier(net)
    conv_name = widen_input(net, in_channels, nn.Conv2d)
    if weights.state is not None:
        state = cross_modality_state(weights.state, conv_name, in_channels)
        load_into(net, state, arch, pretrained, skip=f"{head_name}.")
    return Backbone(net, features, weights.source, weights.member)
