"""Where frames live on disk: folder names and file-name patterns of the preprocessed data.

The default is the layout of the widely shared UCF101/HMDB51 download and of
tools/extract_frames_flow.py::

    <root>/jpegs_256/<video>/frame000001.jpg           RGB
    <root>/tvl1_flow/u/<video>/frame000001.jpg         x-flow (gray, 128 = no motion)
    <root>/tvl1_flow/v/<video>/frame000001.jpg         y-flow

Other layouts are options, e.g. mmaction's ``rawframes/<video>/img_00001.jpg`` and
``flow_x_00001.jpg`` in the same folder. Video folders may also sit one class level deeper
(``rawframes/<class>/<video>/``, see dataloader.frame_index). Frame files are numbered from 1.

A video's frames may instead be packed, one file per video and modality (dataloader.packs)::

    <root>/jpegs_256/<video>.zip                       RGB: members <video>/frame000001.jpg ...
    <root>/tvl1_flow/<video>.flow.zip                  flow: u/<video>/frame000001.jpg ...,
                                                       v/<video>/frame000001.jpg ...

A pack sits in its modality's pack folder (``Layout.pack_dir``: the RGB folder; the folder both
flow folders are in) at the place of the video's folder, and its members are the frame files'
paths relative to that folder: ``unzip`` there gives the frame folders back.
"""

import os
import posixpath
import re
from dataclasses import dataclass

from utils.errors import UserError

_PRINTF_INT = re.compile(r"%(0?\d*)d")
PACK_SUFFIXES = {"rgb": ".zip", "flow": ".flow.zip"}  # a pack's name: <video><suffix>


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

    def pack_dir(self, name: str) -> str:
        """The folder a modality's packs sit in: the RGB folder; for flow the folder that
        holds both flow folders (``tvl1_flow``; ``""``, the root, when they share none)."""
        folders = [os.path.normpath(folder) for folder, _ in self.modality(name)]
        return os.path.commonpath(folders) if len(folders) > 1 else folders[0]

    def pack_templates(self, name: str, video: str) -> list[str]:
        """Each part's member names in the pack of ``video`` (its folder's path under the
        modality's folder, e.g. ``v_X`` or ``<class>/v_X``), as printf templates of the frame
        number: ``u/v_X/frame%06d.jpg``, the frame file's path relative to ``pack_dir``."""
        base = self.pack_dir(name) or "."
        return [
            posixpath.normpath(
                posixpath.join(os.path.relpath(folder, base), video).replace("%", "%%")
                + "/"
                + pattern
            )
            for folder, pattern in self.modality(name)
        ]


def pattern_regex(pattern: str) -> re.Pattern:
    """``frame%06d.jpg`` -> a regex whose group 1 is the frame number."""
    before, _, after = _PRINTF_INT.split(pattern, maxsplit=1)
    return re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + r"\Z")


def frame_path(video_dir: str, pattern: str, index: int) -> str:
    """Path of the frame at 0-based ``index`` (files are numbered from 1)."""
    return os.path.join(video_dir, pattern % (index + 1))


def frame_numbers(folder: str, regex: re.Pattern) -> list[int]:
    """The numbers of the frame files in ``folder`` that ``regex`` (``pattern_regex``) names, sorted."""
    with os.scandir(folder) as entries:
        return sorted(int(m.group(1)) for e in entries if (m := regex.match(e.name)))
