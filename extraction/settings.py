"""What a data root's frames and flow were made with: the settings, their presets, and the
``index.json`` contract between tools/extract_frames_flow.py and tools/predict.py.

Kept apart from extraction/decode.py and extraction/tvl1.py (which do the work) so that a command
line can offer these choices without importing the video decoder and OpenCV.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

# The extraction tool's record of how a data root's frames were made: ``<root>/index.json``
# holds {"settings": ExtractionSettings as a dict, "videos": {...}}.
INDEX_NAME = "index.json"
# TV-L1 implementations: OpenCV contrib's (CPU), or extraction/tvl1_torch.py (any torch device).
FLOW_METHODS = ("opencv", "torch")


@dataclass(frozen=True)
class ExtractionSettings:
    """How frames and flow were extracted; the defaults are the extraction tool's."""

    short_side: int = 256  # resize so the short side has this many pixels; 0 keeps the size
    bound: float = 20.0  # flow clipped to +-bound pixels before mapping to 0..255
    preset: str = "quality"  # TV-L1 preset (PRESETS); "fast" is ~15x faster, less accurate
    max_frames: int | None = None  # keep only the first N frames of each video
    jpeg_quality: int = 95  # JPEG quality of RGB and flow frames
    method: str = "opencv"  # TV-L1 implementation (FLOW_METHODS): OpenCV's, or ours in PyTorch

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ExtractionSettings":
        """Settings from a dict, keys it lacks at their defaults, unknown keys ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def read_index_settings(root) -> ExtractionSettings | None:
    """The settings recorded in ``<root>/index.json``; None when absent or unreadable."""
    path = Path(root) / INDEX_NAME
    try:
        return ExtractionSettings.from_dict(json.loads(path.read_text())["settings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class FlowPreset:
    """TV-L1 settings: ``scale`` resizes the frames flow is solved on (the flow is upsampled back);
    ``tvl1`` holds keyword arguments of cv2.optflow.DualTVL1OpticalFlow_create."""

    scale: float
    tvl1: dict


PRESETS = {
    "quality": FlowPreset(scale=1.0, tvl1={}),
    "fast": FlowPreset(
        scale=0.6,
        tvl1={
            "nscales": 4,
            "scaleStep": 0.7,
            "warps": 3,
            "epsilon": 0.03,
            "innnerIterations": 10,  # sic: OpenCV's spelling
            "outerIterations": 2,
        },
    ),
}
