"""Where frames live on disk: folder names and file-name patterns of the preprocessed data.

The default is the layout of the widely shared UCF101/HMDB51 download and of
tools/extract_frames_flow.py::

    <root>/jpegs_256/<video>/frame000001.jpg           RGB
    <root>/tvl1_flow/u/<video>/frame000001.jpg         x-flow (gray, 128 = no motion)
    <root>/tvl1_flow/v/<video>/frame000001.jpg         y-flow

Other layouts are options, e.g. mmaction's ``rawframes/<video>/img_00001.jpg`` and
``flow_x_00001.jpg`` in the same folder. Video folders may also sit one class level deeper
(``rawframes/<class>/<video>/``, see dataloader.frame_index). Frame files are numbered from 1.
"""

import os
import re
from dataclasses import dataclass

from utils.errors import UserError

_PRINTF_INT = re.compile(r"%(0?\d*)d")


@dataclass(frozen=True)
class Layout:
    rgb_dir: str = "jpegs_256"
    flow_x_dir: str = "tvl1_flow/u"
    flow_y_dir: str = "tvl1_flow/v"
    rgb_pattern: str = "frame%06d.jpg"
    flow_x_pattern: str = "frame%06d.jpg"
    flow_y_pattern: str = "frame%06d.jpg"

    def __post_init__(self):
        for name in ("rgb_pattern", "flow_x_pattern", "flow_y_pattern"):
            if len(_PRINTF_INT.findall(getattr(self, name))) != 1:
                raise UserError(
                    f"--{name.replace('_', '-')} {getattr(self, name)!r} needs exactly one "
                    "printf number field such as %06d"
                )

    def modality(self, name: str) -> list[tuple[str, str]]:
        """The (folder, pattern) pairs a modality reads: one for rgb, two (x, y) for flow."""
        if name == "rgb":
            return [(self.rgb_dir, self.rgb_pattern)]
        if name == "flow":
            return [(self.flow_x_dir, self.flow_x_pattern), (self.flow_y_dir, self.flow_y_pattern)]
        raise ValueError(f"unknown modality {name!r}")


def pattern_regex(pattern: str) -> re.Pattern:
    """``frame%06d.jpg`` -> a regex whose group 1 is the frame number."""
    before, _, after = _PRINTF_INT.split(pattern, maxsplit=1)
    return re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + r"\Z")


def frame_path(video_dir: str, pattern: str, index: int) -> str:
    """Path of the frame at 0-based ``index`` (files are numbered from 1)."""
    return os.path.join(video_dir, pattern % (index + 1))
