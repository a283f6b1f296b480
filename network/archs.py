"""The architectures the command line offers; a plain list, importable without torch."""

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# 3D networks over RGB clips (the clip stream): C3D (network.backbones3d) and torchvision's video
# ResNets, whose Kinetics-400 weights torchvision provides.
CLIP_ARCHS = ("c3d", "r3d_18", "mc3_18", "r2plus1d_18")
CONSENSUS = ("avg", "max", "lstm", "gru")
RECURRENT = ("lstm", "gru")  # heads that read the snippets in order
