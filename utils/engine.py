"""The training engine both streams share: one training epoch and one video-level evaluation.

Training follows TSN: the K snippets of each video go through the network as one [B*K, C, H, W]
batch and their logits are averaged per video before the loss. Evaluation scores a video by the
mean of its frames' (or stacks') logits, as the two-stream paper does.
"""

import contextlib
import math
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from utils.errors import UserError
from utils.metrics import accuracy_report, topk_correct


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


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loader,
    device: torch.device,
    epoch: int,
    *,
    clip_grad: float = 40.0,
    amp: str = "none",
    scaler: torch.amp.GradScaler | None = None,
) -> dict:
    """Train for one pass over ``loader``; step the scheduler every iteration.

    Batches are ([B, K, C, H, W], [B]). Returns the epoch's mean loss, video top-1/top-5 (%),
    the learning rate of the last step and the seconds taken. A non-finite loss raises UserError before the
    step that would spread it into the weights.
    """
    model.train()
    start = time.perf_counter()
    loss_sum, seen, correct1, correct5 = 0.0, 0, 0, 0
    progress = tqdm(loader, desc=f"epoch {epoch} train", leave=False, dynamic_ncols=True)
    for step, (clips, labels) in enumerate(progress, start=1):
        batch, segments = clips.shape[:2]
        clips = _to_device(clips.flatten(0, 1), device)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(clips).view(batch, segments, -1).mean(dim=1)
            loss = criterion(logits.float(), labels)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise UserError(
                f"training loss became {loss_value} at epoch {epoch}, step {step}; stopped, "
                "the last good checkpoint is kept: resume from it with a lower --lr"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip_grad > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        lr = _lr(optimizer)  # the rate this step used; the scheduler now moves on
        scheduler.step()

        top1, top5 = topk_correct(logits.detach(), labels, (1, 5))
        loss_sum += loss_value * batch
        seen += batch
        correct1 += top1
        correct5 += top5
        progress.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{lr:.2e}")
    progress.close()
    if seen == 0:
        raise UserError("the training set is empty; check the split files")
    return {
        "loss": loss_sum / seen,
        "top1": 100.0 * correct1 / seen,
        "top5": 100.0 * correct5 / seen,
        "lr": lr,
        "seconds": time.perf_counter() - start,
    }


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    *,
    softmax_average: bool = False,
    chunk: int = 0,
    amp: str = "none",
    desc: str = "test",
) -> tuple[np.ndarray, dict]:
    """Score every video of ``loader`` (batch_size=1: items are ([N, C, H, W], label)).

    A video's N frames or stacks go through the network in chunks of ``chunk`` (0: all at
    once); its score is the mean of their logits, or of their softmax with ``softmax_average``.
    Returns the float32 [videos, classes] scores and the loss, top-1, top-5 and mean class
    accuracy (%) with the seconds taken.
    """
    model.eval()
    start = time.perf_counter()
    scores, labels = [], []
    for clips, label in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        clips = clips.squeeze(0) if clips.dim() == 5 else clips
        parts = clips.split(chunk) if chunk > 0 else (clips,)
        outputs = []
        for part in parts:
            with autocast(device, amp):
                out = model(_to_device(part, device)).float()
            outputs.append(out.softmax(dim=1) if softmax_average else out)
        scores.append(torch.cat(outputs).mean(dim=0).cpu())
        labels.append(int(label))
    if not scores:
        raise UserError("the evaluation set is empty; check the split files")
    scores = torch.stack(scores)
    targets = torch.tensor(labels)
    if softmax_average:
        loss = nn.functional.nll_loss(scores.clamp_min(1e-12).log(), targets)
    else:
        loss = nn.functional.cross_entropy(scores, targets)
    scores = scores.numpy().astype(np.float32)
    metrics = accuracy_report(scores, targets.numpy())
    metrics["loss"] = float(loss)
    metrics["seconds"] = time.perf_counter() - start
    return scores, metrics
