"""Per-channel mean and std of each input modality, on the 0..255 scale of the uint8 input.

RGB input takes the statistics its weights were trained with, read from the weights' own
transforms (``weights_statistics``): they differ by family (ImageNet's for the image models,
Kinetics' for the video ResNets and S3D, 0.45 / 0.225 for MViT, ImageNet's for Swin3D). Flow takes TSN's. They travel
with the model (network.recognizer keeps them as buffers, saved with the weights), so a
checkpoint is evaluated with the statistics it was trained with.
"""

from network.archs import C3D_ARCH

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's video models were trained on Kinetics-400 with these (their weights' transforms).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
# TSN's flow statistics (tsn-pytorch models.py, ResNet branch): (v / 255 - 0.5) / 0.226, where
# 0.226 is the mean of ImageNet's stds. The cross-modality conv1 (averaged ImageNet kernels) was
# used with inputs of this scale.
FLOW_MEAN = 0.5 * 255
FLOW_STD = sum(IMAGENET_STD) / len(IMAGENET_STD) * 255


def _repeated(mean, std, in_channels: int) -> tuple[list[float], list[float]]:
    """RGB statistics (0..1) on the 0..255 scale, once per RGB frame of a stacked input."""
    if in_channels % 3:
        raise ValueError(
            f"{in_channels} input channels are no stack of RGB frames: give the input's own "
            "statistics (network.statistics.flow_statistics for flow stacks)"
        )
    reps = in_channels // 3
    return [m * 255 for m in mean] * reps, [s * 255 for s in std] * reps


def rgb_statistics(in_channels: int = 3) -> tuple[list[float], list[float]]:
    """ImageNet's RGB statistics, repeated for inputs that stack several RGB frames."""
    return _repeated(IMAGENET_MEAN, IMAGENET_STD, in_channels)


def flow_statistics(in_channels: int) -> tuple[list[float], list[float]]:
    """Flow stacks: TSN's statistics, centred on 127.5 (128 is no motion), std 0.226 x 255."""
    return [FLOW_MEAN] * in_channels, [FLOW_STD] * in_channels


def kinetics_statistics(in_channels: int = 3) -> tuple[list[float], list[float]]:
    """Kinetics-400 RGB statistics: the ones torchvision's video ResNets' weights expect."""
    return _repeated(KINETICS_MEAN, KINETICS_STD, in_channels)


def default_weights(arch: str):
    """The member of ``arch``'s torchvision weights enum its DEFAULT names; None for an arch
    torchvision has no weights for (C3D). Reads the enum's metadata: nothing is downloaded."""
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        return None


def weights_statistics(arch: str, in_channels: int = 3, member=None):
    """The RGB mean and std ``arch``'s weights were trained with, from their own transforms:
    those of ``member`` (a torchvision weights enum member, what was loaded), or where the
    weights are none or a file, those the arch's default weights use. An arch torchvision has
    no weights for takes Kinetics' (C3D) or ImageNet's."""
    member = member if member is not None else default_weights(arch)
    transform = member.transforms() if member is not None else None
    if transform is not None and hasattr(transform, "mean") and hasattr(transform, "std"):
        return _repeated(transform.mean, transform.std, in_channels)
    if arch == C3D_ARCH:
        return kinetics_statistics(in_channels)
    return rgb_statistics(in_channels)
