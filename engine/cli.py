"""The command line every stream shares: build the parser from a spec, parse, merge a checkpoint.

It only parses and checks options; engine.run builds and runs what they describe.
"""

import argparse
import os
import sys
from pathlib import Path

from dataloader.defaults import RECURRENT_TEST_SEQUENCES, TEST_FRAMES
from dataloader.layout import add_layout_arguments
from dataloader.splits import DATASETS
from engine.streams import StreamSpec
from network.archs import CONSENSUS, IMAGE_FAMILIES, RECURRENT, check_image_arch
from utils.cli import Parser
from utils.errors import UserError

# Options that describe this invocation, not the model: never taken over from a checkpoint.
RUN_LOCAL = {
    "resume",
    "evaluate",
    "debug",
    "device",
    "workers",
    "amp",
    "compile",
    "eval_chunk",
    "check_data",
    "scores_out",
    "sync_bn",
    "dist_timeout",
}
# Training segments when none are given: TSN's 3, or more for a head that learns from their order.
SEGMENTS, RECURRENT_SEGMENTS = 3, 8
# Hyper-parameters a spec may set; these are the defaults of a spec that does not. TSN's lr 0.001
# was for batches of 128 videos: 32 per step x 4 accumulated steps reach that on one GPU. The
# product batch_size x accum_steps is the recipe's effective batch (recipe_batch), which a run
# keeps: without --accum-steps, accumulation follows processes x --batch-size (engine.run).
DEFAULTS = dict(
    arch="resnet101",
    pretrained="imagenet",
    num_segments=SEGMENTS,
    test_frames=TEST_FRAMES,
    crop_size=224,
    dropout=0.8,
    lr=0.001,
    epochs=80,
    lr_steps=[30, 60],
    batch_size=32,
    accum_steps=4,
    clip_grad=20.0,
)
BOOL = argparse.BooleanOptionalAction  # every switch has a --no- form, to undo a checkpoint's


def recipe_batch(spec: StreamSpec) -> int:
    """The effective batch (videos per optimizer step) the stream's defaults are meant for."""
    d = {**DEFAULTS, **spec.defaults}
    return d["batch_size"] * d["accum_steps"]


def build_parser(spec: StreamSpec) -> argparse.ArgumentParser:
    d = {**DEFAULTS, **spec.defaults}
    p = Parser(
        prog=f"{spec.name}_cnn.py",
        description=f"Train or evaluate the {spec.name} stream: {spec.description}.",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data-root", help="folder with the extracted frames (jpegs_256/, tvl1_flow/)"
    )
    data.add_argument(
        "--dataset",
        default="ucf101",
        choices=DATASETS,
        help="which benchmark, or 'custom': your own classes.txt, train.txt, test.txt (README)",
    )
    data.add_argument(
        "--split", type=int, default=1, choices=(1, 2, 3), help="official split (not for custom)"
    )
    data.add_argument(
        "--splits-dir",
        help="folder of the split files (default: ucfTrainTestlist/, testTrainMulti_7030_splits/ "
        "or splits/, under --data-root or beside it)",
    )
    data.add_argument(
        "--num-segments",
        type=int,
        default=d["num_segments"],
        help=f"TSN segments per training video, in time order (default: {d['num_segments']}; "
        f"{RECURRENT_SEGMENTS} with --consensus lstm or gru)",
    )
    data.add_argument(
        "--test-frames", type=int, default=d["test_frames"], help="frames (stacks) per test video"
    )
    data.add_argument(
        "--test-sequences",
        type=int,
        default=None,
        help="test on this many sequences of --num-segments snippets, spaced as in training, at "
        "different offsets, and average their scores; 0: one sequence of --test-frames "
        f"(default: {RECURRENT_TEST_SEQUENCES} with --consensus lstm or gru, else 0)",
    )
    data.add_argument(
        "--crop-size", type=int, default=d["crop_size"], help="network input size in pixels"
    )
    data.add_argument(
        "--ten-crop", action=BOOL, default=False, help="test on 10 crops of every frame"
    )
    if spec.add_arguments is not None:
        spec.add_arguments(data)
    data.add_argument(
        "--val-groups",
        type=int,
        default=0,
        help="hold out this many whole UCF101 groups (gXX) of the training list as a validation "
        "set, evaluated every epoch; keeps model_best.pth.tar by it (0: no validation set)",
    )
    data.add_argument(
        "--check-data",
        action=BOOL,
        default=False,
        help="scan every frame of the split's videos, report all problems and exit",
    )
    data.add_argument(
        "--skip-bad-videos",
        action=BOOL,
        default=False,
        help="scan the videos first and leave unreadable ones out (listed in "
        "<record-dir>/skipped_videos.txt) instead of stopping at the first bad frame",
    )
    add_layout_arguments(p)

    model = p.add_argument_group("model")
    model.add_argument(
        "--arch",
        default=d["arch"],
        choices=spec.archs,
        help="the backbone: " + ("one of the 3D networks" if spec.archs else IMAGE_FAMILIES),
    )
    family = d["pretrained"]
    version = {"imagenet": "imagenet1k_v2", "kinetics": "kinetics400_v1"}.get(family, family)
    model.add_argument(
        "--pretrained",
        default=family,
        help=f"'{family}' (torchvision's {family} weights, the V1 version where there are "
        f"several, as the published recipes used), a version by name (e.g. {version}), 'none' "
        "(from scratch) or a torchvision state-dict file",
    )
    model.add_argument("--dropout", type=float, default=d["dropout"], help="before the classifier")
    model.add_argument(
        "--consensus",
        default="avg",
        choices=CONSENSUS,
        help="how the segments make the video's score: TSN's average or maximum of their "
        "scores, or an LSTM/GRU over their features in time order (see --rnn-*)",
    )
    model.add_argument(
        "--rnn-hidden", type=int, default=512, help="lstm/gru: hidden units (per direction)"
    )
    model.add_argument("--rnn-layers", type=int, default=1, help="lstm/gru: stacked layers")
    model.add_argument(
        "--rnn-dropout",
        type=float,
        default=0.0,
        help="lstm/gru: dropout on the features entering the RNN and between its layers",
    )
    model.add_argument(
        "--bidirectional", action=BOOL, default=False, help="lstm/gru: read the segments both ways"
    )
    model.add_argument(
        "--partial-bn",
        action=BOOL,
        default=None,
        help="freeze all BatchNorm layers but the first (TSN); default: on with pretrained "
        "weights, off with --pretrained none (frozen BN of random weights keeps its initial "
        "statistics and the activations explode)",
    )

    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=d["epochs"], help="training epochs")
    train.add_argument(
        "--batch-size",
        type=int,
        default=d["batch_size"],
        help="videos per forward pass in each process (torchrun: global = processes x this)",
    )
    train.add_argument(
        "--accum-steps",
        type=int,
        default=None,
        help="accumulate the gradients of this many batches per optimizer step: the effective "
        "batch is processes x --batch-size x --accum-steps; the schedule counts optimizer steps "
        f"(default: as many as keep the recipe's {d['batch_size'] * d['accum_steps']}, e.g. "
        f"{d['accum_steps']} with one process of {d['batch_size']})",
    )
    train.add_argument(
        "--lr",
        type=float,
        default=d["lr"],
        help="initial learning rate, for the effective batch (the stream multiplies it per "
        "parameter group: first conv, biases; see README)",
    )
    train.add_argument(
        "--head-lr-mult",
        type=float,
        default=1.0,
        help="the head's learning rate is this times --lr (e.g. 10 for a new head on a "
        "pretrained backbone)",
    )
    train.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    train.add_argument(
        "--weight-decay", type=float, default=5e-4, help="L2 on weights (none on BN and biases)"
    )
    train.add_argument(
        "--lr-schedule", default="step", choices=("step", "cosine"), help="learning-rate schedule"
    )
    train.add_argument(
        "--lr-steps",
        type=int,
        nargs="*",
        default=list(d["lr_steps"]),
        help="step schedule: epochs after which the learning rate is multiplied by --lr-gamma",
    )
    train.add_argument("--lr-gamma", type=float, default=0.1, help="step schedule factor")
    train.add_argument(
        "--warmup-epochs", type=float, default=0.0, help="linear learning-rate warm-up"
    )
    train.add_argument(
        "--clip-grad",
        type=float,
        default=d["clip_grad"],
        help="max gradient norm (0: no clipping)",
    )
    train.add_argument(
        "--eval-every",
        type=int,
        default=0,
        help="also evaluate on the test split every N epochs (0: only after the last epoch)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (CPU runs are exact)")

    run = p.add_argument_group("run")
    run.add_argument(
        "--record-dir",
        default=str(Path("record") / spec.name),
        help="where checkpoints, CSV/TensorBoard records and video_scores.npz go",
    )
    run.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue training from a checkpoint; options left out take its values",
    )
    run.add_argument(
        "--evaluate",
        action=BOOL,
        default=False,
        help="only evaluate the --resume checkpoint on the test split; its scores and reports "
        "go to <record-dir>/eval_<checkpoint>_e<epoch>[_tencrop]..._scores.npz, never over the "
        "training run's video_scores.npz",
    )
    run.add_argument(
        "--scores-out",
        metavar="PATH",
        help="with --evaluate: write the scores here (npz), reports beside it",
    )
    run.add_argument(
        "--softmax-average",
        action=BOOL,
        default=False,
        help="score a video by the mean softmax of its frames instead of the mean logits",
    )
    run.add_argument(
        "--eval-chunk",
        type=int,
        default=0,
        help="frames per forward pass at test, to bound memory with --ten-crop (0: whole video)",
    )
    run.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    run.add_argument(
        "--amp",
        default="none",
        choices=("none", "bf16", "fp16"),
        help="mixed precision (autocast); fp16 needs CUDA",
    )
    run.add_argument(
        "--compile",
        action=BOOL,
        default=False,
        help="torch.compile the backbone for training and evaluation (the first steps are slow "
        "while it compiles; needs a C++ compiler on the CPU); recorded in the checkpoint's args, "
        "not taken over by --resume",
    )
    run.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="data loading processes"
    )
    run.add_argument(
        "--sync-bn",
        action=BOOL,
        default=False,
        help="torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm); "
        "matters without --partial-bn, which leaves only the first BN layer training",
    )
    run.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        help="torchrun: seconds a process waits to join the others (or for a collective step) "
        "before it stops with an error",
    )
    return p


def resolve_partial_bn(args: argparse.Namespace) -> None:
    """Partial BN defaults to on only with pretrained weights: it keeps the frozen layers'
    statistics, which are only worth keeping when they were learnt."""
    scratch = args.pretrained in ("none", "", None)
    if args.partial_bn is None:
        args.partial_bn = not scratch
    elif args.partial_bn and scratch and not args.resume:
        print(
            "warning: --partial-bn with --pretrained none freezes BatchNorm layers at their "
            "initial statistics; use --no-partial-bn to train from scratch",
            file=sys.stderr,
            flush=True,
        )


def resolve_test_sequences(args: argparse.Namespace) -> None:
    """A recurrent head is tested on sequences like its training ones unless told otherwise;
    None (not given, not in the checkpoint) takes that default."""
    if args.test_sequences is None:
        args.test_sequences = RECURRENT_TEST_SEQUENCES if args.consensus in RECURRENT else 0


def _given_options(parser: argparse.ArgumentParser, argv, args) -> set[str]:
    """The options on the command line (as opposed to defaults): parse again over a sentinel."""
    unset = object()
    ns = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(vars(args), unset)))
    return {k for k, v in vars(ns).items() if v is not unset}


def plain(args: argparse.Namespace) -> dict:
    """The arguments as plain types, for a checkpoint read with weights_only=True."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}


def _refuse_to_overwrite(path: Path) -> None:
    """A new run must not silently replace the checkpoint of an earlier one."""
    if path.exists():
        raise UserError(
            f"{path} exists from an earlier run: continue it with --resume {path}, "
            "or choose another --record-dir (or delete it)"
        )


def parse_args(spec: StreamSpec, argv=None) -> tuple[argparse.Namespace, dict | None]:
    """Parse and check the options; with --resume also read the checkpoint.

    Options left off the command line take the values the checkpoint was trained with (except
    RUN_LOCAL ones), so ``--resume CKPT`` alone continues a run and ``--evaluate --resume CKPT``
    evaluates it as trained.
    """
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    given = _given_options(parser, argv, args)
    if args.evaluate and not args.resume:
        raise UserError("--evaluate needs --resume CHECKPOINT (the model to evaluate)")
    if args.scores_out and not args.evaluate:
        raise UserError("--scores-out is for --evaluate; a training run writes video_scores.npz")
    ckpt = None
    if args.resume:
        from utils.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.resume)
        if ckpt["stream"] != spec.name:
            raise UserError(
                f"{args.resume} is a {ckpt['stream']}-stream checkpoint, this is the "
                f"{spec.name} stream; use {ckpt['stream']}_cnn.py with it"
            )
        for key, value in ckpt.get("args", {}).items():
            if key not in given and key not in RUN_LOCAL and hasattr(args, key):
                setattr(args, key, value)
    resolve_partial_bn(args)
    saved = ckpt.get("args", {}) if ckpt else {}
    if "num_segments" not in given and "num_segments" not in saved and args.consensus in RECURRENT:
        args.num_segments = RECURRENT_SEGMENTS
    resolve_test_sequences(args)
    if args.test_sequences < 0:
        raise UserError("--test-sequences must be at least 0 (0: one sequence of --test-frames)")
    names = ("epochs", "batch_size", "num_segments", "test_frames", "crop_size", "rnn_hidden")
    if args.accum_steps is not None:  # None: follows processes x batch (engine.run)
        names += ("accum_steps",)
    for name in names:
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if spec.check is not None:
        spec.check(args)
    if args.dist_timeout <= 0:
        raise UserError("--dist-timeout must be a positive number of seconds")
    if args.lr <= 0 or args.workers < 0 or args.eval_every < 0 or args.val_groups < 0:
        raise UserError("--lr must be positive; --workers, --eval-every, --val-groups at least 0")
    if args.head_lr_mult <= 0:
        raise UserError(f"--head-lr-mult {args.head_lr_mult} must be positive (1: same as --lr)")
    if args.rnn_layers < 1 or not 0 <= args.rnn_dropout < 1:
        raise UserError("--rnn-layers must be at least 1 and --rnn-dropout in [0, 1)")
    if args.data_root is None:
        raise UserError("give --data-root, the folder that holds the extracted frames")
    if not Path(args.data_root).is_dir():
        raise UserError(
            f"--data-root {args.data_root} is not a folder; point it at the extracted frames"
        )
    if not (args.resume or args.check_data):
        _refuse_to_overwrite(Path(args.record_dir) / "checkpoint.pth.tar")
    if spec.archs is None:  # last: it imports torchvision
        check_image_arch(args.arch, args.crop_size)
    return args, ckpt
