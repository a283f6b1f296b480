"""Untrained spatial and motion checkpoints of a small arch and a short video of moving noise:
what the threshold and live tests score (no training: only the plumbing is under test)."""

import numpy as np
import torch

from engine.streams import MOTION, SPATIAL
from extraction.decode import write_video
from network.recognizer import build_recognizer
from tests.helpers import SMALL_ARCH, save_stream_checkpoint

CLASSES = ["Jump", "Run", "Swim", "Walk"]
EXTRACTION = {"short_side": 32, "bound": 15.0, "preset": "fast", "max_frames": None}
OPTIONS = dict(crop_size=32, test_snippets=3, num_segments=1, test_sequences=0)


def tiny_checkpoints(folder, seed: int = 0) -> dict:
    """``{"spatial": path, "motion": path}``: random weights, a classifier spread enough that
    windows' top probabilities differ."""
    paths = {}
    for spec, extra in ((SPATIAL, {}), (MOTION, {"stack_length": 2})):
        torch.manual_seed(seed)
        channels = 3 if spec is SPATIAL else 2 * extra["stack_length"]
        model = build_recognizer(SMALL_ARCH, len(CLASSES), channels, dropout=0.0,
                                 partial_bn=False, statistics=spec.statistics)  # fmt: skip
        with torch.no_grad():
            model.head.fc.weight.normal_(0, 300.0)
        path = folder / f"{spec.name}.pth.tar"
        paths[spec.name] = save_stream_checkpoint(
            path, spec.name, model.eval(), CLASSES, EXTRACTION, **OPTIONS, **extra
        )
    return paths


def noise_video(path, frames: int = 30, fps: int = 25, seed: int = 0):
    """Blocks of noise drifting right, 40x32 pixels: every window looks a little different."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (8, 12, 3), np.uint8).repeat(4, 0).repeat(4, 1)
    video = np.stack([np.roll(base, 2 * i, axis=1)[:, :40] for i in range(frames)])
    return write_video(path, video, fps=fps)
