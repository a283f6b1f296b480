"""Peak memory and speed of tools/predict.py on long videos: memory must not grow with length.

    python bench/predict_bench.py [--minutes 10] [--hd-minutes 1] [--short-side 128]
                                  [--crop-size 112] [--arch resnet18] [--preset fast]
                                  [--threads 1] [--gif] [--keep DIR]

Writes, with PyAV, a ``--minutes`` long 320x240 video and a ``--hd-minutes`` long 1280x720 one
(25 frames a second, a low-entropy pattern: a gradient with a square moving over it), and
untrained checkpoints of ``--streams`` (``--arch``, 16 classes, frames extracted at
``--short-side`` with the ``--preset`` TV-L1 preset), then runs predict with them on each video
in a subprocess of its own and prints its peak RSS (the child's ru_maxrss), wall seconds, and
each stream's CPU seconds per minute of video (predict's own accounting: sampling, JPEG round
trip, flow and network per stream; decoding apart) with ``--threads`` torch and OpenCV threads:
with 1, a per-core figure that a busy machine hardly distorts (wall seconds are printed too).
``--gif`` also times predict's GIF of the first video. Untrained weights cost what trained ones
do.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FPS = 25
CLASSES = [f"Action{i:02d}" for i in range(16)]


def write_pattern_video(path: Path, width: int, height: int, minutes: float) -> Path:
    """A gradient with a bright square moving across it, encoded frame by frame (MPEG-4)."""
    x = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 55, height, dtype=np.float32)[:, None, None]
    base = (x + y + np.array([0, 40, 80], np.float32)).astype(np.uint8)
    side = height // 4
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 2_000_000
        for i in range(round(minutes * 60 * FPS)):
            frame = base.copy()
            left = (7 * i) % (width - side)
            top = (height - side) // 2 + int((height // 4) * np.sin(i / 20))
            frame[top : top + side, left : left + side] = (250, 250, 250)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_checkpoint(path: Path, stream: str, arch: str, extraction: dict, crop: int) -> Path:
    """An untrained recognizer saved as the trainer saves a stream (its default options)."""
    import torch

    from engine.config import options_from_dict
    from engine.streams import STREAMS
    from network.recognizer import build_recognizer
    from utils.checkpoint import FORMAT

    spec = STREAMS[stream]
    options = options_from_dict(spec, {"arch": arch, "crop_size": crop})
    channels = spec.sample_builder(options).in_channels
    config = dict(arch=arch, num_classes=len(CLASSES), in_channels=channels, dropout=0.0)
    config.update(partial_bn=False, consensus="avg")
    model = build_recognizer(**config, statistics=spec.statistics)
    ckpt = dict(format=FORMAT, epoch=0, stream=stream, arch=arch, classes=CLASSES)
    ckpt.update(in_channels=channels, model_config=dict(model.config), args=options.as_dict())
    ckpt.update(model=model.state_dict(), extraction=extraction)
    torch.save(ckpt, path)
    return path


def child(argv: list[str], threads: int) -> None:
    """Run predict in this process, then print one JSON line: peak RSS, seconds, work."""
    import cv2
    import torch

    from tools import predict

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)

    start = time.perf_counter()
    result = predict.main(argv)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    wall = time.perf_counter() - start
    work, cpu = result["work_seconds"], result["work_cpu_seconds"]
    print(json.dumps(dict(rss_mib=peak, wall=wall, video=result["seconds"], work=work, cpu=cpu)))


def measure(label: str, argv: list[str], threads: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--threads", str(threads)]
    command += ["--", *argv]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        sys.exit(f"{label}: predict failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    minutes = figures["video"] / 60
    per_minute = ", ".join(
        f"{name} {cpu / minutes:.1f} s ({figures['video'] / max(cpu, 1e-9):.1f}x real time; "
        f"wall {figures['work'][name] / minutes:.1f} s)"
        for name, cpu in figures["cpu"].items()
    )
    print(
        f"{label}: {figures['video']:.0f} s of video, peak RSS {figures['rss_mib']:.0f} MiB, "
        f"{figures['wall']:.0f} s wall; CPU seconds per minute of video: {per_minute}",
        flush=True,
    )
    for line in lines[:-1]:
        if line.startswith("wrote") and ".gif" in line:
            print(f"  {line}")
    return figures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="320x240 video length")
    parser.add_argument("--hd-minutes", type=float, default=1.0, help="1280x720 video length")
    parser.add_argument("--short-side", type=int, default=128, help="extraction short side")
    parser.add_argument("--crop-size", type=int, default=112, help="network input size")
    parser.add_argument("--arch", default="resnet18", help="backbone of both streams")
    parser.add_argument("--preset", default="fast", help="TV-L1 preset the frames were made with")
    parser.add_argument(
        "--streams", nargs="+", default=["spatial", "motion"], help="streams to run predict with"
    )
    parser.add_argument("--gif", action="store_true", help="also time the GIF of the first")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and OpenCV threads (1: per-core figures)"
    )
    parser.add_argument("--keep", type=Path, help="keep videos and checkpoints here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.rest, args.threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="predict_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    extraction = dict(short_side=args.short_side, bound=20.0, preset=args.preset, jpeg_quality=95)
    checkpoints = []
    for stream in args.streams:
        path = write_checkpoint(
            work / f"{stream}.pth.tar", stream, args.arch, extraction, args.crop_size
        )
        checkpoints += [f"--{stream}", str(path)]
    videos = [("320x240", 320, 240, args.minutes), ("1280x720", 1280, 720, args.hd_minutes)]
    for index, (label, width, height, minutes) in enumerate(videos):
        if minutes <= 0:
            continue
        path = work / f"pattern_{label}_{minutes:g}min.avi"
        if not path.is_file():
            start = time.perf_counter()
            write_pattern_video(path, width, height, minutes)
            print(f"wrote {path} in {time.perf_counter() - start:.0f} s", flush=True)
        extra = ["--gif", str(work / f"{label}.gif")] if args.gif and index == 0 else []
        argv = [str(path), *checkpoints, "--device", "cpu", *extra]
        measure(f"{label}, {minutes:g} min", argv, args.threads)


if __name__ == "__main__":
    main()
