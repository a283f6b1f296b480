"""Training a stream: the epoch loop, top to bottom, and what it calls (validation, the test,
the curves). engine.run builds data and model and hands them to ``train``.

Two names for the model, as in torchvision's references: ``model`` is what trains (under torchrun
the DistributedDataParallel wrapper), ``model_without_ddp`` the plain model that checkpoints hold
and that evaluates. Only the main process writes files (engine.distributed.is_main).
"""

import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from engine.checkpoints import (
    CHECKPOINT,
    Progress,
    extraction_record,
    resume_training,
    save_checkpoint,
    training_checkpoint,
)
from engine.config import Options, recipe_batch
from engine.distributed import SINGLE, Dist, broadcast_buffers, is_main, mean_over_processes, wrap
from engine.evaluation import report_score_file, save_split_scores, test_and_save
from engine.loops import batch_sizes, evaluate, train_one_epoch
from engine.optim import make_optimizer, make_scheduler, steps_per_epoch
from engine.streams import StreamSpec
from utils.atomic import DiskFull, write_json
from utils.errors import Interrupted, UserError

PLOT_EVERY_S = 60.0  # curves.png before the last epoch


def accumulation_steps(given: int | None, recipe: int, world: int, batch: int) -> int:
    """Batches accumulated per optimizer step: ``given`` (--accum-steps) when there is one, else
    as many as bring ``world`` processes x ``batch`` videos nearest the recipe's effective batch
    ``recipe`` (at least 1): 1 x 32 -> 4, 8 x 32 -> 1, 2 x 16 -> 4 for 128."""
    if given is not None:
        return given
    return max(1, math.floor(recipe / (world * batch) + 0.5))


def describe_batch(world: int, batch: int, accum: int, recipe: int, given: bool) -> str:
    """The start-up line's account of the effective batch and where its accumulation came from."""
    effective = world * batch * accum
    why = "--accum-steps given" if given else "accumulation follows processes x batch"
    return (
        f"effective batch {world} process(es) x {batch} videos x {accum} accumulation steps = "
        f"{effective} ({why}; the recipe's lr is for {recipe})"
    )


def describe_steps(world: int, sizes: list[int], accum: int, train_videos: int) -> str:
    """The start-up line's account of what an optimizer step sees: an epoch's steps, the videos
    of a step and of a short last one, and that each video weighs the same in its step's loss
    (engine.loops.train_one_epoch); ``sizes``: the batches of one process's epoch."""
    steps = [world * sum(sizes[i : i + accum]) for i in range(0, len(sizes), accum)]
    text = f"an epoch is {len(steps)} step{'s' if len(steps) > 1 else ''} of {steps[0]} videos"
    if steps[-1] != steps[0]:
        text += f", the last of {steps[-1]}"
    text += ", every video weighed the same"
    repeated = sum(steps) - train_videos  # DistributedSampler's padding, taken twice
    if repeated > 0:
        text += f" ({repeated} drawn twice to even out {world} processes)"
    return text


def batch_warning(effective: int, train_videos: int, world: int) -> str | None:
    """A warning when one optimizer step would take the whole training set (or more). It
    suggests the small-data recipe's effective batch of 8 (docs/recipe.md), smaller only when
    the training set holds fewer than two such batches."""
    if effective <= train_videos:
        return None
    batch = max(1, min(8 // world, train_videos // (2 * world)))
    return (
        f"warning: the effective batch {effective} is larger than the {train_videos} training "
        f"videos: one optimizer step per epoch; pass e.g. --batch-size {batch} --accum-steps 1 "
        f"({math.ceil(train_videos / (world * batch))} steps per epoch) and scale --lr with the "
        "effective batch, as the small-data recipe does (docs/recipe.md: batch 8, --lr 0.0001, "
        "--head-lr-mult 100)"
    )


def train(spec: StreamSpec, options: Options, model: nn.Module, loaders: dict, device,
          classes: list[str], dist: Dist = SINGLE, ckpt: dict | None = None) -> None:  # fmt: skip
    """Train the remaining epochs of ``model`` (from ``ckpt`` when resuming): each epoch trains,
    validates (with a hold-out), saves its checkpoint, tests when due (the last epoch, or
    --eval-every) and draws the curves. Ctrl-C, SIGTERM and a full disk end it with one line
    saying what is kept and how to continue."""
    record_dir = Path(options.record_dir)
    recipe = recipe_batch(spec)
    accum = accumulation_steps(options.accum_steps, recipe, dist.world, options.batch_size)
    optimizer = make_optimizer(model, options, spec.lr_mults)
    steps = steps_per_epoch(len(loaders["train"]), accum)
    scaler = torch.amp.GradScaler("cuda") if options.amp == "fp16" else None
    generator = loaders["train"].generator
    progress = Progress()
    if ckpt:
        progress = resume_training(ckpt, options.resume, optimizer, scaler, generator, dist)
    scheduler = make_scheduler(optimizer, options, steps, done_steps=progress.epoch * steps)
    extraction = extraction_record(options.data_root) or (ckpt or {}).get("extraction")
    model_without_ddp, model = model, wrap(model, dist, device, options.sync_bn)
    _announce(spec, options, loaders, device, classes, dist, accum, progress.epoch)
    if is_main():
        write_json(record_dir / "args.json", dict(options.as_dict(), accum_steps_resolved=accum))
    plot = Plotter(record_dir, spec.name)
    trained_all = progress.epoch >= options.epochs  # resumed after all epochs: the test is left
    with _records(record_dir, loaders, progress.epoch) as records, _stops(record_dir, progress):
        for epoch in range(progress.epoch + 1, options.epochs + 1):
            loaders["train"].sampler.set_epoch(epoch)  # the epoch's order and draws (engine.data)
            stats = train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, scheduler,
                                    loaders["train"], device, epoch, clip_grad=options.clip_grad,
                                    amp=options.amp, scaler=scaler, accum_steps=accum)  # fmt: skip
            stats = mean_over_processes(stats, ("loss", "top1", "top5"))
            broadcast_buffers(model_without_ddp, dist)  # the checkpoint's model in every rank
            progress.epoch = epoch
            records.log("train", epoch, stats)
            _print_epoch(epoch, options.epochs, stats)
            is_best = "val" in loaders and validate(model_without_ddp, spec, options, loaders,
                                                    device, classes, progress, records)  # fmt: skip
            state = training_checkpoint(spec, options, model_without_ddp, classes, optimizer,
                                        scaler, generator, progress, stats, extraction)  # fmt: skip
            if is_main():
                save_checkpoint(state, record_dir, is_best)
                progress.saved = epoch
            del state
            if epoch == options.epochs or (options.eval_every and epoch % options.eval_every == 0):
                test_and_save(model_without_ddp, loaders["test"], spec, options, device, classes,
                              epoch, records)  # fmt: skip
            plot(last=epoch == options.epochs)
        if trained_all:  # killed in its final test (engine.checkpoints.finished_message)
            test_and_save(model_without_ddp, loaders["test"], spec, options, device, classes,
                          progress.epoch, records)  # fmt: skip
            plot(last=True)
        report_score_file(record_dir / "video_scores.npz")


def _announce(spec, options, loaders, device, classes, dist, accum: int, done: int) -> None:
    """The start-up line: data, device, epochs, batch, learning rate and where the run writes;
    a warning when one step would take the whole training set."""
    sizes = {name: len(loader.dataset) for name, loader in loaders.items()}
    recipe = recipe_batch(spec)
    batch = describe_batch(
        dist.world, options.batch_size, accum, recipe, options.accum_steps is not None
    )
    steps = describe_steps(dist.world, batch_sizes(loaders["train"]), accum, sizes["train"])
    epochs = f"epochs {done + 1}..{options.epochs}"
    if done >= options.epochs:  # killed in its final test (engine.checkpoints.finished_message)
        epochs = f"all {done} epochs trained, the test scores missing: testing only"
    print(
        f"{spec.name} stream: {options.arch}, {len(classes)} classes, {sizes['train']} "
        f"training / {sizes.get('val', 0)} validation / {sizes['test']} test videos, device "
        f"{device}, {epochs}; {batch}, lr {options.lr:g}; {steps}; writing to "
        f"{options.record_dir}",
        flush=True,
    )
    warning = batch_warning(dist.world * options.batch_size * accum, sizes["train"], dist.world)
    if warning and is_main():
        print(warning, file=sys.stderr, flush=True)


def _print_epoch(epoch: int, epochs: int, stats: dict) -> None:
    print(
        f"epoch {epoch}/{epochs} train: loss {stats['loss']:.4f}  top-1 {stats['top1']:.2f}%  "
        f"top-5 {stats['top5']:.2f}%  lr {stats['lr']:.3g}  ({stats['seconds']:.0f} s)",
        flush=True,
    )


def validate(model, spec, options, loaders, device, classes, progress: Progress, records) -> bool:
    """Evaluate on the hold-out and write val_scores.npz (what fusion.py --tune-weights reads);
    True when this epoch is the best so far (``progress.best_val`` follows)."""
    loader = loaders["val"]
    epoch = progress.epoch
    scores, val = evaluate(model, loader, device, softmax_average=options.softmax_average,
                           chunk=options.eval_chunk, amp=options.amp,
                           desc=f"epoch {epoch} val")  # fmt: skip
    records.log("val", epoch, val)
    if is_main():
        path = Path(options.record_dir) / "val_scores.npz"
        save_split_scores(path, loader, scores, spec, options, classes, epoch)
    is_best = val["top1"] > progress.best_val
    progress.best_val = max(progress.best_val, val["top1"])
    print(
        f"epoch {epoch} val: top-1 {val['top1']:.2f}% (best {progress.best_val:.2f}%)  "
        f"top-5 {val['top5']:.2f}%  loss {val['loss']:.4f}",
        flush=True,
    )
    return is_best


class Plotter:
    """curves.png from the records so far (main process): after the last epoch, and at most
    once a minute before it, since drawing it takes about a second (most of a small epoch)."""

    def __init__(self, record_dir: Path, title: str):
        self.record_dir, self.title = record_dir, title
        self.drawn = time.monotonic()

    def __call__(self, last: bool) -> None:
        now = time.monotonic()
        if is_main() and (last or now - self.drawn >= PLOT_EVERY_S):
            from utils.reports import plot_curves  # late: matplotlib takes seconds to import

            plot_curves(self.record_dir, self.record_dir / "curves.png", self.title)
            self.drawn = now


class _NoRecords:
    """The records of a process other than the main one: nothing written."""

    def log(self, phase: str, epoch: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def _records(record_dir: Path, loaders: dict, done: int):
    """train.csv, val.csv, test.csv and TensorBoard events of the main process, kept up to the
    resumed epoch ``done``."""
    from utils.records import Records  # late: tensorboard takes seconds to import

    phases = ("train", "val", "test") if "val" in loaders else ("train", "test")
    records = Records(record_dir, phases, resume_epoch=done or None) if is_main() else _NoRecords()
    try:
        yield records
    finally:
        records.close()


@contextmanager
def _stops(record_dir: Path, progress: Progress):
    """Ctrl-C, SIGTERM (utils.errors.terminate_as_interrupt) or a full disk: one line saying
    what is kept and how to continue."""
    path = record_dir / CHECKPOINT
    try:
        yield
    except KeyboardInterrupt as err:
        raise Interrupted(f"{str(err) or 'Ctrl-C'}; {_kept(path, progress)}") from None
    except DiskFull as err:
        raise UserError(f"{err}; free some space, then {_kept(path, progress)}") from err


def _kept(path: Path, progress: Progress) -> str:
    if not progress.saved:
        return "no epoch was saved yet: run the same command again"
    return f"the checkpoint of epoch {progress.saved} is kept: continue with --resume {path}"
