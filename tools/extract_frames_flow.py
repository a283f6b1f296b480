"""Extract RGB frames and TV-L1 optical flow from raw videos into the layout the data layer reads.

    python tools/extract_frames_flow.py --videos UCF-101 --out data/ucf101 [--workers 8]

Every video under --videos (any depth; .avi .mp4 .mkv .webm) becomes

    ROOT/jpegs_256/<video>/frame000001.jpg ...        N RGB frames, short side --short-side
    ROOT/tvl1_flow/u/<video>/frame000001.jpg ...      N-1 x-flow frames (gray, 128 = no motion)
    ROOT/tvl1_flow/v/<video>/frame000001.jpg ...      N-1 y-flow frames

where <video> is the file name without extension and flow file i is the motion from frame i to
frame i+1 (see extraction/tvl1.py). ROOT/index.json lists each finished video's frame
count, fps and size; ROOT/failed.txt the videos that could not be decoded.

With --pack each video becomes two files instead, the same JPEG bytes packed as
tools/pack_frames.py packs those folders (dataloader/packs.py; every stream reads them):

    ROOT/jpegs_256/<video>.zip                        the RGB frames, uncompressed
    ROOT/tvl1_flow/<video>.flow.zip                   x- and y-flow frames

A root holds folders or packs (index.json says which under "storage"); a rerun must agree.

CPU workers (--workers) decode the videos and write the JPEGs; on the CPU each also solves its
own flow, and each CUDA device of --device gets one solver process that batches the pairs the
workers send it (extraction/pool.py). A video is written under the run's own
folder ROOT/.extract/tmp/run-<host>-<pid>-<random>/ and moved into place only when whole and
counted; a marker in ROOT/.extract/done/ then records it. A killed or interrupted run (the first
Ctrl-C stops it within seconds; kill -9 ends its workers too) leaves no half video in the layout,
the next run over ROOT clears what it left, and a rerun skips the videos that have a marker. A
video that decodes to fewer frames than its container declares is reported as truncated, and
fails; so does one of fewer than 2 frames (no flow). Folders in the layout that this tool did
not write (say, a download in the same ROOT) are never replaced: such a video is reported as
failed. A file whose name is not a safe folder name (``..avi``, ``.avi``, a name starting with a
dot) is refused before anything is written, with a name to rename it to. A full disk stops the
run with one line; finished videos are kept, and the same command continues once there is space.

One run at a time writes ROOT (a second is refused at once, naming the running one), except
shards: several machines, one ROOT (a shared folder): machine I of N runs with ``--shard I/N``
and takes the videos whose name hashes to I (a stable hash of the name alone, so every machine
picks the same split whatever order it lists the files in); together they cover every video
once. Shards run side by side (two runs of one shard are refused); each lists its failures in
failed-I-of-N.txt and, at its end, rewrites ROOT/index.json (and the split) from every video
finished so far, one shard at a time, so the last to end lists them all. ``--out ROOT
--index-only`` rebuilds ROOT/index.json from the finished videos in the folder.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloader.splits import SPLIT_FOLDERS
from extraction.locks import RootLocks, RunFolder, clear_dead_runs, state_lock
from extraction.pool import Plan, worker_threads
from extraction.root import (
    STATE_DIR,
    TMP_DIR,
    check_settings,
    clear_stale_files,
    read_root_settings,
    write_index,
)
from extraction.run import Job, extract, find_named_videos, write_or_say_full
from extraction.settings import FLOW_METHODS, INDEX_NAME, PRESETS, ExtractionSettings
from utils.cli import Parser
from utils.cores import usable_cores
from utils.errors import UserError, run_cli

DEFAULTS = ExtractionSettings()
# Pairs per TV-L1 solve. CPU: 1 (bench/flow_bench.py, one thread: 1.34 pairs/s at batch 1, 0.80
# at 8). CUDA: 32 is a guess, unmeasured (no GPU was at hand; bench/gpu_check.py measures
# batches 1-64 on one); about 23 MB of GPU memory a pair at 340x256.
FLOW_BATCH = {"cpu": 1, "cuda": 32}


def _parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 1 <= I <= N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} must be I/N, e.g. 1/4 for the first of 4") from None
    if not 1 <= index <= count:
        raise UserError(f"--shard {text}: I must be in 1..N, e.g. 1/{max(count, 1)}")
    return index, count


def _rebuild_index(root: Path, videos_dir: Path | None) -> int:
    """--index-only: ROOT/index.json from the finished videos, with the settings they were made
    with; ``videos_dir`` (optional) adds each video's source path. Refused while a run (or a
    shard) writes ROOT."""
    settings = read_root_settings(root)
    if settings is None:
        raise UserError(f"{root} holds no extraction by this tool (no {STATE_DIR}/); check --out")
    sources = {}
    if videos_dir is not None:
        found = find_named_videos(videos_dir)
        sources = {n: str(p.relative_to(videos_dir)) for n, p in found.items()}
    state = root / STATE_DIR
    with RootLocks(root, state, None), state_lock(state):
        clear_stale_files(root, root / SPLIT_FOLDERS["custom"])
        clear_dead_runs(state / TMP_DIR)
        listed = write_or_say_full(lambda: write_index(root, settings, sources), root)
    print(f"wrote {root / INDEX_NAME} ({listed} videos)")
    return listed


def _add_flow_arguments(parser) -> None:
    """The TV-L1 options: preset, implementation, its devices, batch and solver."""
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=DEFAULTS.preset,
        help="TV-L1 settings: quality = OpenCV's defaults, the published flow's; fast = 10-20x "
        "faster, correlation ~0.94 with quality on real clips (bench/flow_bench.py); the preset "
        "is recorded in index.json and in checkpoints trained on it",
    )
    parser.add_argument(
        "--method",
        choices=FLOW_METHODS,
        default=DEFAULTS.method,
        help="TV-L1 implementation: OpenCV's (CPU), or the batched PyTorch one (same algorithm and "
        "parameters, correlation 0.999 with OpenCV's on real clips; any torch device)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device(s) of --method torch: cpu, cuda, or a list such as cuda:0,cuda:1; "
        "each CUDA device gets one solver process that the workers feed",
    )
    parser.add_argument(
        "--flow-batch",
        type=int,
        help="frame pairs solved together (GPU: pairs of several videos; memory grows with "
        "it, about 23 MB a pair at 340x256; default: 1 on the CPU, 32 on CUDA)",
    )
    parser.add_argument(
        "--flow-solver",
        choices=("auto", "workers", "process"),
        default="auto",
        help="who solves the flow: each worker its own pairs (auto on the CPU), or one solver "
        "process per --device fed by the workers (auto on CUDA)",
    )


def _check_args(args) -> None:
    """Read --shard and --device; refuse option values that cannot extract anything, naming
    the option; fill in the default --flow-batch of the device."""
    args.shard = _parse_shard(args.shard) if args.shard else None
    if args.videos is None and not args.index_only:
        raise UserError("give --videos, the folder of raw videos (or --index-only)")
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.short_side < 0:
        raise UserError(
            f"--short-side must be positive (or 0 to keep the size), got {args.short_side}"
        )
    if args.bound <= 0:
        raise UserError(f"--bound must be positive, got {args.bound}")
    if args.max_frames is not None and args.max_frames < 2:
        raise UserError(
            f"--max-frames must be at least 2 (flow needs a pair of frames), got {args.max_frames}"
        )
    if args.flow_batch is not None and args.flow_batch < 1:
        raise UserError(f"--flow-batch must be at least 1, got {args.flow_batch}")
    if args.method == "opencv" and args.device != "cpu":
        raise UserError("--device is for --method torch; OpenCV's TV-L1 runs on the CPU")
    args.devices = [d.strip() for d in args.device.split(",") if d.strip()]
    for device in args.devices:
        if device != "cpu" and device.split(":")[0] != "cuda":
            raise UserError(f"--device {device!r}: give cpu, cuda, cuda:N or a list cuda:0,cuda:1")
    if not args.devices or ("cpu" in args.devices and len(args.devices) > 1):
        raise UserError(f"--device {args.device!r}: give cpu, or one or more CUDA devices")
    on_gpu = args.devices[0] != "cpu"
    if args.flow_solver == "workers" and len(args.devices) > 1:
        raise UserError("--flow-solver workers solves on one --device; list one device")
    if args.flow_batch is None:
        args.flow_batch = FLOW_BATCH["cuda" if on_gpu else "cpu"]
    if args.test_fraction is not None and not 0 < args.test_fraction < 1:
        raise UserError(f"--test-fraction must be between 0 and 1, got {args.test_fraction}")
    if not 1 <= args.jpeg_quality <= 100:
        raise UserError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, help="folder of raw videos (searched at any depth)")
    parser.add_argument("--out", type=Path, required=True, help="output ROOT of the frame layout")
    parser.add_argument(
        "--workers",
        type=int,
        default=usable_cores(),
        help="CPU worker processes that decode videos and write JPEGs (and solve the flow on "
        "the CPU), one video each at a time, with CPU count / workers OpenCV threads and one "
        "torch thread each; 1 on the CPU runs in this process (default: CPU count)",
    )
    parser.add_argument(
        "--short-side",
        type=int,
        default=DEFAULTS.short_side,
        help="resize so the short side has this many pixels (aspect kept); 0 keeps the size",
    )
    parser.add_argument(
        "--bound",
        type=float,
        default=DEFAULTS.bound,
        help="flow is clipped to +-bound pixels before mapping to 0..255",
    )
    _add_flow_arguments(parser)
    parser.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULTS.max_frames,
        help="keep only the first N frames of each video (default: all)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=DEFAULTS.jpeg_quality,
        help="JPEG quality of RGB and flow frames",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        help="also write a custom split for a --videos tree laid out as <class>/<video>: "
        "<out>/splits/{classes,train,test}.txt, this fraction of each class's videos in test; "
        "UCF101-style groups (_gXX_) stay together, other videos are split file by file, "
        "deterministically (train with --dataset custom)",
    )
    parser.add_argument(
        "--pack",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="write each video as two packs (RGB; x and y flow), one file per modality, "
        "instead of three frame folders: millions fewer files (docs/data.md)",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="extract only shard I of N (1 <= I <= N; a stable hash of the video name), so N "
        "machines writing to one --out cover every video once",
    )
    parser.add_argument(
        "--index-only",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="extract nothing: rebuild ROOT/index.json from the finished videos in --out "
        "(after all shards are done); --videos, if given, adds their source paths",
    )
    args = parser.parse_args(argv)
    _check_args(args)
    return args


def _plan(args, todo: int) -> Plan:
    """Processes for this run: see extraction/pool.py."""
    on_gpu = args.devices[0] != "cpu"
    solver_process = args.flow_solver == "process" or (args.flow_solver == "auto" and on_gpu)
    workers = min(args.workers, max(1, todo))
    return Plan(
        workers=workers,
        devices=args.devices if solver_process else [],
        device=args.devices[0],
        batch=args.flow_batch,
        threads=worker_threads(workers, args.method),
        pack=args.pack,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.index_only:
        _rebuild_index(args.out, args.videos)
        return 0
    settings = ExtractionSettings(
        args.short_side, args.bound, args.preset, args.max_frames, args.jpeg_quality, args.method
    )
    videos = find_named_videos(args.videos)  # unsafe or clashing names: refused before any write
    root = args.out
    job = Job(args.videos, videos, root, settings, args.shard, args.test_fraction)
    root.mkdir(parents=True, exist_ok=True)
    state = root / STATE_DIR
    with RootLocks(root, state, args.shard):  # a second run (of this shard) is refused here
        with state_lock(state):
            check_settings(root, settings, args.pack)
            clear_stale_files(root, root / SPLIT_FOLDERS["custom"])
        clear_dead_runs(state / TMP_DIR)  # those of killed runs; never a live shard's
        with RunFolder(state / TMP_DIR) as run_folder:
            todo = job.todo()
            return extract(job, todo, _plan(args, len(todo)), run_folder, args.debug)


if __name__ == "__main__":
    sys.exit(run_cli(main))
