"""One stream's run from its parsed options: data, model, then evaluate or train.

    python spatial_cnn.py ...   ->   engine.run.main(SPATIAL, argv)
    torchrun --nproc-per-node N spatial_cnn.py ...   ->   the same in N processes

Options are parsed before torch is imported (it takes seconds), so ``--help`` and a mistyped
option answer at once; ``run`` imports everything heavy once the options are known to be good.
"""

import argparse
import math
import sys

from engine.cli import parse_args, recipe_batch
from engine.streams import StreamSpec
from utils.errors import UserError


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


def model_config(args, num_classes: int, in_channels: int) -> dict:
    """The recognizer's config from the options (network.recognizer.CONFIG_KEYS)."""
    return {
        "arch": args.arch,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "dropout": args.dropout,
        "partial_bn": args.partial_bn,
        "consensus": args.consensus,
        "rnn_hidden": args.rnn_hidden,
        "rnn_layers": args.rnn_layers,
        "rnn_dropout": args.rnn_dropout,
        "bidirectional": args.bidirectional,
    }


def main(spec: StreamSpec, argv=None) -> int:
    args, ckpt = parse_args(spec, argv)
    return run(spec, args, ckpt)


def run(spec: StreamSpec, args: argparse.Namespace, ckpt: dict | None) -> int:
    from engine.distributed import cleanup, setup

    dist, device = setup(args)
    try:
        return _run(spec, args, ckpt, dist, device)
    finally:
        cleanup()


def _run(spec: StreamSpec, args, ckpt, dist, device) -> int:
    import torch

    from engine.data import build_datasets, load_run_split, make_loader
    from engine.distributed import is_main
    from engine.evaluation import evaluation_scores_path, test_and_save, test_mode, write_reports
    from engine.trainer import Trainer, check_compatible, finished_message
    from network.recognizer import build_recognizer, model_state

    if args.amp == "fp16" and device.type != "cuda":
        raise UserError("--amp fp16 needs a CUDA device; use --amp bf16 or none")
    if ckpt and not args.evaluate:
        finished = finished_message(ckpt["epoch"], args.epochs, args.record_dir, args.resume)
        if finished:
            if is_main():
                print(finished, flush=True)
            return 0
    seed_everything(args.seed + dist.rank)  # dropout differs between processes; weights don't

    split = load_run_split(args)
    sets = build_datasets(spec, args, split)
    if args.check_data:
        return 0
    test_set = sets["test"]
    config = model_config(args, len(split.classes), test_set.in_channels)
    if ckpt:
        check_compatible(ckpt, args.resume, spec, config, split.classes)
    mean, std = spec.statistics(config["in_channels"])
    pretrained = "none" if ckpt else args.pretrained  # a checkpoint brings its own weights
    model = build_recognizer(config, mean, std, pretrained)
    if ckpt:
        model.load_state_dict(model_state(ckpt))
        model.weights = ckpt.get("weights", "unknown")
    if is_main():
        print(f"{spec.name} stream: {args.arch} initialised from {model.weights}", flush=True)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model.to_channels_last()
    if args.compile:  # in place: the state dict keeps its keys, DDP wraps it as before
        model.backbone.compile()

    test_loader = make_loader(test_set, args, device, train=False, seed=args.seed, dist=dist)
    if args.evaluate:
        path = evaluation_scores_path(args, ckpt["epoch"])
        metrics = test_and_save(
            model, test_loader, spec, args, device, split.classes, ckpt["epoch"], path=path
        )
        prefix = path.name.removesuffix(".npz").removesuffix("scores").rstrip("_") + "_"
        for report in write_reports(path, prefix=prefix):
            print(f"wrote {report}", flush=True)
        if is_main():
            from utils.records import append_evaluation

            row = dict(metrics, epoch=ckpt["epoch"], checkpoint=args.resume, scores=path)
            log = append_evaluation(path.parent / "eval.csv", dict(row, test=test_mode(args)))
            print(f"wrote a row of {log}", flush=True)
        return 0

    loaders = {"test": test_loader}
    for name in ("train", "val"):
        if name in sets:
            loaders[name] = make_loader(
                sets[name], args, device, train=name == "train", seed=args.seed, dist=dist
            )
    recipe = recipe_batch(spec)
    accum = accumulation_steps(args.accum_steps, recipe, dist.world, args.batch_size)
    trainer = Trainer(spec, args, model, device, split.classes, loaders, dist, accum_steps=accum)
    if ckpt:
        trainer.restore(ckpt, args.resume)
        ckpt = None  # free the saved tensors
    n_val = len(sets["val"]) if "val" in sets else 0
    batch = describe_batch(dist.world, args.batch_size, accum, recipe, args.accum_steps is not None)
    epochs = f"epochs {trainer.epoch + 1}..{args.epochs}"
    if trainer.epoch >= args.epochs:  # killed in its final test (finished_message): test only
        epochs = f"all {trainer.epoch} epochs trained, the test scores missing: testing only"
    print(
        f"{spec.name} stream: {args.arch}, {len(split.classes)} classes, {len(sets['train'])} "
        f"training / {n_val} validation / {len(test_set)} test videos, device {device}, "
        f"{epochs}; {batch}, lr {args.lr:g}",
        flush=True,
    )
    warning = batch_warning(dist.world * args.batch_size * accum, len(sets["train"]), dist.world)
    if warning and is_main():
        print(warning, file=sys.stderr, flush=True)
    trainer.fit()
    return 0
