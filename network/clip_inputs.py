"""What input a 3D network expects: crop, short side, clip length, the sizes it cannot take.

Read from the arch's Kinetics-400 weights in torchvision (their transforms' crop and resize
size, their metadata's ``min_size`` and ``min_temporal_size``, and the clip length and frame rate
their accuracy was measured at, which torchvision states in the metadata's ``_docs`` text), so
a new torchvision video model needs no table here. C3D, built in network.backbones3d, takes
exactly C3D_INPUT. Nothing is downloaded.
"""

import re
from dataclasses import dataclass

from network.archs import C3D_ARCH
from network.backbones3d import C3D_INPUT
from network.statistics import default_weights
from utils.errors import UserError

# The stream's clip length where the arch takes shorter ones: C3D's and the video ResNets'.
CLIP_LENGTH = 16
# Families whose input size is fixed at their minimum (torchvision's meta gives only minimums):
# torchvision/models/video/mvit.py builds MViT's positional embeddings (v1) and relative
# positions (v2) for one ``temporal_size`` x ``spatial_size``, 16 x 224 x 224 for its weights.
EXACT = {"mvit_": "its positional embeddings are built for that size"}


@dataclass(frozen=True)
class ClipInput:
    arch: str
    crop: int  # the crop its weights were trained and tested on (pixels)
    short_side: int  # frames are scaled to this short side before the crop
    clip_length: int  # the stream's default: CLIP_LENGTH, or more where the arch needs it
    min_crop: int
    min_length: int
    exact: str | None  # why crop and clip length must be exactly the minimum (None: free)
    eval_clips: str | None  # "16 frames at 15 fps": what the weights' accuracy was measured on

    def describe(self) -> str:
        """One line for --help and start-up: what the arch takes and its defaults."""
        if self.exact:
            takes = f"exactly {self.min_length} x {self.min_crop} x {self.min_crop} ({self.exact})"
        elif (self.min_length, self.min_crop) == (1, 1):
            takes = "any length and size"
        else:
            takes = f"at least {self.min_length} x {self.min_crop} x {self.min_crop}"
        text = (
            f"{self.arch} takes clips of {takes}; defaults: --clip-length {self.clip_length} "
            f"--crop-size {self.crop} --clip-short-side {self.short_side}"
        )
        return text + (f"; its Kinetics weights were measured on {self.eval_clips}" if
                       self.eval_clips else "")  # fmt: skip


def _measured_on(meta: dict) -> str | None:
    """'16 frames at 15 fps' from the metadata's text, where torchvision states it."""
    docs = meta.get("_docs", "")
    length, rate = re.search(r"clip_len=(\d+)", docs), re.search(r"frame_rate=([\d.]+)", docs)
    if length is None or rate is None:
        return None
    return f"clips of {length.group(1)} frames at {rate.group(1)} fps"


def clip_input(arch: str) -> ClipInput:
    """What ``arch`` (a name network.archs.clip_archs gives) expects."""
    if arch == C3D_ARCH:
        length, size, _ = C3D_INPUT
        return ClipInput(arch, size, 128, length, size, length, "fc6's input", None)
    member = default_weights(arch)
    transform, meta = member.transforms(), member.meta
    min_length = meta.get("min_temporal_size") or 1
    exact = next((why for prefix, why in EXACT.items() if arch.startswith(prefix)), None)
    return ClipInput(
        arch=arch,
        crop=transform.crop_size[0],
        short_side=min(transform.resize_size),
        clip_length=max(CLIP_LENGTH, min_length),
        min_crop=meta["min_size"][0],
        min_length=min_length,
        exact=exact,
        eval_clips=_measured_on(meta),
    )


def check_clip_input(arch: str, clip_length: int, crop_size: int) -> None:
    """Refuse a clip length or crop ``arch`` cannot take, naming the options to pass."""
    given = clip_input(arch)
    if given.exact and (clip_length, crop_size) != (given.min_length, given.min_crop):
        raise UserError(
            f"--arch {arch} takes clips of exactly {given.min_length} x {given.min_crop} x "
            f"{given.min_crop} ({given.exact}): pass --clip-length {given.min_length} "
            f"--crop-size {given.min_crop}"
        )
    if clip_length < given.min_length or crop_size < given.min_crop:
        raise UserError(
            f"--arch {arch} takes clips of at least {given.min_length} frames of "
            f"{given.min_crop} x {given.min_crop}: pass --clip-length {given.min_length} "
            f"or more and --crop-size {given.min_crop} or more"
        )
