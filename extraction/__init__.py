"""Extraction: raw videos -> RGB frames and TV-L1 flow (decoding, resizing, OpenCV and PyTorch
TV-L1, the worker pool, the resumable extraction root and its settings).

It stands on dataloader/ (the frame layout both write and read, dataloader/layout.py; the split
files) and utils/; dataloader/ never imports it. Import from the modules themselves
(``extraction.decode``, ``extraction.settings``, ...): this package imports nothing, so a command
line can read the settings without loading PyAV and OpenCV.
"""
