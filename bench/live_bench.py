"""Does tools/live.py keep up on a CPU? Real UCF101 clips played as a live source at their rate.

    python bench/live_bench.py [--seconds 30] [--arch mobilenet_v2] [--short-side 128]
                               [--crop-size 112] [--preset fast] [--window 2] [--stride 1]
                               [--threads N] [--keep DIR]

Joins UCF101 clips from ../shared/data/ucf101 (sorted by name, one per class in turn) into one
320x240 video of about ``--seconds`` at 25 frames a second, writes untrained spatial and motion
checkpoints of ``--arch`` (frames at ``--short-side``, crops of ``--crop-size``, TV-L1
``--preset``: untrained weights cost what trained ones do) and plays the video to tools/live.py
with --realtime and live's default window, stride and queue. Prints the latency percentiles (from
the capture of a window's last frame to its label), windows per second, the fraction of frames
dropped, and the machine's load (a shared machine's figure is slower than a quiet one's). Threads:
live's default, one torch and OpenCV thread per core; on cores busy with other work, --threads 1
(several threads then wait for each other, many times slower).
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.predict_bench import write_checkpoint
from utils.cores import usable_cores

REPO = Path(__file__).resolve().parents[1]
UCF = REPO.parent / "shared" / "data" / "ucf101" / "UCF-101"
FPS = 25


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the joined video")
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--crop-size", type=int, default=112)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--window", type=float, help="live's --window (default: live's)")
    parser.add_argument("--stride", type=float, help="live's --stride (default: live's)")
    parser.add_argument(
        "--threads", type=int, help="live's --threads (default: live's, the cores it may use)"
    )
    parser.add_argument("--keep", type=Path, help="write the video and checkpoints here")
    return parser.parse_args(argv)


def joined_clips(out: Path, seconds: float) -> tuple[Path, list[str]]:
    """UCF101 clips, a class at a time, joined into one video of about ``seconds``."""
    from extraction.decode import decode_video, write_video

    by_class = {d.name: sorted(d.glob("*.avi")) for d in sorted(UCF.iterdir()) if d.is_dir()}
    order = [c for k in range(max(map(len, by_class.values()))) for c in
             (v[k] for v in by_class.values() if k < len(v))]  # fmt: skip
    frames, names = [], []
    while sum(len(f) for f in frames) < seconds * FPS and order:
        clip = order.pop(0)
        frames.append(decode_video(clip, None).frames)
        names.append(clip.stem)
    video = np.concatenate(frames)[: round(seconds * FPS)]
    return write_video(out, video, fps=FPS), names


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not UCF.is_dir():
        sys.exit(f"no UCF101 clips at {UCF} (see ../shared/data/README.md)")
    from tools import live

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        video, names = joined_clips(folder / "joined.avi", args.seconds)
        extraction = dict(short_side=args.short_side, bound=20.0, preset=args.preset)
        paths = {
            s: write_checkpoint(folder / f"{s}.pth.tar", s, args.arch, extraction, args.crop_size)
            for s in ("spatial", "motion")
        }
        argv = [str(video), "--realtime", "--device", "cpu", "--stats-every", "1e9"]
        argv += [x for s, p in paths.items() for x in (f"--{s}", str(p))]
        for option in ("window", "stride", "threads"):
            if getattr(args, option) is not None:
                argv += [f"--{option}", str(getattr(args, option))]
        with contextlib.redirect_stdout(io.StringIO()):  # the windows' JSON lines
            summary = live.main(argv)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    window = args.window or live.WINDOW
    stride = args.stride or live.STRIDE
    print(
        f"{len(names)} UCF101 clips joined ({summary['frames']} frames, 320x240, {FPS} fps); "
        f"{args.arch} spatial + motion at short side {args.short_side}, crop {args.crop_size}, "
        f"TV-L1 {args.preset}; windows of {window:g} s every {stride:g} s; "
        f"{args.threads or usable_cores()} threads; {os.cpu_count()} cores, load {load}"
    )
    print(
        f"latency (last frame's capture to label) median {summary['latency_p50']:.2f} s, "
        f"95% {summary['latency_p95']:.2f} s, max {summary['latency_max']:.2f} s; "
        f"{summary['windows_per_second']:.2f} windows/s; {summary['dropped']} of "
        f"{summary['frames']} frames dropped ({100 * summary['dropped_fraction']:.1f}%)"
    )
    return summary


if __name__ == "__main__":
    main()
