"""Per-channel mean and std of each input modality, on the 0..255 scale of the uint8 input.

They travel with the model (network.recognizer keeps them as buffers, saved with the weights),
so a checkpoint is evaluated with the statistics it was trained with.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Flow JPEGs store 128 + flow * 128 / bound: centre on 128 and scale to about [-1, 1].
FLOW_MEAN = 128.0
FLOW_STD = 128.0


def rgb_statistics(in_channels: int = 3) -> tuple[list[float], list[float]]:
    """ImageNet's RGB statistics, repeated for inputs that stack several RGB frames."""
    reps = max(1, in_channels // 3)
    return [m * 255 for m in IMAGENET_MEAN] * reps, [s * 255 for s in IMAGENET_STD] * reps


def flow_statistics(in_channels: int) -> tuple[list[float], list[float]]:
    """Flow stacks: centred on 128 (no motion) and scaled to about [-1, 1]."""
    return [FLOW_MEAN] * in_channels, [FLOW_STD] * in_channels
