"""The trainer: optimizer and schedule, the epoch loop, evaluation schedule, checkpoints (made and
restored with every random generator), records and the best model.

The command line only parses options (engine.cli) and engine.run wires data, model and trainer.
A distributed run later wraps ``Trainer.model`` for training while ``Trainer.net`` (the plain
model) is what checkpoints hold, and only the main process writes (``Trainer.is_main``).
"""

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from engine.cli import plain
from engine.loops import evaluate, train_one_epoch
from engine.streams import StreamSpec
from network.archs import RECURRENT
from utils.checkpoint import FORMAT, atomic_save, rng_state, set_rng_state
from utils.classes import class_difference
from utils.errors import UserError
from utils.scores import load_npz, save_scores


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


def make_optimizer(model: nn.Module, args) -> torch.optim.SGD:
    """SGD with weight decay on conv/linear weights only (not on BN parameters and biases).

    The head learns at ``--head-lr-mult`` times ``--lr`` (a new head on a pretrained backbone
    may want more). Groups of equal settings are one group: at 1 it is the two groups of old.
    """
    head = {id(p) for p in model.head.parameters()} if hasattr(model, "head") else set()
    head_mult = getattr(args, "head_lr_mult", 1.0)
    groups: dict[tuple, list] = {}
    for p in model.parameters():
        if p.requires_grad:
            mult = head_mult if id(p) in head else 1.0
            groups.setdefault((mult, p.ndim > 1), []).append(p)
    return torch.optim.SGD(
        [
            {"params": params, "lr": args.lr * mult, "weight_decay": args.weight_decay * decay}
            for (mult, decay), params in groups.items()
        ],
        lr=args.lr,
        momentum=args.momentum,
    )


def check_compatible(ckpt: dict, path, spec: StreamSpec, config: dict, classes) -> None:
    """Refuse a checkpoint whose classes or model settings (spec.resume_match) differ, saying which."""
    from network.recognizer import model_config

    theirs = model_config(ckpt)
    if theirs["arch"] != config["arch"]:
        raise UserError(
            f"{path} was trained with --arch {theirs['arch']}, not {config['arch']}; "
            f"leave --arch out or pass --arch {theirs['arch']}"
        )
    saved = list(ckpt["classes"])
    if len(saved) != len(classes):
        raise UserError(
            f"{path} has {len(saved)} classes but the split has {len(classes)}; "
            "check --dataset and --splits-dir (they must match the checkpoint's training data)"
        )
    difference = class_difference(saved, list(classes))
    if difference is not None:
        raise UserError(
            f"{path} has other class names than the split ({difference}); "
            "check --dataset and --splits-dir"
        )
    if theirs["in_channels"] != config["in_channels"]:
        raise UserError(
            f"{path} takes {theirs['in_channels']} input channels, the data gives "
            f"{config['in_channels']}; use the sample options it was trained with"
        )
    # A recurrent head's weights fit only a head of the same cell and shape (avg and max share).
    head_keys = ()
    if theirs["consensus"] in RECURRENT or config["consensus"] in RECURRENT:
        head_keys = ("consensus", "rnn_hidden", "rnn_layers", "bidirectional")
    for key in (*head_keys, *spec.resume_match):
        if key not in ("arch", "in_channels") and theirs.get(key) != config.get(key):
            raise UserError(
                f"{path} was trained with {key} {theirs.get(key)!r}, not {config.get(key)!r}; "
                f"leave --{key.replace('_', '-')} out to use the checkpoint's"
            )


def test_and_save(model, loader, spec: StreamSpec, args, device, classes, epoch, records=None):
    """Evaluate on the test split; write video_scores.npz and (with ``records``) a test.csv row."""
    scores, metrics = evaluate(
        model,
        loader,
        device,
        softmax_average=args.softmax_average,
        chunk=args.eval_chunk,
        amp=args.amp,
        desc=f"epoch {epoch} test",
    )
    path = save_scores(
        Path(args.record_dir) / "video_scores.npz",
        videos=loader.dataset.names,
        labels=loader.dataset.labels,
        classes=classes,
        scores=scores,
        stream=spec.name,
        split=args.split,
        epoch=epoch,
        kind="probabilities" if args.softmax_average else "logits",
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


def write_reports(record_dir) -> None:
    """Per-class accuracy, confusion matrix and misclassified videos beside the score file."""
    from utils.reports import write_reports as write  # late: matplotlib takes seconds to import

    write(load_npz(Path(record_dir) / "video_scores.npz"), record_dir)


class Trainer:
    def __init__(
        self,
        spec: StreamSpec,
        args: argparse.Namespace,
        model: nn.Module,
        device: torch.device,
        classes: list[str],
        loaders: dict,
    ):
        self.spec, self.args, self.device, self.classes = spec, args, device, classes
        self.net = model  # the plain model: what checkpoints hold
        self.model = model  # what trains (a distributed wrapper of net, later)
        self.is_main = True  # the one process that writes files and prints
        self.loaders = loaders
        self.record_dir = Path(args.record_dir)
        self.optimizer = make_optimizer(model, args)
        self.factor = lr_lambda(args, len(loaders["train"]))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.factor)
        self.scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" else None
        self.epoch = 0  # epochs trained
        self.best_val = -1.0  # best validation top-1

    def state(self, stats: dict) -> dict:
        """The checkpoint of the epoch just trained: all a resumed run needs to continue exactly."""
        config = self.net.config
        return {
            "format": FORMAT,
            "epoch": self.epoch,
            "stream": self.spec.name,
            "arch": config["arch"],
            "classes": list(self.classes),
            "in_channels": config["in_channels"],
            "model_config": dict(config),
            "args": plain(self.args),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": rng_state(self.loaders["train"].generator),
            "best_val_top1": self.best_val,
            "train": stats,
        }

    def restore(self, ckpt: dict, path) -> None:
        """Continue from ``ckpt``: optimizer, schedule position, scaler and every RNG.

        The command line wins over the saved hyper-parameters (e.g. a lower --lr after a
        diverged run); the schedule position follows the epoch, whatever the batch size.
        """
        args = self.args
        self.epoch, self.best_val = ckpt["epoch"], ckpt.get("best_val_top1", -1.0)
        # Each group's rate and decay as this command line sets them (make_optimizer).
        fresh = [(g["initial_lr"], g["weight_decay"]) for g in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as err:  # other trainable parameters or groups
            raise UserError(
                f"the optimizer state of {path} does not fit this model ({err}); "
                "resume with the --partial-bn and --head-lr-mult settings it was trained with"
            ) from err
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        steps = len(self.loaders["train"])
        self.scheduler.last_epoch = self.epoch * steps
        self.scheduler.base_lrs = [lr for lr, _ in fresh]
        for group, (lr, wd) in zip(self.optimizer.param_groups, fresh, strict=True):
            group.update(
                initial_lr=lr,
                lr=lr * self.factor(self.scheduler.last_epoch),
                momentum=args.momentum,
                weight_decay=wd,
            )
        set_rng_state(ckpt["rng"], self.loaders["train"].generator)

    def _test(self, epoch, records):
        return test_and_save(
            self.net,
            self.loaders["test"],
            self.spec,
            self.args,
            self.device,
            self.classes,
            epoch,
            records,
        )

    def _validate(self, epoch, records) -> bool:
        """Evaluate on the hold-out; True when this epoch is the best so far."""
        args = self.args
        _, val = evaluate(
            self.net,
            self.loaders["val"],
            self.device,
            softmax_average=args.softmax_average,
            chunk=args.eval_chunk,
            amp=args.amp,
            desc=f"epoch {epoch} val",
        )
        records.log("val", epoch, val)
        is_best = val["top1"] > self.best_val
        self.best_val = max(self.best_val, val["top1"])
        print(
            f"epoch {epoch} val: top-1 {val['top1']:.2f}% (best {self.best_val:.2f}%)  "
            f"top-5 {val['top5']:.2f}%  loss {val['loss']:.4f}",
            flush=True,
        )
        return is_best

    def fit(self) -> None:
        """Train the remaining epochs; checkpoint each, test after the last (or --eval-every)."""
        from utils.records import Records  # late: tensorboard takes seconds to import

        args = self.args
        done = self.epoch
        has_val = "val" in self.loaders
        phases = ("train", "val", "test") if has_val else ("train", "test")
        records = Records(self.record_dir, phases, resume_epoch=done if done else None)
        try:
            for epoch in range(done + 1, args.epochs + 1):
                stats = train_one_epoch(
                    self.model,
                    nn.CrossEntropyLoss(),
                    self.optimizer,
                    self.scheduler,
                    self.loaders["train"],
                    self.device,
                    epoch,
                    clip_grad=args.clip_grad,
                    amp=args.amp,
                    scaler=self.scaler,
                )
                self.epoch = epoch
                records.log("train", epoch, stats)
                print(
                    f"epoch {epoch}/{args.epochs} train: loss {stats['loss']:.4f}  "
                    f"top-1 {stats['top1']:.2f}%  top-5 {stats['top5']:.2f}%  "
                    f"lr {stats['lr']:.3g}  ({stats['seconds']:.0f} s)",
                    flush=True,
                )
                is_best = self._validate(epoch, records) if has_val else False
                # Saved before the test evaluation: a kill during it costs no training.
                state = self.state(stats)
                atomic_save(state, self.record_dir / "checkpoint.pth.tar")
                if is_best:
                    atomic_save(state, self.record_dir / "model_best.pth.tar")
                del state
                if epoch == args.epochs or (args.eval_every and epoch % args.eval_every == 0):
                    self._test(epoch, records)
            if done >= args.epochs:  # resumed a finished run, e.g. one killed in its last test
                self._test(done, records)
        finally:
            records.close()
        write_reports(self.record_dir)
