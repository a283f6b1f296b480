"""The optimizer and its schedule: TSN's parameter groups (first conv, weights, biases, norm
layers, the head) with their learning-rate and weight-decay multipliers, and the learning-rate
schedule per optimizer step.
"""

import math

import torch
from torch import nn


def lr_lambda(options, iters_per_epoch: int):
    """Learning-rate multiplier per iteration: optional linear warm-up, then step or cosine."""
    warmup = options.warmup_epochs * iters_per_epoch
    total = options.epochs * iters_per_epoch

    def factor(it: int) -> float:
        if it < warmup:
            return (it + 1) / warmup
        if options.lr_schedule == "cosine":
            t = (it - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
        epoch = it // iters_per_epoch
        return options.lr_gamma ** sum(epoch >= s for s in options.lr_steps)

    return factor


def make_scheduler(optimizer, options, steps_per_epoch: int, done_steps: int = 0):
    """The learning rate per optimizer step (``lr_lambda``), standing after ``done_steps`` steps:
    a resumed run's schedule is rebuilt at its position, never loaded."""
    factor = lr_lambda(options, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=done_steps - 1)


def steps_per_epoch(batches: int, accum_steps: int) -> int:
    """Optimizer steps in an epoch of ``batches`` batches (a last short group still steps)."""
    return max(1, math.ceil(batches / max(1, accum_steps)))


# Parameter groups in optimizer order, with TSN's weight-decay multipliers (tsn-pytorch
# get_optim_policies): decay on conv/linear weights only, none on biases and norm layers. The
# head's weights and biases are groups of their own, so --head-lr-mult can speed them up.
PARAM_GROUPS = {
    "weight": 1.0,
    "first_conv": 1.0,
    "bias": 0.0,
    "norm": 0.0,
    "head_weight": 1.0,
    "head_bias": 0.0,
}
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(model: nn.Module) -> dict[str, list]:
    """Trainable parameters by PARAM_GROUPS name: the first conv's weight, other weights,
    biases, norm layers' scale and shift, and the head's weights and biases."""
    groups = {name: [] for name in PARAM_GROUPS}
    first_conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    head = {id(p) for p in model.head.parameters()} if hasattr(model, "head") else set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if id(p) in head:
                groups["head_weight" if p.ndim > 1 else "head_bias"].append(p)
            elif isinstance(module, _NORMS):
                groups["norm"].append(p)
            elif module is first_conv and name == "weight":
                groups["first_conv"].append(p)
            elif p.ndim > 1:
                groups["weight"].append(p)
            else:
                groups["bias"].append(p)
    return groups


def group_lr_mults(lr_mults: dict, head_lr_mult: float) -> dict[str, float]:
    """Each group's multiplier of --lr: the stream spec's, and the head's times --head-lr-mult
    (a head weight learns like a weight, a head bias like a bias, then faster)."""
    mults = {
        name: float(lr_mults.get(name, 1.0)) for name in ("weight", "first_conv", "bias", "norm")
    }
    mults["head_weight"] = mults["weight"] * head_lr_mult
    mults["head_bias"] = mults["bias"] * head_lr_mult
    return mults


def make_optimizer(model: nn.Module, options, lr_mults: dict | None = None) -> torch.optim.SGD:
    """SGD with one group per PARAM_GROUPS entry, each at ``options.lr`` x its multiplier (a stream
    spec's ``lr_mults``, and ``--head-lr-mult`` for the head) and ``options.weight_decay`` x its
    decay multiplier. Empty groups are kept, so every run has the same group layout.

    Each group keeps its ``lr_mult`` and ``decay_mult`` (what the learning rate was made of).
    """
    lr_mults = lr_mults or {}
    unknown = set(lr_mults) - set(PARAM_GROUPS)
    if unknown:
        raise ValueError(f"unknown parameter groups {sorted(unknown)}; use {list(PARAM_GROUPS)}")
    mults = group_lr_mults(lr_mults, float(options.head_lr_mult))
    groups = [
        {
            "params": params,
            "name": name,
            "lr_mult": mults[name],
            "decay_mult": PARAM_GROUPS[name],
            "lr": options.lr * mults[name],
            "initial_lr": options.lr * mults[name],  # the schedule's base (make_scheduler)
            "weight_decay": options.weight_decay * PARAM_GROUPS[name],
        }
        for name, params in parameter_groups(model).items()
    ]
    return torch.optim.SGD(groups, lr=options.lr, momentum=options.momentum)
