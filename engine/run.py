"""One stream's run from its options (engine.config.Options): data, model, then evaluate or train.

    python spatial_cnn.py ...   ->   engine.cli.main(SPATIAL, argv)   ->   run(SPATIAL, options)
    torchrun --nproc-per-node N spatial_cnn.py ...   ->   the same in N processes
    run(SPATIAL, make_options(SPATIAL, data_root=...))   from Python, no command line

Options are checked before torch is imported (it takes seconds), so ``--help`` and a mistyped
option answer at once; ``run`` imports everything heavy once the options are known to be good.
"""

import math
import sys
from contextlib import contextmanager
from pathlib import Path

from engine.config import Options, recipe_batch
from engine.streams import StreamSpec
from utils.atomic import remove_stale_tmp
from utils.errors import UserError, terminate_as_interrupt
from utils.locks import folder_lock


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


def batch_warning(effective: int, train_videos: int, world: int) -> str | None:
    """A warning when one optimizer step would take the whole training set (or more)."""
    if effective <= train_videos:
        return None
    batch = max(1, train_videos // (4 * world))
    return (
        f"warning: the effective batch {effective} is larger than the {train_videos} training "
        f"videos: one optimizer step per epoch; pass e.g. --batch-size {batch} --accum-steps 1 "
        f"({math.ceil(train_videos / (world * batch))} steps per epoch) and scale --lr with the "
        "effective batch"
    )


def model_config(options, num_classes: int, in_channels: int) -> dict:
    """The recognizer's config from the options (network.recognizer.CONFIG_KEYS)."""
    return {
        "arch": options.arch,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "dropout": options.dropout,
        "partial_bn": options.partial_bn,
        "consensus": options.consensus,
        "rnn_hidden": options.rnn_hidden,
        "rnn_layers": options.rnn_layers,
        "rnn_dropout": options.rnn_dropout,
        "bidirectional": options.bidirectional,
    }


def run(spec: StreamSpec, options: Options, ckpt: dict | None = None) -> int:
    """Train (or with ``evaluate`` evaluate) as ``options`` say; ``ckpt``: the checkpoint of
    ``options.resume``, read here when not given (engine.config.resume_options gives both).

    The folder it writes to is locked for the run (one writer per folder); SIGTERM stops it as
    Ctrl-C does."""
    if ckpt is None and options.resume:
        from engine.config import load_resumed

        ckpt = load_resumed(spec, options.resume)
    from engine.distributed import cleanup, setup

    dist, device = setup(options)
    try:
        with terminate_as_interrupt(), _lock_output(options, ckpt):
            return _run(spec, options, ckpt, dist, device)
    finally:
        cleanup()


def output_folder(options: Options, ckpt: dict | None) -> Path | None:
    """Where this run writes: the record dir, or for --evaluate the folder of its score file
    (beside the checkpoint, or --scores-out); None for --check-data, which writes nothing."""
    if options.check_data:
        return None
    if options.evaluate:
        from engine.evaluation import evaluation_scores_path

        return evaluation_scores_path(options, ckpt["epoch"]).parent
    return Path(options.record_dir)


@contextmanager
def _lock_output(options: Options, ckpt: dict | None):
    """Hold the output folder's lock (the main process: under torchrun rank 0 writes for all),
    then clear what killed runs left there and check again that a new run replaces nothing."""
    from engine.config import refuse_to_overwrite
    from engine.distributed import is_main

    folder = output_folder(options, ckpt)
    if folder is None or not is_main():
        yield
        return
    fix = "wait for it to end, or choose another --record-dir"
    if options.evaluate:
        fix = "wait for it to end, or write the scores elsewhere with --scores-out PATH"
    with folder_lock(folder, str(folder), fix):
        refuse_to_overwrite(options)
        for tmp in remove_stale_tmp(folder):
            print(f"removed {tmp}, left by a killed run", flush=True)
        yield


def _run(spec: StreamSpec, options, ckpt, dist, device) -> int:
    from engine.data import build_datasets, load_run_split, make_loader
    from engine.distributed import is_main
    from engine.trainer import check_compatible, finished_message

    if options.amp == "fp16" and device.type != "cuda":
        raise UserError("--amp fp16 needs a CUDA device; use --amp bf16 or none")
    if ckpt and not options.evaluate:
        finished = finished_message(
            ckpt["epoch"], options.epochs, options.record_dir, options.resume
        )
        if finished:
            if is_main():
                print(finished, flush=True)
            return 0
    seed_everything(options.seed + dist.rank)  # dropout differs between processes; weights don't

    split = load_run_split(options)
    sets = build_datasets(spec, options, split)
    if options.check_data:
        return 0
    config = model_config(options, len(split.classes), sets["test"].in_channels)
    if ckpt:
        check_compatible(ckpt, options.resume, spec, config, split.classes)
    model = _model(spec, options, config, ckpt, device)
    loaders = {
        name: make_loader(
            data, options, device, train=name == "train", seed=options.seed, dist=dist
        )
        for name, data in sets.items()
    }
    if options.evaluate:
        return _evaluate(spec, options, model, loaders["test"], device, split.classes, ckpt)
    return _train(spec, options, model, loaders, device, split.classes, ckpt, dist)


def _model(spec: StreamSpec, options, config: dict, ckpt, device):
    """The recognizer on ``device``: pretrained as asked, or the checkpoint's weights."""
    import torch

    from engine.distributed import is_main
    from network.recognizer import build_recognizer, model_state

    mean, std = spec.statistics(config["in_channels"])
    pretrained = "none" if ckpt else options.pretrained  # a checkpoint brings its own weights
    model = build_recognizer(config, mean, std, pretrained)
    if ckpt:
        model.load_state_dict(model_state(ckpt))
        model.weights = ckpt.get("weights", "unknown")
    if is_main():
        print(f"{spec.name} stream: {options.arch} initialised from {model.weights}", flush=True)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model.to_channels_last()
    if options.compile:  # in place: the state dict keeps its keys, DDP wraps it as before
        model.backbone.compile()
    return model


def _evaluate(spec: StreamSpec, options, model, loader, device, classes, ckpt) -> int:
    """--evaluate: the checkpoint's scores under their own name, reports and an eval.csv row."""
    from engine.distributed import is_main
    from engine.evaluation import evaluation_scores_path, test_and_save, test_mode, write_reports

    epoch = ckpt["epoch"]
    path = evaluation_scores_path(options, epoch)
    if is_main():
        print(f"evaluating {options.resume} (epoch {epoch}); writing to {path.parent}", flush=True)
    metrics = test_and_save(model, loader, spec, options, device, classes, epoch, path=path)
    prefix = path.name.removesuffix(".npz").removesuffix("scores").rstrip("_") + "_"
    for report in write_reports(path, prefix=prefix):
        print(f"wrote {report}", flush=True)
    if is_main():
        from utils.records import append_evaluation

        row = dict(metrics, epoch=epoch, checkpoint=options.resume, scores=path)
        log = append_evaluation(path.parent / "eval.csv", dict(row, test=test_mode(options)))
        print(f"wrote a row of {log}", flush=True)
    return 0


def _train(spec: StreamSpec, options, model, loaders, device, classes, ckpt, dist) -> int:
    """Train the remaining epochs (engine.trainer), from the checkpoint when resuming."""
    from engine.distributed import is_main
    from engine.trainer import Trainer

    recipe = recipe_batch(spec)
    accum = accumulation_steps(options.accum_steps, recipe, dist.world, options.batch_size)
    trainer = Trainer(spec, options, model, device, classes, loaders, dist, accum_steps=accum)
    if ckpt:
        trainer.restore(ckpt, options.resume)
        ckpt = None  # free the saved tensors
    sizes = {name: len(loader.dataset) for name, loader in loaders.items()}
    batch = describe_batch(
        dist.world, options.batch_size, accum, recipe, options.accum_steps is not None
    )
    epochs = f"epochs {trainer.epoch + 1}..{options.epochs}"
    if trainer.epoch >= options.epochs:  # killed in its final test (finished_message): test only
        epochs = f"all {trainer.epoch} epochs trained, the test scores missing: testing only"
    print(
        f"{spec.name} stream: {options.arch}, {len(classes)} classes, {sizes['train']} "
        f"training / {sizes.get('val', 0)} validation / {sizes['test']} test videos, device "
        f"{device}, {epochs}; {batch}, lr {options.lr:g}; writing to {options.record_dir}",
        flush=True,
    )
    warning = batch_warning(dist.world * options.batch_size * accum, sizes["train"], dist.world)
    if warning and is_main():
        print(warning, file=sys.stderr, flush=True)
    trainer.fit()
    return 0
