"""The engine above the data layer and the networks: stream specs, the shared command line, the
trainer, inference and fusion. Entry scripts and tools are thin on top of it.

Import from the modules themselves; this package imports nothing.
"""
