"""Networks of the two streams."""

from network.resnet import ARCHS, StreamNet, build_model

__all__ = ["ARCHS", "StreamNet", "build_model"]
