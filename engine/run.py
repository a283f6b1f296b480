"""One stream's run from its parsed options: data, model, then evaluate or train.

    python spatial_cnn.py ...   ->   engine.run.main(SPATIAL, argv)
    torchrun --nproc-per-node N spatial_cnn.py ...   ->   the same in N processes

Options are parsed before torch is imported (it takes seconds), so ``--help`` and a mistyped
option answer at once; ``run`` imports everything heavy once the options are known to be good.
"""

import argparse

from engine.cli import parse_args
from engine.streams import StreamSpec
from utils.errors import UserError


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    from engine.evaluation import evaluation_scores_path, test_and_save, test_mode, write_reports
    from engine.trainer import Trainer, check_compatible
    from network.recognizer import build_recognizer, model_state

    if args.amp == "fp16" and device.type != "cuda":
        raise UserError("--amp fp16 needs a CUDA device; use --amp bf16 or none")
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
    if dist.is_main:
        print(f"{spec.name} stream: {args.arch} initialised from {model.weights}", flush=True)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    test_loader = make_loader(test_set, args, device, train=False, seed=args.seed, dist=dist)
    if args.evaluate:
        path = evaluation_scores_path(args, ckpt["epoch"])
        metrics = test_and_save(
            model, test_loader, spec, args, device, split.classes, ckpt["epoch"], path=path
        )
        prefix = path.name.removesuffix(".npz").removesuffix("scores").rstrip("_") + "_"
        for report in write_reports(path, prefix=prefix):
            print(f"wrote {report}", flush=True)
        if dist.rank == 0:
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
    trainer = Trainer(spec, args, model, device, split.classes, loaders, dist)
    if ckpt:
        trainer.restore(ckpt, args.resume)
        ckpt = None  # free the saved tensors
    n_val = len(sets["val"]) if "val" in sets else 0
    effective = dist.world * args.batch_size * args.accum_steps
    print(
        f"{spec.name} stream: {args.arch}, {len(split.classes)} classes, {len(sets['train'])} "
        f"training / {n_val} validation / {len(test_set)} test videos, device {device}, "
        f"epochs {trainer.epoch + 1}..{args.epochs}; effective batch {dist.world} process(es) "
        f"x {args.batch_size} videos x {args.accum_steps} accumulation steps = {effective}, "
        f"lr {args.lr:g}",
        flush=True,
    )
    trainer.fit()
    return 0
