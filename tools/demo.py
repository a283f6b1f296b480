"""The whole toolkit on a tiny synthetic dataset, in a few minutes on a CPU: fusion beats both streams.

    python tools/demo.py [--out record/demo]

Runs, one after the other, the commands a user runs on UCF101 (each is printed first):

1. tools/synthetic_actions.py  writes 4 classes of short videos: a red or green ball moving up or
   down. A single frame shows the colour, the flow shows the direction, neither shows both.
2. tools/extract_frames_flow.py  RGB frames and TV-L1 flow, in the layout the streams read.
3. spatial_cnn.py, motion_cnn.py  train and evaluate each stream (ResNet-18 from scratch).
4. fusion.py  fuses their video scores: each stream is right about half the time, fused nearly
   always.
5. tools/predict.py  classifies one test video straight from its file and draws a GIF.

    python tools/demo.py --consensus lstm   (or gru)

also trains a spatial stream whose head is an LSTM (GRU) over the frames in time order: the
order of RGB frames shows the direction, so that one stream alone tells all four classes apart.

    python tools/demo.py --flow-clip

also trains the 3D flow stream (flow_clip_cnn.py: MC3-18 from scratch on clips of 4 flow frames)
and fuses it with the spatial stream: it tells the direction as the motion stream does.
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.atomic import write_json
from utils.cli import Parser
from utils.errors import UserError, run_cli
from utils.locks import LOCK_NAME, folder_lock

REPO = Path(__file__).resolve().parents[1]
# What the demo writes in --out; a rerun removes these and nothing else.
OUTPUTS = (
    "data",
    "frames",
    "record",
    "fusion.json",
    "prediction.gif",
    "prediction.json",
    "demo.json",
    "fusion_flow_clip.json",
)
# The temporal spatial stream: 4 ordered segments, a small RNN, a higher rate than the others.
TEMPORAL = dict(num_segments=4, rnn_hidden=128, lr=0.02)
# More training scenes with a temporal head: direction from RGB order generalises from 10 less well.
TEMPORAL_TRAIN_PER_CLASS = 20
# The 3D flow stream: an MC3-18 on clips of 4 flow frames, scaled to 32 pixels, a step per 4
# videos; with these, seeds 0-4 (2026-12-07) told the direction of all 24 test videos and fused
# with the spatial stream 100, 87.5, 100, 87.5, 83.3 %. At --lr 0.03 training spikes and the
# classifier learns a colour preference the spatial stream cannot outvote (fused 75 % seed 3).
FLOW_CLIP = dict(
    arch="mc3_18",
    clip_length=4,
    crop_size=32,
    clip_short_side=32,
    test_snippets=2,
    batch_size=4,
    lr=0.01,
    dropout=0,
)
FLOW_CLIP_EPOCHS = 8
# Epochs of each stream: 15 gave spatial 41.7-54.2 %, motion 50.0-54.2 %, fused 100, 91.7, 100,
# 95.8, 100, 79.2 % for seeds 0-5 (2026-12-07; seed 5 at 20 epochs 83.3 %, at 30 100 %), in half
# the time of 30; the temporal head's figures (docs/temporal.md) were measured at 30.
EPOCHS, TEMPORAL_EPOCHS = 15, 30


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--out", type=Path, default=Path("record/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the videos and the training")
    parser.add_argument(
        "--train-per-class",
        type=int,
        help=f"training videos per class (default: 10; {TEMPORAL_TRAIN_PER_CLASS} with --consensus)",
    )
    parser.add_argument("--test-per-class", type=int, default=6, help="test videos per class")
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"training epochs of each stream (default: {EPOCHS}; {TEMPORAL_EPOCHS} with --consensus; "
        f"the 3D flow stream's {FLOW_CLIP_EPOCHS})",
    )
    parser.add_argument("--crop-size", type=int, default=48, help="input size of the 2D streams")
    parser.add_argument("--arch", default="resnet18", help="ResNet of both streams")
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="extraction processes"
    )
    parser.add_argument(
        "--consensus",
        choices=("lstm", "gru"),
        help="also train a spatial stream with this recurrent head over ordered frames",
    )
    parser.add_argument(
        "--flow-clip",
        action="store_true",
        help="also train the 3D flow stream (flow_clip_cnn.py) and fuse it with the spatial one",
    )
    parser.add_argument("--device", default="cpu", help="torch device of training and prediction")
    args = parser.parse_args(argv)
    if args.train_per_class is None:
        args.train_per_class = TEMPORAL_TRAIN_PER_CLASS if args.consensus else 10
    args.flow_clip_epochs = args.epochs or FLOW_CLIP_EPOCHS
    if args.epochs is None:
        args.epochs = TEMPORAL_EPOCHS if args.consensus else EPOCHS
    return args


def top1(score_file: Path) -> float:
    """Video top-1 (%) of a stream's score file."""
    import numpy as np

    with np.load(score_file) as f:
        return float(100.0 * np.mean(f["scores"].argmax(1) == f["labels"]))


def run_step(title: str, script: str, args: list, timings: dict) -> None:
    """Run one of the toolkit's commands with this Python, its output going straight through.

    One math thread per process (unless OMP_NUM_THREADS says otherwise): on batches this small,
    several threads only wait for each other, and a busy core stalls them all (4x slower).
    """
    command = [sys.executable, script, *map(str, args)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    print(
        f"\n=== {title}\n$ OMP_NUM_THREADS={env['OMP_NUM_THREADS']} python {shlex.join(command[1:])}",
        flush=True,
    )
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env)
    timings[title] = time.perf_counter() - start
    if result.returncode != 0:
        raise UserError(
            f"demo step '{title}' failed with exit code {result.returncode}: "
            f"python {shlex.join(command[1:])} (its message is above)"
        )


def flags(**options) -> list[str]:
    """``flags(crop_size=48, no_partial_bn=True, size=(96, 72))`` -> ``--crop-size 48 ...``."""
    argv = []
    for key, value in options.items():
        argv.append("--" + key.replace("_", "-"))
        if isinstance(value, (tuple, list)):
            argv += [str(v) for v in value]
        elif value is not True:
            argv.append(str(value))
    return argv


def prepare_out(out: Path) -> None:
    """Start from an empty --out: remove what an earlier demo wrote there, refuse anything else.

    A rerun must not mix with old results (the extraction tool skips videos it already did).
    """
    if not out.exists():
        return
    others = sorted(p.name for p in out.iterdir() if p.name not in (*OUTPUTS, LOCK_NAME))
    if others:
        raise UserError(
            f"--out {out} holds files the demo did not write ({', '.join(others[:3])}); "
            "give an empty or new folder"
        )
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def make_data(args, data: Path, frames: Path, size: tuple[int, int], timings: dict) -> None:
    """Steps 1-2: the synthetic videos, then their frames and flow."""
    width, height = size
    run_step(
        "generate videos",
        "tools/synthetic_actions.py",
        flags(
            out=data,
            seed=args.seed,
            size=(width, height),
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
        ),
        timings,
    )
    run_step(
        "extract frames and flow",
        "tools/extract_frames_flow.py",
        flags(
            videos=data / "videos",
            out=frames,
            short_side=height,
            preset="fast",
            workers=args.workers,
        ),
        timings,
    )


def train_streams(args, data: Path, frames: Path, record: Path, timings: dict) -> str:
    """Steps 3-4 (and the temporal head's): each stream trained and evaluated from scratch;
    the temporal run's record name."""
    # From scratch and on a tiny dataset: no partial BN (that is for pretrained weights), little
    # dropout, a cosine schedule, one snippet per video per step, few test frames.
    training = dict(
        data_root=frames,
        splits_dir=data / "splits",
        arch=args.arch,
        pretrained="none",
        no_partial_bn=True,
        dropout=0.2,
        epochs=args.epochs,
        batch_size=8,
        accum_steps=1,  # a step per batch: the tiny dataset has few batches
        lr=0.003,
        lr_schedule="cosine",
        crop_size=args.crop_size,
        num_segments=1,
        test_snippets=5,
        workers=0,
        device=args.device,
        seed=args.seed,
    )
    for stream in ("spatial", "motion"):
        run_step(
            f"train and evaluate the {stream} stream",
            f"{stream}_cnn.py",
            flags(**training, record_dir=record / stream),
            timings,
        )
    temporal = f"spatial_{args.consensus}"
    if args.consensus:
        run_step(
            f"train and evaluate the spatial stream with an {args.consensus} head",
            "spatial_cnn.py",
            flags(**(training | TEMPORAL), consensus=args.consensus, record_dir=record / temporal),
            timings,
        )
    if args.flow_clip:
        run_step(
            "train and evaluate the 3D flow stream",
            "flow_clip_cnn.py",
            flags(
                **training
                | FLOW_CLIP
                | dict(epochs=args.flow_clip_epochs, record_dir=record / "flow_clip")
            ),
            timings,
        )
    return temporal


def print_summary(args, summary: dict, temporal: str, clip: Path, gif: Path, out: Path) -> None:
    """The steps' times, the accuracy table and the prediction, as the README shows them."""
    timings, total, accuracy = summary["seconds"], summary["total"], summary["accuracy"]
    predicted = summary["prediction"]
    print("\n=== summary")
    for title, seconds in timings.items():
        print(f"{seconds:7.1f} s  {title}")
    print(f"{total:7.1f} s  in all")
    print(f"\nvideo top-1 accuracy on the {accuracy['fused']['videos']} test videos:")
    names = ("spatial", "motion", "fused") + ((temporal,) if args.consensus else ())
    names += ("flow_clip", "spatial+flow_clip") if args.flow_clip else ()
    width = max(12, *map(len, names))
    for name in names:
        print(f"  {name:<{width}} {accuracy[name]['top1']:6.1f} %")
    print(
        "The spatial stream sees the colour, the motion stream the direction: each alone is right\n"
        "about half the time, their fusion nearly always."
    )
    if args.consensus:
        print(
            f"{temporal}: one spatial stream whose {args.consensus} reads the frames in order, so "
            "it sees the\ndirection too and tells all four classes apart alone."
        )
    if args.flow_clip:
        print(
            "flow_clip: a 3D network on clips of flow sees the direction as the motion stream "
            "does;\nfused with the spatial stream it tells all four classes apart."
        )
    print(
        f"\n{clip.name} (a RedBallDown clip): predicted {predicted['top1']} "
        f"({100 * max(predicted['fused']):.1f} %), animation in {gif}"
    )
    print(f"everything is in {out}")


def main(argv=None) -> dict:
    """The demo in --out, which one demo at a time may write (a second is refused at once)."""
    args = get_args(argv)
    out = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the demo's outputs")
    fix = "wait for it to end, or give another --out"
    with folder_lock(out, f"the demo folder {out}", fix):
        prepare_out(out)
        return run_demo(args, out)


def run_demo(args, out: Path) -> dict:
    """Every step in turn, into the emptied --out."""
    data, frames, record = out / "data", out / "frames", out / "record"
    width, height = 96, 72  # frames are extracted at this size (--short-side = height)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    extra = ", half a minute more with --flow-clip" if args.flow_clip else ""
    print(
        f"Two-stream demo in {out}: 4 synthetic action classes, both streams trained from scratch "
        f"on the {args.device} (about 1.5 minutes on 2 cores{extra})."
    )

    make_data(args, data, frames, (width, height), timings)
    temporal = train_streams(args, data, frames, record, timings)
    fusion_json = out / "fusion.json"
    run_step(
        "fuse the two streams",
        "fusion.py",
        flags(
            spatial=record / "spatial" / "video_scores.npz",
            motion=record / "motion" / "video_scores.npz",
            json=fusion_json,
        ),
        timings,
    )
    if args.flow_clip:
        run_step(
            "fuse the spatial and the 3D flow stream",
            "fusion.py",
            flags(
                spatial=record / "spatial" / "video_scores.npz",
                stream="flow_clip=" + str(record / "flow_clip" / "video_scores.npz"),
                json=out / "fusion_flow_clip.json",
            ),
            timings,
        )
    clip = data / "videos" / "RedBallDown" / "v_RedBallDown_g01_c01.avi"
    gif, prediction_json = out / "prediction.gif", out / "prediction.json"
    run_step(
        "predict one test video from its file",
        "tools/predict.py",
        [str(clip)]
        + flags(
            spatial=record / "spatial" / "checkpoint.pth.tar",
            motion=record / "motion" / "checkpoint.pth.tar",
            top=4,
            device=args.device,
            gif=gif,
            json=prediction_json,
        ),
        timings,
    )
    total = time.perf_counter() - start

    accuracy = json.loads(fusion_json.read_text())
    if args.consensus:
        accuracy[temporal] = {"top1": top1(record / temporal / "video_scores.npz")}
    if args.flow_clip:
        with_flow_clip = json.loads((out / "fusion_flow_clip.json").read_text())
        accuracy["flow_clip"] = with_flow_clip["flow_clip"]
        accuracy["spatial+flow_clip"] = with_flow_clip["fused"]
    predicted = json.loads(prediction_json.read_text())
    summary = {"accuracy": accuracy, "prediction": predicted, "seconds": timings, "total": total}
    write_json(out / "demo.json", summary)
    print_summary(args, summary, temporal, clip, gif, out)
    return summary


if __name__ == "__main__":
    run_cli(main)
