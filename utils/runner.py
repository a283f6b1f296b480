"""The command line both streams share: parse options, build data and model, train or evaluate.

spatial_cnn.py and motion_cnn.py each hand ``main`` a ``Stream``: the dataset class and the
stream's default hyper-parameters. Everything else (options, engine, checkpoints, records) is here,
in one place, so the two streams cannot drift apart.
"""

import argparse
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dataloader import (
    Layout,
    add_layout_arguments,
    default_splits_dir,
    holdout_groups,
    load_split,
    worker_init,
)
from dataloader.checks import find_problems, write_problems
from dataloader.splits import DATASETS
from network import ARCHS, build_model
from utils.checkpoint import FORMAT as CHECKPOINT_FORMAT
from utils.checkpoint import (
    atomic_save,
    check_compatible,
    load_checkpoint,
    rng_state,
    set_rng_state,
)
from utils.engine import evaluate, resolve_device, train_one_epoch
from utils.errors import UserError
from utils.scores import load_scores, save_scores

# Options that describe this invocation, not the model: never taken over from a checkpoint.
RUN_LOCAL = {
    "resume",
    "evaluate",
    "debug",
    "device",
    "workers",
    "amp",
    "eval_chunk",
    "check_data",
}


@dataclass(frozen=True)
class Stream:
    """What distinguishes a stream: its dataset class and its default hyper-parameters."""

    name: str  # "spatial" or "motion"; also the checkpoint's stream tag
    dataset: type  # SpatialDataset or MotionDataset
    dropout: float
    lr: float
    epochs: int
    lr_steps: tuple[int, ...]
    batch_size: int = 32
    stack_length: int | None = None  # flow frames per stack (motion only)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr (a UserError) instead of usage + message."""

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except None ones and where the help already says what the default is."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser(stream: Stream) -> argparse.ArgumentParser:
    p = _Parser(
        prog=f"{stream.name}_cnn.py",
        description=f"Train or evaluate the {stream.name} stream of a two-stream network.",
        formatter_class=_Help,
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data-root", help="folder with the extracted frames (jpegs_256/, tvl1_flow/)"
    )
    data.add_argument("--dataset", default="ucf101", choices=DATASETS, help="which benchmark")
    data.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="official split")
    data.add_argument(
        "--splits-dir",
        help="folder of the official split files (default: ucfTrainTestlist/ or "
        "testTrainMulti_7030_splits/ under --data-root)",
    )
    data.add_argument("--num-segments", type=int, default=3, help="TSN segments per training video")
    data.add_argument("--test-frames", type=int, default=19, help="frames (stacks) per test video")
    data.add_argument("--crop-size", type=int, default=224, help="network input size in pixels")
    data.add_argument("--ten-crop", action="store_true", help="test on 10 crops of every frame")
    if stream.stack_length is not None:
        data.add_argument(
            "--stack-length", type=int, default=stream.stack_length, help="flow frames per stack"
        )
    data.add_argument(
        "--val-groups",
        type=int,
        default=0,
        help="hold out this many whole UCF101 groups (gXX) of the training list as a validation "
        "set, evaluated every epoch; keeps model_best.pth.tar by it (0: no validation set)",
    )
    data.add_argument(
        "--check-data",
        action="store_true",
        help="scan every frame of the split's videos, report all problems and exit",
    )
    data.add_argument(
        "--skip-bad-videos",
        action="store_true",
        help="scan the videos first and leave unreadable ones out (listed in "
        "<record-dir>/skipped_videos.txt) instead of stopping at the first bad frame",
    )
    add_layout_arguments(p)

    model = p.add_argument_group("model")
    model.add_argument("--arch", default="resnet101", choices=ARCHS, help="torchvision ResNet")
    model.add_argument(
        "--pretrained",
        default="imagenet",
        help="'imagenet' (torchvision weights), 'none' (from scratch) or a state-dict file",
    )
    model.add_argument(
        "--dropout", type=float, default=stream.dropout, help="before the classifier"
    )
    model.add_argument(
        "--partial-bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="freeze all BatchNorm layers but the first (TSN; meant for pretrained weights)",
    )

    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=stream.epochs, help="training epochs")
    train.add_argument("--batch-size", type=int, default=stream.batch_size, help="videos per batch")
    train.add_argument("--lr", type=float, default=stream.lr, help="initial learning rate")
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
        default=list(stream.lr_steps),
        help="step schedule: epochs after which the learning rate is multiplied by --lr-gamma",
    )
    train.add_argument("--lr-gamma", type=float, default=0.1, help="step schedule factor")
    train.add_argument(
        "--warmup-epochs", type=float, default=0.0, help="linear learning-rate warm-up"
    )
    train.add_argument(
        "--clip-grad", type=float, default=40.0, help="max gradient norm (0: no clipping)"
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
        default=str(Path("record") / stream.name),
        help="where checkpoints, CSV/TensorBoard records and video_scores.npz go",
    )
    run.add_argument(
        "--resume",
        metavar="CHECKPOINT",
        help="continue training from a checkpoint; options left out take its values",
    )
    run.add_argument(
        "--evaluate",
        action="store_true",
        help="only evaluate the --resume checkpoint on the test split and write its scores",
    )
    run.add_argument(
        "--softmax-average",
        action="store_true",
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
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="data loading processes"
    )
    run.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return p


def _given_options(parser: argparse.ArgumentParser, argv, args) -> set[str]:
    """The options on the command line (as opposed to defaults): parse again over a sentinel."""
    unset = object()
    ns = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(vars(args), unset)))
    return {k for k, v in vars(ns).items() if v is not unset}


def _plain(args: argparse.Namespace) -> dict:
    """The arguments as plain types, for a checkpoint read with weights_only=True."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(args, iters_per_epoch: int):
    """Learning-rate multiplier per iteration: optional linear warm-up, then step or cosine."""
    warmup = args.warmup_epochs * iters_per_epoch
    total = args.epochs * iters_per_epoch

    def factor(it: int) -> float:
        if it < warmup:
            return (it + 1) / warmup
        if args.lr_schedule == "cosine":
            t = (it - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
        epoch = it // iters_per_epoch
        return args.lr_gamma ** sum(epoch >= s for s in args.lr_steps)

    return factor


def _optimizer(model: nn.Module, args) -> torch.optim.SGD:
    """SGD with weight decay on conv/linear weights only (not on BN parameters and biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        momentum=args.momentum,
    )


def _loader(dataset, args, device, *, train: bool, seed: int) -> DataLoader:
    """Training: shuffled batches of videos. Evaluation: one video (all its frames) per item.

    Each loader has its own seeded generator: it fixes the shuffle order and the workers'
    seeds, and evaluation never draws from the training's random streams.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=args.batch_size if train else 1,
        shuffle=train,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init,
        generator=generator,
    )


def _evaluate(model, loader, args, device, desc: str):
    """utils.engine.evaluate with the run's test-time options."""
    return evaluate(
        model,
        loader,
        device,
        softmax_average=args.softmax_average,
        chunk=args.eval_chunk,
        amp=args.amp,
        desc=desc,
    )


def _evaluate_test(model, loader, classes, stream, args, device, epoch, records=None) -> dict:
    """Evaluate on the test split; write video_scores.npz and (with ``records``) a test.csv row."""
    scores, metrics = _evaluate(model, loader, args, device, f"epoch {epoch} test")
    path = save_scores(
        Path(args.record_dir) / "video_scores.npz",
        videos=loader.dataset.names,
        labels=loader.dataset.labels,
        classes=classes,
        scores=scores,
        stream=stream.name,
        split=args.split,
        epoch=epoch,
    )
    if records is not None:
        records.log("test", epoch, metrics)
    print(
        f"epoch {epoch} test: top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  "
        f"mean class {metrics['mean_class']:.2f}%  loss {metrics['loss']:.4f}  "
        f"({metrics['videos']} videos, {metrics['seconds']:.0f} s) -> {path}",
        flush=True,
    )
    return metrics


def _write_reports(args) -> None:
    """Per-class accuracy, confusion matrix and misclassified videos beside the score file."""
    from utils.reports import write_reports  # late: matplotlib takes seconds to import

    write_reports(load_scores(Path(args.record_dir) / "video_scores.npz"), args.record_dir)


def _refuse_to_overwrite(path: Path) -> None:
    """A new run must not silently replace the checkpoint of an earlier one."""
    if path.exists():
        raise UserError(
            f"{path} exists from an earlier run: continue it with --resume {path}, "
            "or choose another --record-dir (or delete it)"
        )


def parse_args(stream: Stream, argv=None) -> tuple[argparse.Namespace, dict | None]:
    """Parse and check the options; with --resume also read the checkpoint.

    Options left off the command line take the values the checkpoint was trained with (except
    RUN_LOCAL ones), so ``--resume CKPT`` alone continues a run and ``--evaluate --resume CKPT``
    evaluates it as trained.
    """
    parser = build_parser(stream)
    args = parser.parse_args(argv)
    given = _given_options(parser, argv, args)
    if args.evaluate and not args.resume:
        raise UserError("--evaluate needs --resume CHECKPOINT (the model to evaluate)")
    ckpt = None
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        if ckpt["stream"] != stream.name:
            raise UserError(
                f"{args.resume} is a {ckpt['stream']}-stream checkpoint, this is the "
                f"{stream.name} stream; use {ckpt['stream']}_cnn.py with it"
            )
        for key, value in ckpt.get("args", {}).items():
            if key not in given and key not in RUN_LOCAL and hasattr(args, key):
                setattr(args, key, value)
    for name in ("epochs", "batch_size", "num_segments", "test_frames", "crop_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr <= 0 or args.workers < 0 or args.eval_every < 0 or args.val_groups < 0:
        raise UserError("--lr must be positive; --workers, --eval-every, --val-groups at least 0")
    if args.data_root is None:
        raise UserError("give --data-root, the folder that holds the extracted frames")
    if not Path(args.data_root).is_dir():
        raise UserError(
            f"--data-root {args.data_root} is not a folder; point it at the extracted frames"
        )
    if args.amp == "fp16" and resolve_device(args.device).type != "cuda":
        raise UserError("--amp fp16 needs a CUDA device; use --amp bf16 or none")
    if not (args.resume or args.check_data):
        _refuse_to_overwrite(Path(args.record_dir) / "checkpoint.pth.tar")
    return args, ckpt


def _datasets(stream: Stream, args, parts: dict, options: dict) -> dict:
    """Build the datasets of ``parts`` ({name: videos}); check or clean them if asked.

    --check-data scans every frame of every video and reports all problems at once;
    --skip-bad-videos scans the same way, then leaves the bad videos out of the run and lists
    them in <record-dir>/skipped_videos.txt.
    """
    strict = not (args.check_data or args.skip_bad_videos)
    sets = {
        name: stream.dataset(args.data_root, videos, name == "train", strict=strict, **options)
        for name, videos in parts.items()
        if videos
    }
    if strict:
        return sets
    problems = {}
    for data in sets.values():
        problems.update(find_problems(data, args.workers))
    if args.check_data:
        for name, found in sorted(problems.items()):
            for line in found:
                print(f"{name}: {line}")
        total = sum(len(data.items) + len(data.missing) for data in sets.values())
        if problems:
            raise UserError(
                f"{len(problems)} of {total} videos have problems (listed above); re-extract "
                "them, or train with --skip-bad-videos to leave them out"
            )
        print(f"all {total} videos are readable")
        return sets
    if problems:
        record_dir = Path(args.record_dir)
        record_dir.mkdir(parents=True, exist_ok=True)
        write_problems(problems, record_dir / "skipped_videos.txt")
        for data in sets.values():
            data.drop(problems)
        print(
            f"skipping {len(problems)} bad videos, listed in {record_dir / 'skipped_videos.txt'}",
            flush=True,
        )
    empty = [name for name, data in sets.items() if len(data) == 0]
    if empty:
        raise UserError(f"no readable videos left in the {empty[0]} set; see skipped_videos.txt")
    return sets


def main(stream: Stream, argv=None) -> int:
    args, ckpt = parse_args(stream, argv)
    device = resolve_device(args.device)
    _seed_everything(args.seed)

    splits_dir = args.splits_dir or default_splits_dir(args.dataset, args.data_root)
    split = load_split(args.dataset, splits_dir, args.split)
    options = dict(
        num_segments=args.num_segments,
        test_frames=args.test_frames,
        crop_size=args.crop_size,
        ten_crop=args.ten_crop,
        layout=Layout.from_args(args),
    )
    if stream.stack_length is not None:
        options["stack_length"] = args.stack_length
    train_videos, val_videos = split.train, []
    if args.val_groups and not args.evaluate:
        train_videos, val_videos = holdout_groups(split.train, args.val_groups, args.seed)
    # All sets before any training: a video missing on disk stops the run at once.
    parts = {"test": split.test}
    if not args.evaluate:
        parts.update(train=train_videos, val=val_videos)
    sets = _datasets(stream, args, parts, options)
    if args.check_data:
        return 0
    test_set = sets["test"]
    test_loader = _loader(test_set, args, device, train=False, seed=args.seed)
    in_channels = test_set.in_channels

    pretrained = "none" if ckpt else args.pretrained  # a checkpoint brings its own weights
    model = build_model(
        args.arch, len(split.classes), in_channels, args.dropout, pretrained, args.partial_bn
    )
    if ckpt:
        check_compatible(
            ckpt,
            args.resume,
            stream=stream.name,
            arch=args.arch,
            classes=split.classes,
            in_channels=in_channels,
        )
        model.load_state_dict(ckpt["model"])
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True

    if args.evaluate:
        _evaluate_test(model, test_loader, split.classes, stream, args, device, ckpt["epoch"])
        _write_reports(args)
        return 0

    train_set = sets["train"]
    train_loader = _loader(train_set, args, device, train=True, seed=args.seed)
    val_loader = None
    if "val" in sets:
        val_loader = _loader(sets["val"], args, device, train=False, seed=args.seed)

    optimizer = _optimizer(model, args)
    factor = lr_lambda(args, len(train_loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" else None
    done, best_val = 0, -1.0  # epochs already trained, best validation top-1
    if ckpt:
        done, best_val = ckpt["epoch"], ckpt.get("best_val_top1", -1.0)
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as err:  # other trainable parameters, e.g. partial BN switched
            raise UserError(
                f"the optimizer state of {args.resume} does not fit this model ({err}); "
                "resume with the --partial-bn setting it was trained with"
            ) from err
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        # The command line wins over the saved hyper-parameters (e.g. a lower --lr after a
        # diverged run); the schedule position follows the epoch, whatever the batch size.
        scheduler.last_epoch = done * len(train_loader)
        scheduler.base_lrs = [args.lr for _ in optimizer.param_groups]
        for group, wd in zip(optimizer.param_groups, (args.weight_decay, 0.0), strict=True):
            group.update(
                initial_lr=args.lr,
                lr=args.lr * factor(scheduler.last_epoch),
                momentum=args.momentum,
                weight_decay=wd,
            )
        set_rng_state(ckpt["rng"], train_loader.generator)
        ckpt = None  # free the saved tensors

    print(
        f"{stream.name} stream: {args.arch}, {len(split.classes)} classes, {len(train_set)} "
        f"training / {len(val_loader.dataset) if val_loader else 0} validation / "
        f"{len(test_set)} test videos, device {device}, epochs {done + 1}..{args.epochs}",
        flush=True,
    )
    from utils.records import Records  # late: tensorboard takes seconds to import

    record_dir = Path(args.record_dir)
    phases = ("train", "val", "test") if val_loader else ("train", "test")
    records = Records(record_dir, phases, resume_epoch=done if done else None)
    try:
        for epoch in range(done + 1, args.epochs + 1):
            stats = train_one_epoch(
                model,
                nn.CrossEntropyLoss(),
                optimizer,
                scheduler,
                train_loader,
                device,
                epoch,
                clip_grad=args.clip_grad,
                amp=args.amp,
                scaler=scaler,
            )
            records.log("train", epoch, stats)
            print(
                f"epoch {epoch}/{args.epochs} train: loss {stats['loss']:.4f}  "
                f"top-1 {stats['top1']:.2f}%  top-5 {stats['top5']:.2f}%  lr {stats['lr']:.3g}  "
                f"({stats['seconds']:.0f} s)",
                flush=True,
            )
            is_best = False
            if val_loader is not None:
                _, val = _evaluate(model, val_loader, args, device, f"epoch {epoch} val")
                records.log("val", epoch, val)
                is_best = val["top1"] > best_val
                best_val = max(best_val, val["top1"])
                print(
                    f"epoch {epoch} val: top-1 {val['top1']:.2f}% (best {best_val:.2f}%)  "
                    f"top-5 {val['top5']:.2f}%  loss {val['loss']:.4f}",
                    flush=True,
                )
            # Saved before the test evaluation: a kill during it costs no training.
            state = {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch,
                "stream": stream.name,
                "arch": args.arch,
                "classes": list(split.classes),
                "in_channels": in_channels,
                "args": _plain(args),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "rng": rng_state(train_loader.generator),
                "best_val_top1": best_val,
                "train": stats,
            }
            atomic_save(state, record_dir / "checkpoint.pth.tar")
            if is_best:
                atomic_save(state, record_dir / "model_best.pth.tar")
            del state
            if epoch == args.epochs or (args.eval_every and epoch % args.eval_every == 0):
                _evaluate_test(
                    model, test_loader, split.classes, stream, args, device, epoch, records
                )
        if done >= args.epochs:  # resumed a finished run, e.g. one killed in its last test
            _evaluate_test(model, test_loader, split.classes, stream, args, device, done, records)
    finally:
        records.close()
    _write_reports(args)
    return 0
