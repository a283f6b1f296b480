"""Networks: backbones, consensus heads, the recognizer that joins them, input statistics.

Import from the modules themselves; this package imports nothing, so naming an architecture
list (``network.backbones.ARCHS``) does not import torch.
"""
