"""A training run's checkpoint: what it holds, whether it fits the run that resumes it, how that
run takes it up, and when a resumed run has nothing left to do.

A checkpoint holds plain types only (utils.checkpoint reads it with ``weights_only=True``):
the model, the optimizer's per-parameter state, the scaler, every random generator of every
process, the epoch and the best validation score, and the options it was trained with. The
learning-rate schedule is not in it: it is a function of the optimizer step (engine.optim), so
a resumed run rebuilds it at its position, with the learning rate its own options give.
"""

from dataclasses import dataclass
from pathlib import Path

from engine.distributed import Dist, all_gather
from network.archs import RECURRENT
from utils.checkpoint import FORMAT, atomic_save, rng_state, set_rng_state
from utils.classes import class_difference
from utils.errors import UserError
from utils.faults import fault_point

CHECKPOINT, BEST = "checkpoint.pth.tar", "model_best.pth.tar"


@dataclass
class Progress:
    """How far a run has come: epochs trained, the epoch of the checkpoint on disk, the best
    validation top-1 (-1: none yet)."""

    epoch: int = 0
    saved: int = 0
    best_val: float = -1.0


def check_compatible(ckpt: dict, path, config: dict, classes) -> None:
    """Refuse a checkpoint whose classes or model settings differ, saying which."""
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
    for key in head_keys:
        if theirs.get(key) != config.get(key):
            raise UserError(
                f"{path} was trained with {key} {theirs.get(key)!r}, not {config.get(key)!r}; "
                f"leave --{key.replace('_', '-')} out to use the checkpoint's"
            )


def extraction_record(data_root) -> dict | None:
    """The extraction settings of the data root (its index.json), kept in every checkpoint so
    prediction computes flow as the training frames were (e.g. the TV-L1 preset)."""
    from extraction.settings import read_index_settings  # no PyAV needed

    settings = read_index_settings(data_root) if data_root else None
    return settings.as_dict() if settings is not None else None


def video_record(options) -> dict | None:
    """How a run trained from video files (--videos) read them, kept in its checkpoints: frames
    decoded, resized to ``short_side`` and never stored as JPEG. Prediction and --evaluate
    decode them the same way; None for a run on extracted frames."""
    if options.videos is None:
        return None
    return {"folder": str(options.videos), "short_side": options.short_side}


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


def training_checkpoint(spec, options, model, classes, optimizer, scaler, generator, progress,
                        stats, extraction) -> dict:  # fmt: skip
    """The checkpoint of the epoch just trained: all a resumed run needs to continue exactly.
    ``model``: the plain model (not DDP's wrapper). Every process calls it (it gathers their
    random states); the main one saves it."""
    rngs = all_gather(rng_state(generator))
    config = model.config
    return {
        "format": FORMAT,
        "epoch": progress.epoch,
        "stream": spec.name,
        "arch": config["arch"],
        "classes": list(classes),
        "in_channels": config["in_channels"],
        "model_config": dict(config),
        "weights": model.weights,  # what training started from (network.weights)
        "args": options.as_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": rngs[0],
        "rng_ranks": rngs,  # one per process, restored on a resume with as many
        "best_val_top1": progress.best_val,
        "train": stats,
        "extraction": extraction,
        "videos": video_record(options),
    }


def save_checkpoint(state: dict, record_dir: Path, is_best: bool) -> None:
    """The epoch's checkpoint, model_best first: once a checkpoint records a best score, the
    model of that score is in place, whenever the run is killed."""
    if is_best:
        atomic_save(state, record_dir / BEST)
    fault_point("train.best_saved")
    atomic_save(state, record_dir / CHECKPOINT)
    fault_point("train.checkpoint_saved")


def load_optimizer_state(optimizer, saved: dict, path) -> None:
    """The saved per-parameter state (momentum) under this run's hyper-parameters: the groups
    keep the learning rate, momentum and decay that the resuming run's options gave them (a
    lower --lr after a diverged run reaches every group with its multiplier)."""
    fresh = optimizer.state_dict()["param_groups"]
    if len(fresh) != len(saved["param_groups"]):
        raise UserError(f"the optimizer of {path} has other parameter groups than this version's")
    groups = [
        {**old, **{k: v for k, v in new.items() if k != "params"}}
        for new, old in zip(fresh, saved["param_groups"], strict=True)
    ]
    try:
        optimizer.load_state_dict({"state": saved["state"], "param_groups": groups})
    except ValueError as err:  # other trainable parameters, e.g. partial BN switched
        raise UserError(
            f"the optimizer state of {path} does not fit this model ({err}); "
            "resume with the --partial-bn and --head-lr-mult settings it was trained with"
        ) from err


def resume_training(ckpt: dict, path, optimizer, scaler, generator, dist: Dist) -> Progress:
    """Take up ``ckpt``: optimizer state, scaler and every random generator (each process its
    own when the world size is the same, else rank 0's); where the run stands."""
    load_optimizer_state(optimizer, ckpt["optimizer"], path)
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    ranks = ckpt.get("rng_ranks", [])
    set_rng_state(ranks[dist.rank] if len(ranks) == dist.world else ckpt["rng"], generator)
    epoch = ckpt["epoch"]
    return Progress(epoch=epoch, saved=epoch, best_val=ckpt.get("best_val_top1", -1.0))
