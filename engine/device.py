"""Which device a run uses and its mixed-precision context."""

import contextlib

import torch

from utils.errors import UserError


def resolve_device(name: str | None) -> torch.device:
    """--device, or CUDA when there is a GPU; a clear error for an unusable one."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"unknown --device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but no CUDA GPU is visible; use --device cpu")
    return device


def autocast(device: torch.device, amp: str):
    """Mixed precision context: 'bf16' or 'fp16' autocast, or nothing for 'none'."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
