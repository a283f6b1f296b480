"""CPU seconds per frame pair of the extraction workers: N workers on N cores against one.

    python bench/extraction_cpu_bench.py [--method torch] [--preset fast] [--clips 4]
                                         [--frames 9] [--size 340x256] [--workers N]

Runs extraction/pool.py's workers (decode, TV-L1 on the CPU, JPEG writing) on
synthetic clips, in these configurations: one worker with one thread, one worker with a thread
per core, N workers with cores/N threads each (what tools/extract_frames_flow.py does), and N
workers with a thread per core each (the torch workers before they were limited). CPU time is
this process's and its children's (user + system); the figure is the marginal cost of a pair,
(CPU of 2K clips - CPU of K clips) / (pairs of K clips), so the workers' start (imports) is not
counted. Wall-clock pairs/s is printed too; on a busy machine only the CPU figures mean much.
"""

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flow_bench import synthetic_frames
from extraction.decode import write_video
from extraction.pool import Plan, run, worker_threads
from extraction.settings import FLOW_METHODS, PRESETS, ExtractionSettings
from utils.cli import Parser
from utils.cores import usable_cores
from utils.errors import UserError, run_cli


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(clips, settings, plan, scratch: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of extracting ``clips`` with ``plan`` into a fresh root."""
    root = Path(tempfile.mkdtemp(dir=scratch))
    todo = [(path.stem, path) for path in clips]
    failed = []

    def on_event(kind, name, value):
        if kind == "failed":
            failed.append(f"{name}: {value}")

    cpu, wall = _cpu(), time.perf_counter()
    run(todo, root, settings, plan, on_event)
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    if failed:
        raise RuntimeError(f"extraction failed: {failed}")
    return cpu, wall


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=FLOW_METHODS, default="torch")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    parser.add_argument("--clips", type=int, default=4, help="K: clips of the smaller run")
    parser.add_argument("--frames", type=int, default=9, help="frames per clip")
    parser.add_argument("--size", default="340x256", help="frame size WxH")
    parser.add_argument("--workers", type=int, default=usable_cores(), help="N (default: cores)")
    args = parser.parse_args(argv)
    try:
        args.width, args.height = (int(x) for x in args.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {args.size!r} must be WxH, e.g. 340x256") from None
    for name in ("clips", "frames", "workers"):
        if getattr(args, name) < (2 if name == "frames" else 1):
            raise UserError(f"--{name} is too small: {getattr(args, name)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cores = usable_cores()
    settings = ExtractionSettings(
        short_side=0, preset=args.preset, method=args.method, jpeg_quality=90
    )
    n = args.workers
    configs = [
        ("1 worker, 1 thread", Plan(workers=1, threads=1)),
        (f"1 worker, {cores} threads", Plan(workers=1, threads=cores)),
        (
            f"{n} workers, {worker_threads(n, args.method, cores)} thread(s) each (the tool)",
            Plan(n, threads=worker_threads(n, args.method, cores)),
        ),
        (f"{n} workers, {cores} threads each (unlimited)", Plan(n, threads=cores)),
    ]
    pairs = args.clips * (args.frames - 1)
    print(
        f"{args.method} {args.preset}, {args.width}x{args.height}, {args.clips} and "
        f"{2 * args.clips} clips of {args.frames} frames, {cores} cores: marginal CPU s/pair"
    )
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        clips = []
        for i in range(2 * args.clips):
            frames, _ = synthetic_frames(args.frames, args.width, args.height, seed=i)
            clips.append(write_video(scratch / "clips" / f"clip{i}.avi", frames))
        for label, plan in configs:
            small = _measure(clips[: args.clips], settings, plan, scratch)
            large = _measure(clips, settings, plan, scratch)
            per_pair = (large[0] - small[0]) / pairs
            print(
                f"  {label:45s} {per_pair:6.3f} CPU s/pair   "
                f"{2 * pairs / large[1]:6.2f} pairs/s wall ({2 * args.clips} clips)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
