"""A run's options as typed data: what the command line hands on, and what a caller from Python
(a notebook, a test, another tool) builds without one.

``make_options(SPATIAL, data_root=..., epochs=1)`` gives the checked ``Options`` that
engine.run.run trains or evaluates with; engine.cli builds its parser from the same defaults,
so they are written once, here. ``Options`` is flat (``options.lr``), made of one dataclass per
concern (data, model, optimisation, evaluation, distributed, output), plus the stream's own
options (``StreamSpec.options``) in ``options.stream``. A checkpoint keeps ``as_dict()``.

No torch or argparse here: a script parses and checks its options before the heavy imports.
"""

import copy
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dataloader.defaults import (
    CROP_SIZE,
    NUM_SEGMENTS,
    RECURRENT_TEST_SEQUENCES,
    TEST_SNIPPETS,
    VIDEO_SHORT_SIDE,
)
from dataloader.layout import Layout
from engine.streams import StreamSpec
from network.archs import HEAD_DEFAULTS, RECURRENT, check_image_arch
from utils.cores import usable_cores
from utils.errors import UserError

# Training segments of a head that learns from their order (lstm, gru) when none are given.
RECURRENT_SEGMENTS = 8
# Options that describe one invocation, not the model: never taken over from a checkpoint. The
# record dir is one: a run writes where its user says (--record-dir), or beside the checkpoint it
# resumes, never where a checkpoint says (it may have been copied from another folder or machine).
RUN_LOCAL = {
    "record_dir",
    "resume",
    "evaluate",
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
# Options renamed since a checkpoint or config file may have been written: {old: new}. Both are
# read under the new name (options_from_dict, make_options, resume_options, engine.config_file).
RENAMED = {"test_frames": "test_snippets"}


@dataclass
class DataOptions:
    data_root: str | None = None
    videos: str | None = None  # a folder of video files, read in place of extracted frames
    short_side: int = VIDEO_SHORT_SIDE  # with videos: decoded frames are resized to it
    dataset: str = "ucf101"
    split: int = 1
    splits_dir: str | None = None
    num_segments: int = NUM_SEGMENTS
    test_snippets: int = TEST_SNIPPETS
    test_sequences: int | None = None  # None: RECURRENT_TEST_SEQUENCES for lstm/gru, else 0
    crop_size: int = CROP_SIZE
    ten_crop: bool = False
    val_groups: int = 0
    check_data: bool = False
    skip_bad_videos: bool = False
    rgb_dir: str = Layout.rgb_dir
    flow_x_dir: str = Layout.flow_x_dir
    flow_y_dir: str = Layout.flow_y_dir
    rgb_pattern: str = Layout.rgb_pattern
    flow_x_pattern: str = Layout.flow_x_pattern
    flow_y_pattern: str = Layout.flow_y_pattern


@dataclass
class ModelOptions:
    arch: str = "resnet101"
    pretrained: str = "imagenet"
    dropout: float = 0.8
    consensus: str = "avg"
    rnn_hidden: int = HEAD_DEFAULTS["rnn_hidden"]
    rnn_layers: int = HEAD_DEFAULTS["rnn_layers"]
    rnn_dropout: float = HEAD_DEFAULTS["rnn_dropout"]
    bidirectional: bool = HEAD_DEFAULTS["bidirectional"]
    partial_bn: bool | None = None  # None: on with pretrained weights, off from scratch


RECIPE_ACCUM_STEPS = 4  # TSN's batch of 128 on one GPU: 32 videos x 4 accumulated batches


# TSN's lr 0.001 was for batches of 128 videos: 32 per step x 4 accumulated steps reach that on
# one GPU. batch_size x accum_steps of a spec's defaults is its recipe's effective batch
# (recipe_batch), which a run keeps: accum_steps None follows processes x batch (engine.run).
@dataclass
class OptimOptions:
    epochs: int = 80
    batch_size: int = 32
    accum_steps: int | None = None
    lr: float = 0.001
    head_lr_mult: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "step"
    lr_steps: list[int] = field(default_factory=lambda: [30, 60])
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    clip_grad: float = 20.0
    seed: int = 0


@dataclass
class EvalOptions:
    evaluate: bool = False
    resume: str | None = None
    scores_out: str | None = None
    eval_every: int = 0
    softmax_average: bool = False
    eval_chunk: int = 0


@dataclass
class DistOptions:
    sync_bn: bool = False
    dist_timeout: float = 600.0


def default_workers() -> int:
    """Data-loading processes per training process: the cores this process may use, shared by
    the processes torchrun starts on the machine (LOCAL_WORLD_SIZE)."""
    return max(1, usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


@dataclass
class OutputOptions:
    record_dir: str | None = None  # None: record/<stream>
    device: str | None = None
    amp: str = "none"
    compile: bool = False
    workers: int = field(default_factory=lambda: default_workers())


@dataclass
class Options(OutputOptions, DistOptions, EvalOptions, OptimOptions, ModelOptions, DataOptions):
    """Every option of a run; ``stream``: the stream's own (StreamSpec.options), by name."""

    stream: dict = field(default_factory=dict)

    def layout(self) -> Layout:
        return Layout(**{f.name: getattr(self, f.name) for f in fields(Layout)})

    def as_dict(self) -> dict:
        """Plain types, the stream's own options beside the others: a checkpoint's ``args``."""
        flat = {k: v for k, v in asdict(self).items() if k != "stream"}
        flat.update(self.stream)
        return {k: _plain(v) for k, v in flat.items()}


def _plain(value):
    """A value as a checkpoint read with weights_only=True takes it."""
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


FIELDS = {f.name for f in fields(Options)} - {"stream"}


def option_names(spec: StreamSpec) -> set[str]:
    return FIELDS | {o.name for o in spec.options}


def default_options(spec: StreamSpec) -> Options:
    """The stream's defaults, unresolved and unchecked (what --help shows)."""
    stream = {o.name: o.default for o in spec.options}
    # accum_steps of a spec's defaults only says its recipe's batch (recipe_batch): a run's
    # accumulation follows its processes unless given.
    defaults = {k: v for k, v in copy.deepcopy(spec.defaults).items() if k != "accum_steps"}
    return Options(**{"record_dir": str(Path("record") / spec.name), **defaults}, stream=stream)


def renamed(values: dict) -> dict:
    """``values`` with the keys of RENAMED under their new names (a new name given beside its
    old one wins)."""
    old = {RENAMED[k]: v for k, v in values.items() if k in RENAMED}
    return {**old, **{k: v for k, v in values.items() if k not in RENAMED}}


def options_from_dict(spec: StreamSpec, values: dict) -> Options:
    """``values`` (a checkpoint's ``args``, say) over the stream's defaults; old names (RENAMED)
    are read under their new ones, unknown keys of another version are left out. Not resolved
    nor checked: see make_options."""
    options = default_options(spec)
    for key, value in renamed(values).items():
        if key in options.stream:
            options.stream[key] = value
        elif key in FIELDS:
            setattr(options, key, value)
    return options


def recipe_batch(spec: StreamSpec) -> int:
    """The effective batch (videos per optimizer step) the stream's defaults are meant for."""
    d = {"batch_size": OptimOptions.batch_size, "accum_steps": RECIPE_ACCUM_STEPS, **spec.defaults}
    return d["batch_size"] * d["accum_steps"]


def load_resumed(spec: StreamSpec, path) -> dict:
    """The checkpoint a run of ``spec`` resumes or evaluates (utils.checkpoint), of its stream."""
    from utils.checkpoint import load_checkpoint  # late: it imports torch

    ckpt = load_checkpoint(path)
    if ckpt["stream"] != spec.name:
        raise UserError(
            f"{path} is a {ckpt['stream']}-stream checkpoint, this is the "
            f"{spec.name} stream; use {ckpt['stream']}_cnn.py with it"
        )
    return ckpt


def resume_options(spec: StreamSpec, resume, **given) -> tuple["Options", dict]:
    """Options to continue (or with ``evaluate=True`` evaluate) the checkpoint ``resume``, and
    the checkpoint: the options it was trained with (but RUN_LOCAL ones), ``given`` over them.
    The run writes in the checkpoint's own folder unless ``given`` has a ``record_dir``."""
    ckpt = load_resumed(spec, resume)
    known = option_names(spec)
    args = renamed(ckpt.get("args", {}))
    saved = {k: v for k, v in args.items() if k in known and k not in RUN_LOCAL}
    sources = {"data_root", "videos"}
    if sources & set(given):  # frames from elsewhere than the checkpoint's: that source only
        saved = {k: v for k, v in saved.items() if k not in sources}
    here = {"record_dir": str(Path(resume).parent)}
    return make_options(spec, **{**saved, **here, **renamed(given), "resume": str(resume)}), ckpt


def make_options(spec: StreamSpec, **values) -> Options:
    """The checked options of a run of ``spec``: its defaults with ``values`` over them.

    Options left as None take the value that depends on others: partial_bn follows pretrained,
    test_sequences the consensus; num_segments not in ``values`` follows the consensus.
    """
    values = renamed(values)
    unknown = sorted(set(values) - option_names(spec))
    if unknown:
        raise UserError(f"unknown option {unknown[0]!r} for the {spec.name} stream")
    options = options_from_dict(spec, values)
    resolve_partial_bn(options)
    if "num_segments" not in values and options.consensus in RECURRENT:
        options.num_segments = RECURRENT_SEGMENTS
    resolve_test_sequences(options)
    if spec.resolve is not None:
        spec.resolve(options, set(values))
    check_options(spec, options)
    return options


def resolve_partial_bn(options) -> None:
    """Partial BN defaults to on only with pretrained weights: it keeps the frozen layers'
    statistics, which are only worth keeping when they were learnt."""
    scratch = options.pretrained in ("none", "", None)
    if options.partial_bn is None:
        options.partial_bn = not scratch
    elif options.partial_bn and scratch and not options.resume:
        print(
            "warning: --partial-bn with --pretrained none freezes BatchNorm layers at their "
            "initial statistics; use --no-partial-bn to train from scratch",
            file=sys.stderr,
            flush=True,
        )


def resolve_test_sequences(options) -> None:
    """A recurrent head is tested on sequences like its training ones unless told otherwise;
    None (not given, not in the checkpoint) takes that default."""
    if options.test_sequences is None:
        options.test_sequences = RECURRENT_TEST_SEQUENCES if options.consensus in RECURRENT else 0


def _check_counts(options: Options) -> None:
    if options.test_sequences < 0:
        raise UserError("--test-sequences must be at least 0 (0: one sequence of --test-snippets)")
    names = ("epochs", "batch_size", "num_segments", "test_snippets", "crop_size", "rnn_hidden")
    if options.accum_steps is not None:  # None: follows processes x batch (engine.run)
        names += ("accum_steps",)
    for name in names:
        if getattr(options, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if options.dist_timeout <= 0:
        raise UserError("--dist-timeout must be a positive number of seconds")
    if options.lr <= 0 or options.workers < 0 or options.eval_every < 0 or options.val_groups < 0:
        raise UserError("--lr must be positive; --workers, --eval-every, --val-groups at least 0")
    if options.head_lr_mult <= 0:
        raise UserError(f"--head-lr-mult {options.head_lr_mult} must be positive (1: same as --lr)")
    if options.rnn_layers < 1 or not 0 <= options.rnn_dropout < 1:
        raise UserError("--rnn-layers must be at least 1 and --rnn-dropout in [0, 1)")


def refuse_to_overwrite(options: Options) -> None:
    """A new run must not silently replace the checkpoint of an earlier one."""
    path = Path(options.record_dir) / "checkpoint.pth.tar"
    if not (options.resume or options.check_data) and path.exists():
        raise UserError(
            f"{path} exists from an earlier run: continue it with --resume {path}, "
            "or choose another --record-dir (or delete it)"
        )


def check_source(spec: StreamSpec, options: Options) -> None:
    """One source of frames: extracted ones (--data-root) or video files (--videos)."""
    if options.data_root is not None and options.videos is not None:
        raise UserError("give --data-root or --videos, not both")
    if options.videos is not None:
        if not spec.videos:
            raise UserError(
                f"the {spec.name} stream cannot train from --videos: it needs optical flow, "
                "computed once beforehand; extract it (python tools/extract_frames_flow.py "
                f"--videos {options.videos} --out ROOT) and give --data-root ROOT"
            )
        if not Path(options.videos).is_dir():
            raise UserError(f"--videos {options.videos} is not a folder of video files")
        if options.short_side < 0:
            raise UserError(f"--short-side {options.short_side} must be at least 0 (0: as stored)")
        return
    if options.data_root is None:
        raise UserError(
            "give --data-root, the folder that holds the extracted frames (or --videos DIR)"
        )
    if not Path(options.data_root).is_dir():
        raise UserError(
            f"--data-root {options.data_root} is not a folder; point it at the extracted frames"
        )


def check_options(spec: StreamSpec, options: Options) -> None:
    """Refuse options that cannot make a run, in one line naming the option."""
    if options.evaluate and not options.resume:
        raise UserError("--evaluate needs --resume CHECKPOINT (the model to evaluate)")
    if options.scores_out and not options.evaluate:
        raise UserError("--scores-out is for --evaluate; a training run writes video_scores.npz")
    _check_counts(options)
    if spec.check is not None:
        spec.check(options)
    check_source(spec, options)
    refuse_to_overwrite(options)  # again once the run holds the folder's lock (engine.run)
    if spec.archs == "image":  # last: it imports torchvision
        check_image_arch(options.arch, options.crop_size)
