"""The architectures the command line offers; a plain list, importable without torch."""

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
CONSENSUS = ("avg", "max", "lstm", "gru")
RECURRENT = ("lstm", "gru")  # heads that read the snippets in order
