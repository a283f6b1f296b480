"""The command line that tools/predict.py and the web page tools/app.py share: the checkpoints,
--top, fusion, --threshold, windows, extraction and --device options, and their checks."""

from dataclasses import fields
from pathlib import Path

from engine.cli import add_fusion_arguments
from engine.predict_video import STRIDE, TOP, WINDOW, VideoOptions
from engine.stream_setup import (
    add_extraction_arguments,
    add_threshold_argument,
    check_streams_given,
    check_threshold,
)
from utils.errors import UserError


def add_video_arguments(parser) -> None:
    """The checkpoints, --top, fusion, --threshold, windows, extraction and --device options."""
    parser.add_argument(
        "--spatial", type=Path, help="spatial-stream checkpoint (checkpoint.pth.tar)"
    )
    parser.add_argument("--motion", type=Path, help="motion-stream checkpoint (checkpoint.pth.tar)")
    parser.add_argument(
        "--clip", type=Path, help="clip-stream (3D network) checkpoint: an optional third stream"
    )
    parser.add_argument(
        "--flow-clip", type=Path, help="flow-clip-stream (3D network on flow) checkpoint"
    )
    parser.add_argument("--top", type=int, default=TOP, help="how many classes to list per stream")
    add_fusion_arguments(parser)
    add_threshold_argument(parser)
    parser.add_argument(
        "--window",
        type=float,
        default=WINDOW,
        help="score the video in windows of this many seconds (0: one window, the whole video)",
    )
    parser.add_argument(
        "--stride", type=float, default=STRIDE, help="seconds from one window's start to the next"
    )
    parser.add_argument(
        "--allow-truncated",
        action="store_true",
        help="score a video that decodes to fewer frames than its container declares (cut short "
        "or damaged) on the frames it has, with a warning; refused otherwise",
    )
    add_extraction_arguments(parser)
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")


def check_video_arguments(args) -> None:
    """Refuse what add_video_arguments' options cannot mean; --window 0 becomes None (one)."""
    check_streams_given(args)
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    check_threshold(args.threshold)
    if args.window is not None and args.window < 0 or args.stride <= 0:
        raise UserError("--window and --stride must be positive seconds (--window 0: none)")
    args.window = args.window or None


def video_options(args) -> VideoOptions:
    """The typed options predict_one takes, from the checked command line."""
    given = {f.name: getattr(args, f.name) for f in fields(VideoOptions)}
    weights = given["weights"]
    return VideoOptions(**{**given, "weights": tuple(weights) if weights else None})
