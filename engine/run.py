"""One stream's run from its options (engine.config.Options): data, model, then evaluate or train.

    python spatial_cnn.py ...   ->   engine.cli.main(SPATIAL, argv)   ->   run(SPATIAL, options)
                                ->   engine.trainer.train (the epoch loop) or evaluate_checkpoint
    torchrun --nproc-per-node N spatial_cnn.py ...   ->   the same in N processes
    run(SPATIAL, make_options(SPATIAL, data_root=...))   from Python, no command line

Options are checked before torch is imported (it takes seconds), so ``--help`` and a mistyped
option answer at once; ``run`` imports everything heavy once the options are known to be good.
"""

from contextlib import contextmanager
from pathlib import Path

from engine.config import Options
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


def recognizer_config(options, num_classes: int, in_channels: int) -> dict:
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
    from engine.checkpoints import check_compatible, finished_message
    from engine.config import load_resumed
    from engine.data import build_datasets, load_run_split, make_loader
    from engine.distributed import cleanup, is_main, setup
    from engine.trainer import train

    if ckpt is None and options.resume:
        ckpt = load_resumed(spec, options.resume)
    dist, device = setup(options)
    try:
        finished = (
            ckpt
            and not options.evaluate
            and finished_message(ckpt["epoch"], options.epochs, options.record_dir, options.resume)
        )
        if finished:
            if is_main():
                print(finished, flush=True)
            return 0
        if options.amp == "fp16" and device.type != "cuda":
            raise UserError("--amp fp16 needs a CUDA device; use --amp bf16 or none")
        split = load_run_split(options)  # a bad split stops the run before anything is written
        with terminate_as_interrupt(), _lock_output(options, ckpt):
            seed_everything(options.seed + dist.rank)  # dropout differs between processes
            sets = build_datasets(spec, options, split, dist)
            if options.check_data:
                return 0
            config = recognizer_config(options, len(split.classes), sets["test"].in_channels)
            if ckpt:
                check_compatible(ckpt, options.resume, config, split.classes)
            model = build_model(spec, options, config, ckpt, device)
            loaders = {
                name: make_loader(
                    data,
                    options,
                    device,
                    train=name == "train",
                    seed=options.seed,
                    dist=dist,
                    reused=name != "test" or options.eval_every > 0,  # test: once, at the end
                )  # fmt: skip
                for name, data in sets.items()
            }
            if options.evaluate:
                evaluate_checkpoint(spec, options, model, loaders["test"], device, split.classes,
                                    ckpt["epoch"])  # fmt: skip
            else:
                train(spec, options, model, loaders, device, split.classes, dist, ckpt)
            return 0
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


def build_model(spec: StreamSpec, options, config: dict, ckpt, device):
    """The recognizer on ``device``: pretrained as asked, or the checkpoint's weights."""
    import torch

    from engine.distributed import is_main
    from network.recognizer import build_recognizer, model_state

    pretrained = "none" if ckpt else options.pretrained  # a checkpoint brings its own weights
    model = build_recognizer(**config, pretrained=pretrained, statistics=spec.statistics)
    source = f"initialised from {model.weights}"
    if ckpt:
        model.load_state_dict(model_state(ckpt))
        model.weights = ckpt.get("weights", "unknown")
        source = (
            f"weights of {options.resume} (epoch {ckpt['epoch']}, trained from {model.weights})"
        )
    if is_main():
        print(f"{spec.name} stream: {options.arch}, {source}", flush=True)
        if spec.about is not None:
            print(spec.about(options), flush=True)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model.to_channels_last()
    if options.compile:  # in place: the state dict keeps its keys, DDP wraps it as before
        model.backbone.compile()
    return model


def evaluate_checkpoint(spec: StreamSpec, options, model, loader, device, classes, epoch: int):
    """--evaluate: the checkpoint's scores under their own name, reports and an eval.csv row."""
    from engine.distributed import is_main
    from engine.evaluation import (
        evaluation_scores_path,
        report_score_file,
        test_and_save,
        test_mode,
    )

    path = evaluation_scores_path(options, epoch)
    if is_main():
        print(f"evaluating {options.resume} (epoch {epoch}); writing to {path.parent}", flush=True)
    metrics = test_and_save(model, loader, spec, options, device, classes, epoch, path=path)
    prefix = path.name.removesuffix(".npz").removesuffix("scores").rstrip("_") + "_"
    for report in report_score_file(path, prefix=prefix):
        print(f"wrote {report}", flush=True)
    if is_main():
        from utils.records import append_evaluation

        row = dict(metrics, epoch=epoch, checkpoint=options.resume, scores=path)
        log = append_evaluation(path.parent / "eval.csv", dict(row, test=test_mode(options)))
        print(f"wrote a row of {log}", flush=True)
