"""Several processes, one run: torchrun's environment -> a process group, DDP and gathering.

torchrun (or any launcher that sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)
starts one process per GPU, each running the same script. Without WORLD_SIZE a run is one plain
process and everything here does nothing, so ``python spatial_cnn.py`` is unchanged.

What is per process and what is global: ``--batch-size`` is per process; the training set is
split between the processes every epoch, gradients are averaged, and evaluation splits the
videos (rank r scores videos r, r + world, ...) and gathers the scores by video index. Only
rank 0 writes files and prints; the others print errors only.
"""

import contextlib
import datetime
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from engine.device import resolve_device
from utils.errors import UserError


@dataclass(frozen=True)
class Dist:
    """This process's place in the run; ``enabled`` once started by torchrun (even with 1)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    enabled: bool = False


SINGLE = Dist()


def from_env(environ=os.environ) -> Dist:
    """The process's rank and world from torchrun's variables; SINGLE without WORLD_SIZE."""
    if "WORLD_SIZE" not in environ:
        return SINGLE
    try:
        world, rank = int(environ["WORLD_SIZE"]), int(environ["RANK"])
        local = int(environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError) as err:
        raise UserError(
            f"WORLD_SIZE is set but RANK/LOCAL_RANK are missing or not numbers ({err}); "
            "start the script with torchrun, or unset WORLD_SIZE for a plain run"
        ) from None
    if not 0 <= rank < world:
        raise UserError(f"RANK {rank} is outside WORLD_SIZE {world}; start it with torchrun")
    return Dist(rank, local, world, True)


def _device(options, d: Dist) -> torch.device:
    """cuda:LOCAL_RANK when there are GPUs (or --device cuda), else the CPU."""
    if options.device is not None and resolve_device(options.device).type != "cuda":
        return resolve_device(options.device)
    if options.device is None and not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if d.local_rank >= count:
        raise UserError(
            f"process with LOCAL_RANK {d.local_rank} needs GPU {d.local_rank}, but {count} "
            f"are visible; use torchrun --nproc-per-node {count} or fewer"
        )
    device = torch.device("cuda", d.local_rank)
    torch.cuda.set_device(device)
    return device


def setup(options) -> tuple[Dist, torch.device]:
    """Join the process group (NCCL on CUDA, gloo on CPU) or stay a plain process.

    A process that cannot join within --dist-timeout seconds (wrong address, a process missing,
    another world size) stops with one line naming its rank and the address, instead of hanging.
    Processes other than rank 0 send their standard output to /dev/null.
    """
    d = from_env()
    if not d.enabled:
        if options.sync_bn:
            print("--sync-bn does nothing in a single process", flush=True)
        return d, resolve_device(options.device)
    device = _device(options, d)
    if options.sync_bn and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA GPUs (NCCL); leave it out on the CPU")
    address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=options.dist_timeout),
            device_id=device if device.type == "cuda" else None,
        )
        dist.barrier()  # NCCL connects lazily: make a missing process show here, not mid-epoch
    except (RuntimeError, ValueError, OSError) as err:
        detail = " ".join(str(err).split())[:160]
        raise UserError(
            f"process rank {d.rank} of {d.world} could not join the run at {address} within "
            f"{options.dist_timeout:g} s ({detail}); check that every machine runs the same torchrun "
            "command (--nnodes, --nproc-per-node) and reaches that address, or raise --dist-timeout"
        ) from None
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    return d, device


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True in a plain run and in rank 0: the one process that writes files and prints (the
    toolkit's only test of it)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def wrap(model: nn.Module, d: Dist, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """The model that trains: DistributedDataParallel over ``model`` (which stays the plain one).

    ``sync_bn`` turns its BatchNorm layers into SyncBatchNorm in place (same parameters and
    state-dict keys, so checkpoints stay plain); frozen partial-BN layers stay in eval mode.
    """
    if not d.enabled:
        return model
    if sync_bn:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the children; same model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def broadcast_buffers(model: nn.Module, d: Dist) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics) after a training epoch.

    DDP hands rank 0's buffers to the others at the start of each forward, but each process
    then updates them from its own batch: after the last step they differ. Evaluation shards
    the videos, so without this each rank would score its share with other statistics than the
    checkpoint (rank 0's) holds.
    """
    if d.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def no_sync(model: nn.Module, last_micro_step: bool):
    """For gradient accumulation: skip the gradient all-reduce on all but the last micro-step."""
    if last_micro_step or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def all_gather(obj) -> list:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` in a plain run."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_processes(stats: dict, keys) -> dict:
    """Average ``keys`` of per-process epoch statistics (processes see equally many videos)."""
    if not dist.is_initialized():
        return stats
    values = np.mean([[s[k] for k in keys] for s in all_gather(stats)], axis=0)
    return {**stats, **{k: float(v) for k, v in zip(keys, values, strict=True)}}


def gather_rows(indices, scores: list, labels: list, total: int) -> tuple[list, list]:
    """Each process's scored videos (``indices`` into the set; one score row and label each)
    -> all ``total`` rows and labels, in set order, in every process.

    Every video must be scored by exactly one process (engine.data.ShardSampler).
    """
    parts = all_gather((list(indices), [row.numpy() for row in scores], list(labels)))
    order = [i for part in parts for i in part[0]]
    if sorted(order) != list(range(total)):
        raise RuntimeError(f"{len(order)} scored videos for a set of {total}: a sampler bug")
    rows = {i: row for part in parts for i, row in zip(part[0], part[1], strict=True)}
    label = {i: y for part in parts for i, y in zip(part[0], part[2], strict=True)}
    return [torch.from_numpy(rows[i]) for i in range(total)], [label[i] for i in range(total)]
