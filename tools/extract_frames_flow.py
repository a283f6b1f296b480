"""Extract RGB frames and TV-L1 optical flow from raw videos into the layout the data layer reads.

    python tools/extract_frames_flow.py --videos UCF-101 --out data/ucf101 [--workers 8]

Every video under --videos (any depth; .avi .mp4 .mkv .webm) becomes

    ROOT/jpegs_256/<video>/frame000001.jpg ...        N RGB frames, short side --short-side
    ROOT/tvl1_flow/u/<video>/frame000001.jpg ...      N-1 x-flow frames (gray, 128 = no motion)
    ROOT/tvl1_flow/v/<video>/frame000001.jpg ...      N-1 y-flow frames

where <video> is the file name without extension and flow file i is the motion from frame i to
frame i+1 (see dataloader/extraction.py). ROOT/index.json lists each finished video's frame
count, fps and size; ROOT/failed.txt the videos that could not be decoded.

CPU workers (--workers) decode the videos and write the JPEGs; on the CPU each also solves its
own flow, and each CUDA device of --device gets one solver process that batches the pairs the
workers send it (dataloader/extraction_pool.py). A video is written under the run's own
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
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloader.extraction_locks import RootLocks, RunFolder, clear_dead_runs, state_lock
from dataloader.extraction_pool import OutOfSpace, Plan, run, worker_threads
from dataloader.extraction_root import (
    STATE_DIR,
    TMP_DIR,
    check_settings,
    check_video_name,
    clear_stale_files,
    is_done,
    read_root_settings,
    shard_of,
    split_video_name,
    unsafe_name,
    write_index,
)
from dataloader.extraction_settings import FLOW_METHODS, INDEX_NAME, PRESETS, ExtractionSettings
from dataloader.splits import SPLIT_FOLDERS, write_custom_split
from utils.atomic import DiskFull, write_text
from utils.cli import Parser
from utils.errors import UserError, run_cli
from utils.video_names import VIDEO_EXTENSIONS

FAILED_NAME = "failed.txt"
DEFAULTS = ExtractionSettings()
# Pairs per TV-L1 solve. CPU: 1 (bench/flow_bench.py, one thread: 1.34 pairs/s at batch 1, 0.80
# at 8). CUDA: 32 is a guess, unmeasured (no GPU was at hand; bench/gpu_check.py measures
# batches 1-64 on one); about 23 MB of GPU memory a pair at 340x256.
FLOW_BATCH = {"cpu": 1, "cuda": 32}


def _collect(videos_dir: Path) -> dict[str, Path]:
    """Video name (file name without extension) -> path; names must be safe folder names and
    unique, since they name the folders (refused before anything is written)."""
    if not videos_dir.is_dir():
        raise UserError(
            f"--videos {videos_dir} is not a folder; give the folder holding the videos"
        )
    files = sorted(  # as dataloader.extraction.find_videos, and files named only ".avi"
        p
        for p in videos_dir.rglob("*")
        if p.name.lower().endswith(VIDEO_EXTENSIONS) and p.is_file()
    )
    names = {split_video_name(path.name)[0] for path in files}
    bad = [path for path in files if unsafe_name(split_video_name(path.name)[0]) is not None]
    if bad:
        more = f"; {len(bad) - 1} more files have such names" if len(bad) > 1 else ""
        try:
            check_video_name(bad[0].name, names, shown=str(bad[0]))
        except UserError as err:
            raise UserError(f"{err}{more}") from None
    by_name: dict[str, Path] = {}
    for path in files:
        name = split_video_name(path.name)[0]
        if name in by_name:
            raise UserError(
                f"two videos are named {name!r} ({by_name[name]} and {path}); "
                "output folders are named by file name, so rename one"
            )
        by_name[name] = path
    if not by_name:
        raise UserError(
            f"no videos (.avi .mp4 .mkv .webm) found under --videos {videos_dir}; check the path"
        )
    return by_name


def _write_split(videos_dir: Path, videos: dict[str, Path], root: Path, fraction: float) -> None:
    """A custom split of the extracted videos by their class folder (the first folder under
    --videos); videos not extracted (failed, or another shard's) are left out."""
    out = root / SPLIT_FOLDERS["custom"]
    by_class: dict[str, list[str]] = {}
    left_out = 0
    for name, path in videos.items():
        if not is_done(root, name):
            left_out += 1
            continue
        parts = path.relative_to(videos_dir).parts
        if len(parts) < 2:
            raise UserError(
                f"{path} is not in a class folder; --test-fraction needs --videos laid out as "
                "<class>/<video>"
            )
        by_class.setdefault(parts[0], []).append(name)
    counts = write_custom_split(by_class, out, fraction)
    missing = f"; {left_out} videos not extracted are left out" if left_out else ""
    print(
        f"wrote {out}/classes.txt, train.txt, test.txt: {len(by_class)} classes, "
        f"{counts['train']} training and {counts['test']} test videos{missing}"
    )


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
        sources = {n: str(p.relative_to(videos_dir)) for n, p in _collect(videos_dir).items()}
    state = root / STATE_DIR
    with RootLocks(root, state, None), state_lock(state):
        clear_stale_files(root, root / SPLIT_FOLDERS["custom"])
        clear_dead_runs(state / TMP_DIR)
        listed = _full_disk_said(lambda: write_index(root, settings, sources), root)
    print(f"wrote {root / INDEX_NAME} ({listed} videos)")
    return listed


def _full_disk_said(write, root: Path):
    """``write()``; a full disk there is one line that says what is kept and how to go on."""
    try:
        return write()
    except DiskFull as err:
        raise UserError(
            f"{err}; the finished videos are kept in {root}: free some space and run the same "
            "command again to continue"
        ) from err


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
        default=len(os.sched_getaffinity(0)),
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
    """Processes for this run: see dataloader/extraction_pool.py."""
    on_gpu = args.devices[0] != "cpu"
    solver_process = args.flow_solver == "process" or (args.flow_solver == "auto" and on_gpu)
    workers = min(args.workers, max(1, todo))
    return Plan(
        workers=workers,
        devices=args.devices if solver_process else [],
        device=args.devices[0],
        batch=args.flow_batch,
        threads=worker_threads(workers, args.method),
    )


class _Tally:
    """Progress of a run, in frames: the bar's total is the frames the containers of the
    started videos declare plus, for each video not started, their mean."""

    def __init__(self, bar, videos: int):
        self.bar, self.videos = bar, videos
        self.started, self.declared, self.frames = 0, 0, 0
        self.finished, self.failed = 0, {}
        self.start = time.perf_counter()

    def __call__(self, kind, name, value):
        if kind == "start":
            self.started += 1
        elif kind == "expect":
            self.declared += value
        elif kind == "frames":
            self.frames += value
            self.bar.update(value)
        elif kind == "done":
            self.finished += 1
        elif kind == "failed":
            self.failed[name] = value
        if kind in ("expect", "done", "failed"):
            mean = self.declared / max(1, self.started)
            self.bar.total = max(
                self.frames, round(self.declared + mean * (self.videos - self.started))
            )
            ended = self.finished + len(self.failed)
            self.bar.set_postfix_str(f"videos {ended}/{self.videos}, {len(self.failed)} failed")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.index_only:
        _rebuild_index(args.out, args.videos)
        return 0
    settings = ExtractionSettings(
        args.short_side, args.bound, args.preset, args.max_frames, args.jpeg_quality, args.method
    )
    videos = _collect(args.videos)  # unsafe or clashing names: refused before any write
    root = args.out
    root.mkdir(parents=True, exist_ok=True)
    state = root / STATE_DIR
    with RootLocks(root, state, args.shard):  # a second run (of this shard) is refused here
        with state_lock(state):
            check_settings(root, settings)
            clear_stale_files(root, root / SPLIT_FOLDERS["custom"])
        clear_dead_runs(state / TMP_DIR)  # those of killed runs; never a live shard's
        with RunFolder(state / TMP_DIR) as run_folder:
            return _extract(args, settings, videos, root, run_folder)


def _extract(args, settings, videos: dict[str, Path], root: Path, run_folder) -> int:
    """The run proper, holding the locks: extract, then the shared files, then the summary."""
    sources = {name: str(path.relative_to(args.videos)) for name, path in videos.items()}
    mine = videos
    if args.shard is not None:
        index, count = args.shard
        mine = {name: path for name, path in videos.items() if shard_of(name, count) == index}
    todo = [(name, path) for name, path in mine.items() if not is_done(root, name)]
    todo.sort(key=lambda item: -item[1].stat().st_size)  # longest first: no straggler at the end
    skipped = len(mine) - len(todo)
    plan = _plan(args, len(todo))
    part = f" (shard {index}/{count}: {len(mine)} of them)" if args.shard else ""
    doing = (
        f"{len(todo)} to extract with {plan.workers} worker(s)" if todo else "nothing to extract"
    )
    if todo and plan.devices:
        doing += f" and {len(plan.devices)} solver process(es) on {','.join(plan.devices)}"
    print(
        f"{len(videos)} videos under {args.videos}{part}: {skipped} already done, {doing}, "
        f"preset {args.preset}",
        flush=True,
    )

    from utils.progress import progress

    interrupted = False
    with progress(total=0, unit="frame", leave=True) as bar:
        tally = _Tally(bar, len(todo))
        try:
            run(todo, root, settings, plan, tally, args.debug, run_folder)
        except KeyboardInterrupt:
            if args.debug:
                raise
            interrupted = True
        except OutOfSpace as err:
            _disk_full(err, settings, root, mine, sources)
    elapsed = time.perf_counter() - tally.start
    failed, frames = tally.failed, tally.frames

    failed_path = root / FAILED_NAME
    if args.shard is not None:  # shards must not remove each other's list
        failed_path = root / f"failed-{index}-of-{count}.txt"

    def write_shared() -> int:
        """index.json, the split and this run's failure list, one run at a time: a shard's
        index lists the videos of every shard finished so far."""
        with state_lock(root / STATE_DIR):
            listed = write_index(root, settings, sources)
            if args.test_fraction is not None:
                _write_split(args.videos, videos, root, args.test_fraction)
            if failed:
                lines = "".join(f"{sources[n]}\t{failed[n]}\n" for n in sorted(failed))
                write_text(failed_path, lines)
            elif failed_path.exists() and not interrupted:
                failed_path.unlink()  # from an earlier run whose failures are now fixed or gone
        return listed

    listed = _full_disk_said(write_shared, root)
    done = sum(is_done(root, name) for name, _ in todo)
    truncated = sum("truncated:" in message for message in failed.values())
    print(
        f"extracted {done} videos in {elapsed:.1f} s ({frames / max(elapsed, 1e-9):.1f} "
        f"frames/s decoded); skipped {skipped} already done; {len(failed)} failed"
        + (f" ({truncated} truncated)" if truncated else "")
    )
    for name in sorted(failed):
        print(f"  failed: {sources[name]}: {failed[name]}")
    if failed:
        print(f"failed videos are listed in {failed_path}")
    print(f"wrote {root / INDEX_NAME} ({listed} videos)")
    if interrupted:
        left = len(todo) - done - len(failed)
        print(
            f"interrupted: {left} videos not extracted (nothing of them is left in {root}); "
            "run the same command again to continue: finished videos are skipped"
        )
        return 130
    return 1 if failed else 0


def _disk_full(err: OutOfSpace, settings, root: Path, mine, sources) -> None:
    """A full disk: index.json for the finished videos if it still fits, then one line."""
    try:
        with state_lock(root / STATE_DIR):
            write_index(root, settings, sources)
    except (OSError, UserError):
        pass  # no room for it either: the next run writes it
    kept = sum(is_done(root, name) for name in mine)
    what = err.path or "its files"
    raise UserError(
        f"the disk is full: could not write {what} of {sources.get(err.name, err.name)}; the "
        f"videos finished so far ({kept}) are kept in {root}: free some space and run the same "
        "command again to continue (finished videos are skipped)"
    ) from None


if __name__ == "__main__":
    sys.exit(run_cli(main))
