"""The trainer: optimizer and schedule, the epoch loop, evaluation schedule, checkpoints (made and
restored with every random generator), records and the best model.

It trains with typed options (engine.config.Options); engine.run wires data, model and trainer.
Under torchrun ``Trainer.model`` is the DistributedDataParallel wrapper that trains while
``Trainer.net`` (the plain model) is what checkpoints hold and what evaluates, and only the main
process writes files (``Trainer.is_main``); see engine.distributed.
"""

import time
from pathlib import Path

import torch
from torch import nn

from engine.config import Options
from engine.distributed import (
    SINGLE,
    Dist,
    all_gather,
    broadcast_buffers,
    is_main,
    mean_over_processes,
    wrap,
)
from engine.evaluation import save_split_scores, test_and_save, write_reports
from engine.loops import evaluate, train_one_epoch
from engine.optim import lr_lambda, make_optimizer, steps_per_epoch
from engine.streams import StreamSpec
from network.archs import RECURRENT
from utils.atomic import DiskFull, write_json
from utils.checkpoint import FORMAT, atomic_save, rng_state, set_rng_state
from utils.classes import class_difference
from utils.errors import Interrupted, UserError
from utils.faults import fault_point

PLOT_EVERY_S = 60.0  # curves.png before the last epoch


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


def extraction_record(data_root) -> dict | None:
    """The extraction settings of the data root (its index.json), kept in every checkpoint so
    prediction computes flow as the training frames were (e.g. the TV-L1 preset)."""
    from dataloader.extraction_settings import read_index_settings  # no PyAV needed

    settings = read_index_settings(data_root) if data_root else None
    return settings.as_dict() if settings is not None else None


def finished_message(epoch: int, epochs: int, record_dir, checkpoint) -> str | None:
    """What to say when ``--resume`` names a run that has nothing left to do, else None.

    A run is finished when its checkpoint has reached --epochs and the test scores of that
    epoch and their reports are written; one killed during its final test evaluation (scores
    missing or of an earlier epoch, reports missing or older) is not: resuming it evaluates.
    """
    if epoch < epochs:
        return None
    scores = Path(record_dir) / "video_scores.npz"
    if not scores.is_file():
        return None
    import numpy as np

    try:
        with np.load(scores) as f:
            if int(f["epoch"]) < epoch:
                return None
    except (OSError, KeyError, ValueError):  # unreadable: evaluate again rather than stop
        return None
    from utils.reports import reports_current

    if not reports_current(scores):  # killed while writing its reports: test again
        return None
    return (
        f"{checkpoint} is a finished run: {epoch} epochs trained (--epochs {epochs}) and tested "
        f"({scores}); nothing to do, nothing written. To train longer, resume with more "
        f"epochs: --resume {checkpoint} --epochs N (N > {epoch}); to evaluate it again, add "
        "--evaluate"
    )


class _NoRecords:
    """The records of a process other than the main one: nothing written."""

    def log(self, phase: str, epoch: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


class Trainer:
    def __init__(
        self,
        spec: StreamSpec,
        options: Options,
        model: nn.Module,
        device: torch.device,
        classes: list[str],
        loaders: dict,
        dist: Dist = SINGLE,
        accum_steps: int | None = None,
    ):
        """``accum_steps``: batches per optimizer step (engine.run.accumulation_steps; default
        --accum-steps). ``options.accum_steps`` stays as given (None: follows the world size), so a
        resumed run re-derives it for its own number of processes."""
        self.spec, self.options, self.device, self.classes = spec, options, device, classes
        self.accum_steps = accum_steps or options.accum_steps or 1
        self.net = model  # the plain model: what checkpoints hold
        self.model = wrap(
            model, dist, device, getattr(options, "sync_bn", False)
        )  # what trains: DDP under torchrun
        self.dist = dist
        self.is_main = is_main()  # the one process that writes files and prints
        self._plotted = time.monotonic()  # when curves.png was last drawn
        self.loaders = loaders
        self.record_dir = Path(options.record_dir)
        self.optimizer = make_optimizer(model, options, spec.lr_mults)
        self.steps = steps_per_epoch(len(loaders["train"]), self.accum_steps)
        self.factor = lr_lambda(options, self.steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.factor)
        self.scaler = torch.amp.GradScaler("cuda") if options.amp == "fp16" else None
        self.epoch = 0  # epochs trained
        self.saved = 0  # the epoch of the checkpoint in the record dir
        self.best_val = -1.0  # best validation top-1
        self.extraction = extraction_record(options.data_root)

    def state(self, stats: dict) -> dict:
        """The checkpoint of the epoch just trained: all a resumed run needs to continue exactly.

        Every process calls it (it gathers their random states); the main one saves it.
        """
        rngs = all_gather(rng_state(self.loaders["train"].generator))
        config = self.net.config
        return {
            "format": FORMAT,
            "epoch": self.epoch,
            "stream": self.spec.name,
            "arch": config["arch"],
            "classes": list(self.classes),
            "in_channels": config["in_channels"],
            "model_config": dict(config),
            "weights": self.net.weights,  # what training started from (network.weights)
            "args": self.options.as_dict(),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": rngs[0],
            "rng_ranks": rngs,  # one per process, restored on a resume with as many
            "best_val_top1": self.best_val,
            "train": stats,
            "extraction": self.extraction,
        }

    def restore(self, ckpt: dict, path) -> None:
        """Continue from ``ckpt``: optimizer, schedule position, scaler and every RNG.

        The command line wins over the saved hyper-parameters (e.g. a lower --lr after a
        diverged run); the schedule position follows the epoch, whatever the batch size.
        """
        options = self.options
        self.epoch, self.best_val = ckpt["epoch"], ckpt.get("best_val_top1", -1.0)
        self.saved = self.epoch
        if self.extraction is None:
            self.extraction = ckpt.get("extraction")
        mults = [(g["lr_mult"], g["decay_mult"]) for g in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as err:  # other trainable parameters, e.g. partial BN switched
            raise UserError(
                f"the optimizer state of {path} does not fit this model ({err}); "
                "resume with the --partial-bn and --head-lr-mult settings it was trained with"
            ) from err
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.scheduler.last_epoch = self.epoch * self.steps
        factor = self.factor(self.scheduler.last_epoch)
        for group, (lr_mult, decay_mult) in zip(self.optimizer.param_groups, mults, strict=True):
            group.update(
                lr_mult=lr_mult,
                decay_mult=decay_mult,
                initial_lr=options.lr * lr_mult,
                lr=options.lr * lr_mult * factor,
                momentum=options.momentum,
                weight_decay=options.weight_decay * decay_mult,
            )
        self.scheduler.base_lrs = [g["initial_lr"] for g in self.optimizer.param_groups]
        ranks = ckpt.get("rng_ranks", [])
        same_world = len(ranks) == self.dist.world
        set_rng_state(
            ranks[self.dist.rank] if same_world else ckpt["rng"], self.loaders["train"].generator
        )

    def _test(self, epoch, records):
        return test_and_save(
            self.net,
            self.loaders["test"],
            self.spec,
            self.options,
            self.device,
            self.classes,
            epoch,
            records,
        )

    def _validate(self, epoch, records) -> bool:
        """Evaluate on the hold-out and write val_scores.npz (what fusion.py --tune-weights
        reads); True when this epoch is the best so far."""
        options = self.options
        scores, val = evaluate(
            self.net,
            self.loaders["val"],
            self.device,
            softmax_average=options.softmax_average,
            chunk=options.eval_chunk,
            amp=options.amp,
            desc=f"epoch {epoch} val",
        )
        records.log("val", epoch, val)
        if self.is_main:
            loader = self.loaders["val"]
            path = self.record_dir / "val_scores.npz"
            save_split_scores(path, loader, scores, self.spec, options, self.classes, epoch)
        is_best = val["top1"] > self.best_val
        self.best_val = max(self.best_val, val["top1"])
        print(
            f"epoch {epoch} val: top-1 {val['top1']:.2f}% (best {self.best_val:.2f}%)  "
            f"top-5 {val['top5']:.2f}%  loss {val['loss']:.4f}",
            flush=True,
        )
        return is_best

    def effective_options(self) -> dict:
        """The run's effective options (args.json): the command line merged with the
        checkpoint's and the defaults, with the accumulation it resolved to."""
        return dict(self.options.as_dict(), accum_steps=self.accum_steps)

    def _plot(self, last: bool) -> None:
        """curves.png from the records so far (main process): after the last epoch, and at most
        once a minute before it, since drawing it takes about a second (most of a small epoch)."""
        now = time.monotonic()
        if self.is_main and (last or now - self._plotted >= PLOT_EVERY_S):
            from utils.reports import plot_curves  # late: matplotlib takes seconds to import

            plot_curves(self.record_dir, self.record_dir / "curves.png", self.spec.name)
            self._plotted = now

    def _save(self, state: dict, is_best: bool) -> None:
        """The epoch's checkpoint (main process), before the test evaluation: a kill during it
        costs no training. model_best first: once the checkpoint records a best score, the
        model of that score is in place."""
        if not self.is_main:
            return
        if is_best:
            atomic_save(state, self.record_dir / "model_best.pth.tar")
        fault_point("train.best_saved")
        atomic_save(state, self.record_dir / "checkpoint.pth.tar")
        self.saved = self.epoch
        fault_point("train.checkpoint_saved")

    def how_to_continue(self) -> str:
        """What a stopped run has kept and the command that continues it."""
        path = self.record_dir / "checkpoint.pth.tar"
        if not self.saved:
            return "no epoch was saved yet: run the same command again"
        return f"the checkpoint of epoch {self.saved} is kept: continue with --resume {path}"

    def fit(self) -> None:
        """``train`` with a stop (Ctrl-C, SIGTERM, a full disk) said as what was kept and how
        to continue."""
        try:
            self.train()
        except KeyboardInterrupt as err:
            raise Interrupted(f"{str(err) or 'Ctrl-C'}; {self.how_to_continue()}") from None
        except DiskFull as err:
            raise UserError(f"{err}; free some space, then {self.how_to_continue()}") from err

    def train(self) -> None:
        """Train the remaining epochs; checkpoint each, test after the last (or --eval-every)."""
        from utils.records import Records  # late: tensorboard takes seconds to import

        options = self.options
        done = self.epoch
        has_val = "val" in self.loaders
        phases = ("train", "val", "test") if has_val else ("train", "test")
        if self.is_main:
            records = Records(self.record_dir, phases, resume_epoch=done if done else None)
            write_json(self.record_dir / "args.json", self.effective_options())
        else:
            records = _NoRecords()
        sampler = self.loaders["train"].sampler
        try:
            for epoch in range(done + 1, options.epochs + 1):
                if hasattr(sampler, "set_epoch"):  # a distributed run's order (engine.data)
                    sampler.set_epoch(epoch)
                stats = train_one_epoch(
                    self.model,
                    nn.CrossEntropyLoss(),
                    self.optimizer,
                    self.scheduler,
                    self.loaders["train"],
                    self.device,
                    epoch,
                    clip_grad=options.clip_grad,
                    amp=options.amp,
                    scaler=self.scaler,
                    accum_steps=self.accum_steps,
                )
                stats = mean_over_processes(stats, ("loss", "top1", "top5"))
                broadcast_buffers(self.net, self.dist)  # the checkpoint's model in every rank
                self.epoch = epoch
                records.log("train", epoch, stats)
                print(
                    f"epoch {epoch}/{options.epochs} train: loss {stats['loss']:.4f}  "
                    f"top-1 {stats['top1']:.2f}%  top-5 {stats['top5']:.2f}%  "
                    f"lr {stats['lr']:.3g}  ({stats['seconds']:.0f} s)",
                    flush=True,
                )
                is_best = self._validate(epoch, records) if has_val else False
                self._save(self.state(stats), is_best)
                if epoch == options.epochs or (
                    options.eval_every and epoch % options.eval_every == 0
                ):
                    self._test(epoch, records)
                self._plot(last=epoch == options.epochs)
            if done >= options.epochs:  # resumed a run killed in its last test (engine.run)
                self._test(done, records)
                self._plot(last=True)
        finally:
            records.close()
        write_reports(self.record_dir / "video_scores.npz")
