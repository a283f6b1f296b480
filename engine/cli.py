"""The command line every stream shares: a parser built from the stream's spec and the defaults
of engine.config, parsed and merged with a checkpoint's options into typed Options.

It only parses; engine.config checks what it hands on and engine.run builds and runs it. Nothing
below this module sees argparse.
"""

import argparse

from engine.cli_data import BOOL, add_layout_arguments, data_arguments, sampling_arguments
from engine.config import (
    Options,
    default_options,
    make_options,
    recipe_batch,
    resume_options,
)
from engine.config_file import CONFIG_HELP, read_config
from engine.run import run
from engine.streams import StreamSpec
from network.archs import CLIP_FAMILIES, CONSENSUS, IMAGE_FAMILIES
from utils.cli import Parser

ARCH_SIZES = (
    "; --crop-size, --clip-short-side and --clip-length follow it unless given (its Kinetics "
    "weights' crop and resize), and a run prints what it takes"
)


def _model_arguments(p, spec: StreamSpec, d: Options) -> None:
    model = p.add_argument_group("model")
    model.add_argument(
        "--arch",
        default=d.arch,
        help="the backbone: "
        + (IMAGE_FAMILIES if spec.archs == "image" else CLIP_FAMILIES + ARCH_SIZES),
    )
    family = d.pretrained
    version = {"imagenet": "imagenet1k_v2", "kinetics": "kinetics400_v1"}.get(family, family)
    model.add_argument(
        "--pretrained",
        default=family,
        help=f"'{family}' (torchvision's {family} weights, the V1 version where there are "
        f"several, as the published recipes used), a version by name (e.g. {version}), 'none' "
        "(from scratch) or a torchvision state-dict file",
    )
    model.add_argument("--dropout", type=float, default=d.dropout, help="before the classifier")
    model.add_argument(
        "--consensus",
        default=d.consensus,
        choices=CONSENSUS,
        help="how the segments make the video's score: TSN's average or maximum of their "
        "scores, or an LSTM/GRU over their features in time order (see --rnn-*)",
    )
    model.add_argument(
        "--rnn-hidden",
        type=int,
        default=d.rnn_hidden,
        help="lstm/gru: hidden units (per direction)",
    )
    model.add_argument(
        "--rnn-layers", type=int, default=d.rnn_layers, help="lstm/gru: stacked layers"
    )
    model.add_argument(
        "--rnn-dropout",
        type=float,
        default=d.rnn_dropout,
        help="lstm/gru: dropout on the features entering the RNN and between its layers",
    )
    model.add_argument(
        "--bidirectional",
        action=BOOL,
        default=d.bidirectional,
        help="lstm/gru: read the segments both ways",
    )
    model.add_argument(
        "--partial-bn",
        action=BOOL,
        default=d.partial_bn,
        help="freeze all BatchNorm layers but the first (TSN); default: on with pretrained "
        "weights, off with --pretrained none (frozen BN of random weights keeps its initial "
        "statistics and the activations explode)",
    )


def _batch_arguments(p, spec: StreamSpec, d: Options):
    train = p.add_argument_group("optimisation")
    train.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    train.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="videos per forward pass in each process (torchrun: global = processes x this)",
    )
    train.add_argument(
        "--accum-steps",
        type=int,
        default=d.accum_steps,
        help="accumulate the gradients of this many batches per optimizer step: the effective "
        "batch is processes x --batch-size x --accum-steps; the schedule counts optimizer steps "
        f"(default: as many as keep the recipe's {recipe_batch(spec)}, e.g. "
        f"{recipe_batch(spec) // d.batch_size} with one process of {d.batch_size})",
    )
    train.add_argument("--seed", type=int, default=d.seed, help="random seed (CPU runs are exact)")
    return train


def _optimisation_arguments(p, spec: StreamSpec, d: Options) -> None:
    train = _batch_arguments(p, spec, d)
    train.add_argument(
        "--lr",
        type=float,
        default=d.lr,
        help="initial learning rate, for the effective batch (the stream multiplies it per "
        "parameter group: first conv, biases; see README)",
    )
    train.add_argument(
        "--head-lr-mult",
        type=float,
        default=d.head_lr_mult,
        help="the head's learning rate is this times --lr (e.g. 10 for a new head on a "
        "pretrained backbone)",
    )
    train.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    train.add_argument(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        help="L2 on weights (none on BN and biases)",
    )
    train.add_argument(
        "--lr-schedule",
        default=d.lr_schedule,
        choices=("step", "cosine"),
        help="learning-rate schedule",
    )
    train.add_argument(
        "--lr-steps",
        type=int,
        nargs="*",
        default=list(d.lr_steps),
        help="step schedule: epochs after which the learning rate is multiplied by --lr-gamma",
    )
    train.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="step schedule factor")
    train.add_argument(
        "--warmup-epochs", type=float, default=d.warmup_epochs, help="linear learning-rate warm-up"
    )
    train.add_argument(
        "--clip-grad", type=float, default=d.clip_grad, help="max gradient norm (0: no clipping)"
    )


def _evaluation_arguments(p, d: Options) -> None:
    run = p.add_argument_group("evaluation")
    run.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue training from a checkpoint; options left out take its values",
    )
    run.add_argument(
        "--evaluate",
        action=BOOL,
        default=d.evaluate,
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
        "--eval-every",
        type=int,
        default=d.eval_every,
        help="also evaluate on the test split every N epochs (0: only after the last epoch)",
    )
    run.add_argument(
        "--softmax-average",
        action=BOOL,
        default=d.softmax_average,
        help="score a video by the mean softmax of its frames instead of the mean logits",
    )
    run.add_argument(
        "--eval-chunk",
        type=int,
        default=d.eval_chunk,
        help="frames per forward pass at test, to bound memory with --ten-crop (0: whole video)",
    )


def _distributed_arguments(p, d: Options) -> None:
    run = p.add_argument_group("distributed (torchrun)")
    run.add_argument(
        "--sync-bn",
        action=BOOL,
        default=d.sync_bn,
        help="torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm); "
        "matters without --partial-bn, which leaves only the first BN layer training",
    )
    run.add_argument(
        "--dist-timeout",
        type=float,
        default=d.dist_timeout,
        help="torchrun: seconds a process waits to join the others (or for a collective step) "
        "before it stops with an error",
    )


def _output_arguments(p, d: Options) -> None:
    run = p.add_argument_group("output and devices")
    run.add_argument(
        "--record-dir",
        default=d.record_dir,
        help="where checkpoints, CSV/TensorBoard records and video_scores.npz go",
    )
    run.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    run.add_argument(
        "--amp",
        default=d.amp,
        choices=("none", "bf16", "fp16"),
        help="mixed precision (autocast); fp16 needs CUDA",
    )
    run.add_argument(
        "--compile",
        action=BOOL,
        default=d.compile,
        help="torch.compile the backbone for training and evaluation (the first steps are slow "
        "while it compiles; needs a C++ compiler on the CPU); recorded in the checkpoint's args, "
        "not taken over by --resume",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="data-loading processes per training process (default: the cores, divided by the "
        "processes torchrun starts per machine: here %(default)s); they stay up across epochs",
    )


def add_fusion_arguments(parser: argparse.ArgumentParser) -> None:
    """--weights and --softmax, shared with tools/predict.py so both fuse the same way."""
    parser.add_argument(
        "--weights",
        nargs="+",
        type=float,
        metavar="W",
        help="one weight per stream, in the order spatial, motion, then --stream ones "
        "(default: all 1)",
    )
    parser.add_argument(
        "--softmax",
        action=BOOL,
        default=None,
        help="(default: off) turn each stream's scores into probabilities before averaging; "
        "without it, files "
        "of one kind are averaged as they are and files of different kinds (logits, "
        "probabilities) as log-probabilities",
    )


def build_parser(spec: StreamSpec) -> argparse.ArgumentParser:
    """The stream's options, grouped by concern, with engine.config's defaults."""
    d = default_options(spec)
    p = Parser(
        prog=f"{spec.name}_cnn.py",
        description=f"Train or evaluate the {spec.name} stream: {spec.description}.",
    )
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    data_arguments(p, d)
    sampling_arguments(p, spec, d)
    add_layout_arguments(p)
    _model_arguments(p, spec, d)
    _optimisation_arguments(p, spec, d)
    _evaluation_arguments(p, d)
    _distributed_arguments(p, d)
    _output_arguments(p, d)
    return p


def parse_args(spec: StreamSpec, argv=None) -> tuple[Options, dict | None]:
    """Parse the command line into checked Options; with --resume also read the checkpoint.

    Options left off the command line take the values of --config FILE, then (with --resume)
    the ones the checkpoint was trained with (except engine.config.RUN_LOCAL ones), so
    ``--resume CKPT`` alone continues a run and ``--evaluate --resume CKPT`` evaluates it as
    trained.
    """
    parser = build_parser(spec)
    given = parser.typed(argv)
    given.pop("debug", None)  # read by utils.errors.run_cli, not a run's option
    config = given.pop("config", None)
    if config is not None:
        given = {**read_config(spec, config, parser), **given}
    if given.get("resume"):
        return resume_options(spec, **given)
    return make_options(spec, **given), None


def main(spec: StreamSpec, argv=None) -> int:
    """A stream's script: parse, then engine.run.run."""
    options, ckpt = parse_args(spec, argv)
    return run(spec, options, ckpt)
