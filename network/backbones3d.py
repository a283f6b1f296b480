"""3D backbones over clips [N, C, T, H, W] (RGB, or flow's x and y): C3D and any of
torchvision's video models.

Like the 2D backbones they return pooled features and leave the classifier to the head, so the
clip stream reuses the recognizer and its consensus heads (the average over clips is the video's
score). Weights: torchvision's Kinetics-400 ones, a local state-dict file, or none.
"""

from torch import nn
from torchvision.models import get_model

from network.archs import C3D_ARCH, check_clip_arch
from network.backbones import Backbone
from network.first_conv import cross_modality_state, widen_input
from network.weights import load_into, resolve
from utils.errors import UserError

C3D_INPUT = (16, 112, 112)  # frames, height, width: the size fc6 was laid out for
KINETICS_CLASSES = 400  # torchvision's video models are built for them, the classifier found so


class C3D(nn.Module):
    """C3D (Tran et al. 2015): 8 3x3x3 convs, 5 max pools, fc6/fc7 of 4096 with dropout.

    Layer names follow the common PyTorch port of the Sports-1M weights (conv1 ... conv5b,
    fc6, fc7, fc8), so a converted state dict loads with ``--pretrained PATH``. The input must be
    3 x 16 x 112 x 112: pool5 then leaves 512 x 1 x 4 x 4 = 8192 features for fc6.
    """

    def __init__(self, num_classes: int = 487, dropout: float = 0.5):
        super().__init__()

        def conv(cin, cout):
            return nn.Conv3d(cin, cout, kernel_size=3, padding=1)

        self.conv1, self.pool1 = conv(3, 64), nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.conv2, self.pool2 = conv(64, 128), nn.MaxPool3d(2, 2)
        self.conv3a, self.conv3b, self.pool3 = conv(128, 256), conv(256, 256), nn.MaxPool3d(2, 2)
        self.conv4a, self.conv4b, self.pool4 = conv(256, 512), conv(512, 512), nn.MaxPool3d(2, 2)
        self.conv5a, self.conv5b = conv(512, 512), conv(512, 512)
        self.pool5 = nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)

    def features(self, x):
        """[N, 3, 16, 112, 112] -> [N, 4096]: the fc7 activations after ReLU, before fc7's
        dropout: whatever classifies them applies it (fc8 here, the recognizer's head, with
        ``--dropout``, in a stream), so each of fc6 and fc7 is dropped once, as in the paper."""
        if tuple(x.shape[-3:]) != C3D_INPUT:
            raise ValueError(f"C3D takes clips of 16 x 112 x 112, not {tuple(x.shape[-3:])}")
        r = self.relu
        x = self.pool1(r(self.conv1(x)))
        x = self.pool2(r(self.conv2(x)))
        x = self.pool3(r(self.conv3b(r(self.conv3a(x)))))
        x = self.pool4(r(self.conv4b(r(self.conv4a(x)))))
        x = self.pool5(r(self.conv5b(r(self.conv5a(x)))))
        x = self.dropout(r(self.fc6(x.flatten(1))))
        return r(self.fc7(x))

    def forward(self, x):
        return self.fc8(self.dropout(self.features(x)))


class _Features(nn.Module):
    """C3D without fc8: what the recognizer's head reads."""

    def __init__(self, net: C3D):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


def find_classifier(net: nn.Module, num_classes: int) -> tuple[str, int]:
    """The child of ``net`` that holds its classifier, and the size of the features it reads.

    The classifier is the last linear layer or convolution with ``num_classes`` outputs, whatever
    its name or kind: a Linear ``fc`` (video ResNets) or ``head`` (Swin3D), a Sequential
    ``head`` of dropout and Linear (MViT), S3D's ``classifier`` of dropout and a 1x1x1 Conv3d.
    The whole child goes: its dropout is the stream head's job (``--dropout``)."""
    found = None
    for name, child in net.named_children():
        for layer in child.modules():
            out = getattr(layer, "out_features", getattr(layer, "out_channels", None))
            if isinstance(layer, (nn.Linear, nn.Conv3d)) and out == num_classes:
                size = getattr(layer, "in_features", getattr(layer, "in_channels", None))
                found = (name, size)
    if found is None:
        raise ValueError(f"{type(net).__name__} has no layer of {num_classes} outputs")
    return found


def build_backbone3d(
    arch: str = "r2plus1d_18", in_channels: int = 3, pretrained: str = "none"
) -> Backbone:
    """A 3D network without its classifier, and the size of its pooled features ([N, D]).

    ``arch``: C3D or any of torchvision's video models (network.archs.clip_archs).
    ``pretrained``: 'kinetics' (torchvision's Kinetics-400 weights, V1 where there are several;
    not for C3D), a version by name (e.g. 'kinetics400_imagenet22k_v1'), 'none' or the path of a
    state-dict file for ``arch``. Clips of other than 3 channels (flow: 2) get a first
    convolution made by cross-modality averaging (network.first_conv).
    """
    check_clip_arch(arch)
    if str(pretrained).lower().startswith("imagenet"):
        raise UserError(f"{arch} is a 3D network: use --pretrained kinetics, none or a file")
    if str(pretrained).lower().startswith("kinetics") and arch == C3D_ARCH:
        raise UserError(
            "torchvision has no C3D weights; give --pretrained PATH (a converted Sports-1M "
            "state dict) or none"
        )
    weights = resolve(arch, pretrained, "kinetics")
    if arch == C3D_ARCH:
        net, classifier, features = C3D(), "fc8", 4096
    else:
        net = get_model(arch, num_classes=KINETICS_CLASSES)
        classifier, features = find_classifier(net, KINETICS_CLASSES)
    conv_name = widen_input(net, in_channels, nn.Conv3d)
    if weights.state is not None:
        state = cross_modality_state(weights.state, conv_name, in_channels)
        load_into(net, state, arch, pretrained, skip=classifier + ".")
    if arch == C3D_ARCH:
        del net.fc8
        return Backbone(_Features(net), features, weights.source, weights.member)
    setattr(net, classifier, nn.Identity())
    return Backbone(net, features, weights.source, weights.member)
