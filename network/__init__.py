"""Networks: backbones, consensus heads, the recognizer that joins them, input statistics.

Import from the modules themselves; this package imports nothing, so the command line's
architecture names (``network.archs``) come without importing torch.
"""
