"""What the commands that score raw video share (tools/predict.py, tools/live.py): the extraction
and --threshold options, and the streams loaded with the settings their frames were extracted
with, so both compute exactly the frames training saw."""

import sys

from extraction.settings import PRESETS
from utils.classes import check_same_classes
from utils.errors import UserError

EXTRACTION_OPTIONS = ("short_side", "bound", "preset", "max_frames", "jpeg_quality")
# Stream spec names, in the tables' order; each is a checkpoint option (flow_clip: --flow-clip).
STREAM_OPTIONS = ("spatial", "motion", "clip", "flow_clip")


def check_streams_given(args) -> None:
    if all(getattr(args, name) is None for name in STREAM_OPTIONS):
        raise UserError(
            "give one or more of --spatial, --motion, --clip and --flow-clip CHECKPOINT"
        )


def add_extraction_arguments(parser) -> None:
    extraction = parser.add_argument_group(
        "extraction; default: the settings recorded in each checkpoint, else those in "
        "index.json of the data root it was trained on (written by tools/extract_frames_flow.py); "
        "when neither exists, --short-side, --bound and --preset must be given"
    )
    extraction.add_argument(
        "--short-side", type=int, help="resize frames to this short side (0: keep the size)"
    )
    extraction.add_argument("--bound", type=float, help="flow bound in pixels")
    extraction.add_argument("--preset", choices=sorted(PRESETS), help="TV-L1 preset")
    extraction.add_argument(
        "--max-frames", type=int, help="use only the first N frames, as extracted with it"
    )
    extraction.add_argument(
        "--jpeg-quality",
        type=int,
        help="JPEG quality of the extracted frames; the round trip is done in memory (0: none)",
    )
    extraction.add_argument(
        "--override-extraction",
        action="store_true",
        help="use the extraction options given even where they contradict a checkpoint's "
        "recorded settings (refused otherwise: the frames would differ from training's)",
    )


def add_threshold_argument(parser) -> None:
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="P",
        help="label a video or window whose fused top probability is below P (0-1) 'unknown', "
        "its probabilities kept; tools/threshold.py shows what each P keeps on validation scores",
    )


def check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be a probability from 0 to 1, got {threshold:g}")


def _describe(settings) -> str:
    parts = []
    for key, value in settings.as_dict().items():
        if key == "max_frames" and not value:
            continue
        shown = f"{value:g}" if isinstance(value, float) else value
        parts.append(f"--{key.replace('_', '-')} {shown}")
    return ", ".join(parts)


def load_streams(args, device, names, file=None) -> tuple[dict, dict]:
    """The checkpoints given (the options ``names`` of ``args``), by stream, and the extraction
    settings of each, printed to ``file`` (default stdout)."""
    from engine.inference import extraction_settings, load_stream

    streams = {
        name: load_stream(getattr(args, name), name, device)
        for name in names
        if getattr(args, name) is not None
    }
    first, *others = streams.values()
    for other in others:
        hint = "give checkpoints trained on the same dataset and split files"
        check_same_classes(first.classes, other.classes, first.path, other.path, hint)
    given = {k: getattr(args, k) for k in EXTRACTION_OPTIONS}
    override = args.override_extraction
    settings = {n: extraction_settings(s, given, override) for n, s in streams.items()}
    for name, stream in streams.items():
        config, source = settings[name]
        print(
            f"{name}: {stream.path} ({stream.arch}, epoch {stream.epoch}); "
            f"{_describe(config)} ({source})",
            file=file or sys.stdout,
        )
    return streams, settings
