"""Both streams on a live source: each window's top classes per stream and fused, as it happens.

    python tools/live.py 0 --spatial record/spatial/checkpoint.pth.tar \\
        --motion record/motion/checkpoint.pth.tar [--show] [--out annotated.mp4]
    python tools/live.py rtsp://camera/stream --spatial ... --motion ... > windows.jsonl
    python tools/live.py clip.avi --realtime --spatial ... --motion ... --threshold 0.5

The source is a camera index, a stream URL or a video file (--realtime: played at its own frame
rate, as a camera would deliver it; without, read as fast as it is scored). Frames and flow are
computed as frames arrive, with the settings the checkpoints' training frames were extracted
with (as tools/predict.py computes them), and every --stride seconds the last --window seconds
are scored as the streams' test protocol scores a video (engine/live.py). It never lags: frames
wait in a bounded queue (--queue seconds) and are dropped, counted, when scoring falls behind.

Out: one JSON line per window on stdout (for other programs); --out a video with each frame
labelled (written whole at the end, Ctrl-C included); --show a window on screen (OpenCV with a
GUI). Every --stats-every seconds and at the end, stderr has the frames per second, windows per
second, frames dropped and the latency from a window's last frame to its label. Ctrl-C (or q in
the --show window) ends it with the outputs complete; a second Ctrl-C stops at once, without --out.
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import add_fusion_arguments
from engine.stream_setup import (
    STREAM_OPTIONS,
    add_extraction_arguments,
    add_threshold_argument,
    check_streams_given,
    check_threshold,
    load_streams,
)
from utils.cli import Parser
from utils.cores import usable_cores
from utils.errors import UserError, run_cli
from utils.faults import fault_point
from utils.outputs import locked_outputs

WINDOW, STRIDE = 2.0, 1.0  # seconds: a label a second, about real time on a laptop's CPU


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="a camera index (0), a stream URL or a video file")
    for name in STREAM_OPTIONS:
        option = "--" + name.replace("_", "-")
        parser.add_argument(option, type=Path, help=f"{name}-stream checkpoint")
    parser.add_argument("--realtime", action="store_true",
                        help="play a video file at its own frame rate, as a live source")  # fmt: skip
    parser.add_argument("--window", type=float, default=WINDOW, help="seconds a window scores")
    parser.add_argument("--stride", type=float, default=STRIDE, help="seconds between windows")
    parser.add_argument("--top", type=int, default=3, help="classes listed per stream")
    add_fusion_arguments(parser)
    add_threshold_argument(parser)
    parser.add_argument("--out", type=Path, help="write the labelled video here (.mp4 .mkv .avi)")
    parser.add_argument("--show", action="store_true", help="show the labelled frames on screen")
    parser.add_argument("--queue", type=float, default=1.0,
                        help="seconds of frames waiting to be scored before new ones are dropped")  # fmt: skip
    parser.add_argument("--stats-every", type=float, default=5.0,
                        help="seconds between the lines of frames, windows, drops and latency")  # fmt: skip
    add_extraction_arguments(parser)
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=usable_cores(),
        help="torch and OpenCV threads, set at start (default: the cores this process may use; "
        "1 on a machine busy with other work, where several threads wait for each other)",
    )
    return parser.parse_args(argv)


def check_gui() -> None:
    """--show needs OpenCV built with a GUI and a display to open it on."""

    import cv2

    gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if gui is None or gui.group(1).upper() == "NONE":
        raise UserError(
            "--show: this OpenCV has no GUI (the headless build requirements.txt installs): "
            "pip uninstall opencv-contrib-python-headless && pip install opencv-contrib-python, "
            "or leave --show out and watch --out"
        )
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise UserError(
            "--show: no display (DISPLAY is not set); run it on a desktop, or use --out"
        )


def check_args(args) -> None:
    from utils.annotated import FORMATS

    check_streams_given(args)
    if args.window <= 0 or args.stride <= 0 or args.queue <= 0 or args.top < 1:
        raise UserError("--window, --stride and --queue must be positive, --top at least 1")
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    check_threshold(args.threshold)
    if args.out is not None and args.out.suffix.lower() not in FORMATS:
        raise UserError(f"--out {args.out}: give a {' '.join(FORMATS)} file")
    if args.show:
        check_gui()


@contextmanager
def sigint_stops(stop: threading.Event):
    """The first Ctrl-C sets ``stop`` (outputs are finished); the next one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum, frame):
        print("stopping (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
        stop.set()
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def window_record(done, streams: dict, args) -> dict:
    """A window's JSON line: its times, label, latency and each column's top classes."""
    import numpy as np

    from engine.inference import columns
    from utils.unknown import label

    probs = columns(streams, done.scores, args.weights, args.softmax)
    classes = next(iter(streams.values())).classes
    top = min(args.top, len(classes))
    return {
        "window": done.index,
        "start": round(done.start, 3),
        "end": round(done.end, 3),
        "label": label(list(probs.values())[-1], classes, args.threshold),
        "latency": round(done.scored - done.arrived, 3),
        "top": {
            name: [[classes[i], round(float(p[i]), 4)] for i in np.argsort(-p, kind="stable")[:top]]
            for name, p in probs.items()
        },
    }


def shown_lines(record: dict) -> list[str]:
    """What a frame shows: the label (and its probability), then each stream's top class."""
    *streams, last = record["top"].items()
    (best, prob) = last[1][0]
    head = f"{best} {100 * prob:.0f}%"
    lines = [head if record["label"] == best else f"unknown ({head})"]
    if streams:
        lines.append("  ".join(f"{n}: {t[0][0]} {100 * t[0][1]:.0f}%" for n, t in streams))
    return lines


def main(argv=None) -> dict:
    args = get_args(argv)  # before torch is imported: --help and typos answer at once
    check_args(args)
    with locked_outputs({args.out: "--out"}):
        return _run(args)


def _run(args) -> dict:
    import cv2
    import torch

    from engine.capture import Capture
    from engine.device import resolve_device
    from engine.live import LiveScorer, LiveStats
    from utils.annotated import AnnotatedVideo

    # Set, not left to the libraries' defaults: measured here, the same count set explicitly
    # kept up where the defaults dropped 10 % of the frames (bench/live_bench.py).
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = resolve_device(args.device)
    streams, settings = load_streams(args, device, STREAM_OPTIONS, file=sys.stderr)
    capture = Capture(args.source, args.realtime, args.queue)
    scorer = LiveScorer(streams, settings, capture.fps, args.window, args.stride, device)
    print(f"{args.source}: {capture.fps:.2f} fps; windows of {scorer.size} frames every "
          f"{scorer.step}", file=sys.stderr)  # fmt: skip
    stats = LiveStats()
    try:
        with ExitStack() as stack:
            video = None
            if args.out is not None:
                video = stack.enter_context(AnnotatedVideo(args.out, capture.fps))
            stack.enter_context(sigint_stops(capture.stop))
            capture.start()
            _loop(args, capture, scorer, streams, stats, video)
    finally:
        capture.close()
    if capture.error:
        print(f"warning: {capture.error}", file=sys.stderr)
    print(f"end: {stats.line(capture.read, capture.dropped)}", file=sys.stderr)
    if args.out is not None:
        print(f"wrote {args.out}", file=sys.stderr)
    return stats.summary(capture.read, capture.dropped)


def _loop(args, capture, scorer, streams: dict, stats, video) -> None:
    """Score the frames as they come; print, draw and show each window's result."""
    from utils.annotated import WAITING

    lines, shown_at = [WAITING], time.monotonic()
    for frame in capture.frames():
        done = scorer.add(frame.rgb, frame.seconds, frame.arrived)
        stats.frames += 1
        if video is not None:
            video.add(frame.index, frame.seconds, frame.rgb)
        if done is not None:
            stats.window(done)
            record = window_record(done, streams, args)
            print(json.dumps(record), flush=True)
            lines = shown_lines(record)
            if video is not None:
                video.label((done.start + done.end + args.stride) / 2, lines)
            fault_point("live.window")
        if args.show and _show(frame.rgb, lines):
            capture.stop.set()
        if time.monotonic() - shown_at >= args.stats_every:
            shown_at = time.monotonic()
            print(stats.line(capture.read, capture.dropped), file=sys.stderr, flush=True)


def _show(rgb, lines: list[str]) -> bool:
    """Show the frame with the latest label; whether q was pressed."""
    import cv2

    from utils.annotated import draw_lines

    cv2.imshow("two-stream live", cv2.cvtColor(draw_lines(rgb, lines), cv2.COLOR_RGB2BGR))
    return cv2.waitKey(1) & 0xFF == ord("q")


if __name__ == "__main__":
    run_cli(main)
