"""The architectures the command line offers, named without importing torch.

2-D backbones are torchvision's image classification models (``torchvision.models.list_models``
of the top-level module), 3D ones its video classification models (of ``torchvision.models.video``)
and C3D, all built through its model and weights API; the functions that list them ask
torchvision, so they are called once the options are parsed, not for ``--help``.
"""

import difflib

from utils.errors import UserError

# A recurrent head's settings when none are given (engine.config's defaults read them here).
HEAD_DEFAULTS = {"rnn_hidden": 512, "rnn_layers": 1, "rnn_dropout": 0.0, "bidirectional": False}

# What --help says instead of 80 names.
IMAGE_FAMILIES = (
    "any torchvision image classification model: resnet18..resnet152, resnext*, wide_resnet*, "
    "mobilenet_v2, mobilenet_v3_small/large, efficientnet_b0..b7/v2_s/m/l, regnet_x/y_*, "
    "convnext_tiny..large, densenet*, shufflenet_v2_*, mnasnet*, vgg*, alexnet; vit_*, swin_*, "
    "maxvit_t at 224 px crops"
)
# Models of torchvision.models that do not fit a recognizer's backbone, and why.
UNSUPPORTED = {
    "squeezenet1_0": "its classifier is a convolution, not a linear layer",
    "squeezenet1_1": "its classifier is a convolution, not a linear layer",
    "googlenet": "it has auxiliary classifiers",
    "inception_v3": "it has auxiliary classifiers and takes 299 px input",
}
# Transformers whose position embeddings or windows fix the input size.
FIXED_SIZE = {"vit_": 224, "maxvit_": 224}
# 3D networks over clips (the clip stream): C3D (network.backbones3d, built here) and torchvision's
# video models (clip_archs), each with Kinetics-400 weights. What --help says of them; the sizes
# are their Kinetics weights' (network.clip_inputs, which checks them).
C3D_ARCH = "c3d"
CLIP_FAMILIES = (
    "torchvision's video models: r3d_18, mc3_18, r2plus1d_18 (video ResNets, 112 px), s3d (at "
    "least 14 frames of 224 px), mvit_v1_b, mvit_v2_s (exactly 16 frames of 224 px), "
    "swin3d_t/s/b (224 px); or c3d (exactly 16 frames of 112 px)"
)
CONSENSUS = ("avg", "max", "lstm", "gru")
RECURRENT = ("lstm", "gru")  # heads that read the snippets in order


def image_archs() -> list[str]:
    """The 2-D archs: torchvision's classification models less UNSUPPORTED (imports torchvision)."""
    import torchvision.models
    from torchvision.models import list_models

    return [n for n in list_models(module=torchvision.models) if n not in UNSUPPORTED]


def clip_archs() -> list[str]:
    """The 3D archs: C3D and torchvision's video classification models (imports torchvision)."""
    import torchvision.models.video
    from torchvision.models import list_models

    return [C3D_ARCH, *list_models(module=torchvision.models.video)]


def is_clip_arch(name: str) -> bool:
    """Whether ``name`` is a 3D network (a clip stream's arch) rather than a 2-D one."""
    return name in clip_archs()


def unknown_arch(name: str, choices, families: str | None = None) -> UserError:
    """The one-line error for an arch that is not among ``choices``, with the nearest names."""
    near = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    families = families or f"{IMAGE_FAMILIES}, or a 3D network ({CLIP_FAMILIES})"
    return UserError(f"unknown --arch {name!r}{hint} (choose {families})")


def check_clip_arch(name: str) -> None:
    """Refuse a name that is no 3D network, with the nearest ones (a 2-D arch: its streams)."""
    archs = clip_archs()
    if name in archs:
        return
    if name in image_archs():
        raise UserError(
            f"--arch {name} is a 2-D network: it belongs to the frame streams (spatial_cnn.py, "
            f"motion_cnn.py); choose {CLIP_FAMILIES}"
        )
    raise unknown_arch(name, archs, CLIP_FAMILIES)


def check_image_arch(name: str, crop_size: int | None = None) -> None:
    """Refuse a name that is no supported 2-D arch, or a crop a fixed-size transformer cannot take."""
    if name in UNSUPPORTED:
        raise UserError(f"--arch {name} cannot be a backbone here: {UNSUPPORTED[name]}")
    if is_clip_arch(name):
        raise UserError(
            f"--arch {name} is a 3D network: it belongs to the clip stream (clip_cnn.py)"
        )
    archs = image_archs()
    if name not in archs:
        raise unknown_arch(name, archs)
    for prefix, size in FIXED_SIZE.items():
        if name.startswith(prefix) and crop_size not in (None, size):
            raise UserError(f"--arch {name} takes {size} px input: pass --crop-size {size}")
