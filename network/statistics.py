"""Per-channel mean and std of each input modality, on the 0..255 scale of the uint8 input.

They travel with the model (network.recognizer keeps them as buffers, saved with the weights),
so a checkpoint is evaluated with the statistics it was trained with.
"""

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


def rgb_statistics(in_channels: int = 3) -> tuple[list[float], list[float]]:
    """ImageNet's RGB statistics, repeated for inputs that stack several RGB frames."""
    reps = max(1, in_channels // 3)
    return [m * 255 for m in IMAGENET_MEAN] * reps, [s * 255 for s in IMAGENET_STD] * reps


def flow_statistics(in_channels: int) -> tuple[list[float], list[float]]:
    """Flow stacks: TSN's statistics, centred on 127.5 (128 is no motion), std 0.226 x 255."""
    return [FLOW_MEAN] * in_channels, [FLOW_STD] * in_channels


def kinetics_statistics(in_channels: int = 3) -> tuple[list[float], list[float]]:
    """Kinetics-400 RGB statistics: the ones torchvision's video weights expect."""
    reps = max(1, in_channels // 3)
    return [m * 255 for m in KINETICS_MEAN] * reps, [s * 255 for s in KINETICS_STD] * reps
