"""One training epoch and one video-level evaluation, for any recognizer.

The model owns how a video's snippets become one score (network.recognizer): training batches
are ``[B, K, ...]`` and go through it whole; a test video is ``[crops, N, ...]``, one sequence of
N snippets per crop, and its score is the mean over crops of the model's output.
"""

import math
import time

import numpy as np
import torch
from torch import nn

from engine.config import OptimOptions
from engine.device import autocast
from engine.distributed import gather_rows, is_main, no_sync
from utils.errors import UserError
from utils.faults import fault_point
from utils.metrics import accuracy_report, topk_hits
from utils.progress import progress as progress_bar


def _step(model, optimizer, scheduler, scaler, clip_grad: float) -> float:
    """One optimizer and scheduler step on the accumulated gradients (clipped, unscaled under
    fp16); the base learning rate the step used (group 0 may carry a multiplier)."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if clip_grad > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    head = optimizer.param_groups[0]
    lr = float(head["lr"]) / head.get("lr_mult", 1.0)
    scheduler.step()
    return lr


def batch_sizes(loader) -> list[int]:
    """Videos in each batch of an epoch of ``loader`` (the last one may be short)."""
    batches, size = len(loader), loader.batch_size
    if loader.drop_last:
        return [size] * batches
    return [size] * (batches - 1) + [len(loader.sampler) - (batches - 1) * size]


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loader,
    device: torch.device,
    epoch: int,
    *,
    clip_grad: float = OptimOptions.clip_grad,
    amp: str = "none",
    scaler: torch.amp.GradScaler | None = None,
    accum_steps: int = 1,
) -> dict:
    """Train for one pass over ``loader``; step the optimizer and scheduler every
    ``accum_steps`` batches (gradient accumulation: an effective batch of batch x accum_steps
    on the memory of one batch). The loss of a step is the mean over the videos of its batches,
    so every video weighs the same, those of a last short group too (32, 32 and 1 video: the
    mean over 65). ``criterion``: a mean over its batch (CrossEntropyLoss).

    One host sync per optimizer step: loss and top-k counts add up on the device and are read
    once, before the step; a non-finite loss then raises UserError, so it never reaches the
    weights. Returns the epoch's mean loss, video top-1/top-5 (%), the learning rate of the
    last step and the seconds taken.
    """
    model.train()
    start = time.perf_counter()
    accum_steps = max(1, accum_steps)
    sizes = batch_sizes(loader) if accum_steps > 1 else None  # else a step is its batch
    totals = [0.0, 0.0, 0.0]  # loss x videos, top-1 hits, top-5 hits: read at each step
    seen = 0
    lr = float(optimizer.param_groups[0]["lr"])
    bar = progress_bar(loader, desc=f"epoch {epoch} train", show=is_main())
    for index, (clips, labels) in enumerate(bar):
        begin = index - index % accum_steps  # the step's first batch
        end = min(begin + accum_steps, len(loader))
        last = index == end - 1
        batch = clips.shape[0]
        videos = sum(sizes[begin:end]) if sizes else batch  # in the step
        clips = clips.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with no_sync(model, last):  # DDP: all-reduce the gradients once per optimizer step
            with autocast(device, amp):
                logits = model(clips)
                loss = criterion(logits.float(), labels)
            if index == begin:
                optimizer.zero_grad(set_to_none=True)
                step_sums = torch.zeros(3, device=device)
            scaled = loss * (batch / videos) if batch != videos else loss  # its share
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        hits = topk_hits(logits.detach(), labels, (1, 5))
        step_sums += torch.cat([(loss.detach() * batch).view(1), hits])
        seen += batch
        if last:
            step = step_sums.tolist()  # the step's one host sync
            if not math.isfinite(step[0]):
                raise UserError(
                    f"training loss became {step[0] / videos} at epoch {epoch}, "
                    f"step {index // accum_steps + 1}; stopped, the last good checkpoint is "
                    "kept: resume from it with a lower --lr"
                )
            lr = _step(model, optimizer, scheduler, scaler, clip_grad)
            totals = [t + v for t, v in zip(totals, step, strict=True)]
            bar.set_postfix(loss=f"{totals[0] / seen:.4f}", lr=f"{lr:.2e}")
        fault_point("train.step")
    bar.close()
    if seen == 0:
        raise UserError("the training set is empty; check the split files")
    return {
        "loss": totals[0] / seen,
        "top1": 100.0 * totals[1] / seen,
        "top5": 100.0 * totals[2] / seen,
        "lr": lr,
        "seconds": time.perf_counter() - start,
    }


@torch.inference_mode()
def video_score(
    model: nn.Module,
    clips: torch.Tensor,
    device: torch.device,
    *,
    softmax_average: bool = False,
    chunk: int = 0,
    amp: str = "none",
) -> torch.Tensor:
    """One test video ``[crops, N, ...]`` -> its [classes] score on the CPU (mean over crops).

    ``chunk`` bounds how many snippets go through the backbone at once (0: all);
    ``softmax_average`` averages probabilities instead of logits.
    """
    with autocast(device, amp):
        out = model(clips.to(device, non_blocking=True), chunk=chunk, probabilities=softmax_average)
    return out.float().mean(dim=0).cpu()


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
    progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """Score every video of ``loader`` (batches of one test video, ``[1, crops, N, ...]``).

    Returns the float32 [videos, classes] scores and the loss, top-1, top-5 and mean class
    accuracy (%) with the seconds taken. In a distributed run each process scores its share of
    the videos (the sampler's ``shard_indices``) and every process gets all scores, in set order.
    """
    model.eval()
    start = time.perf_counter()
    scores, labels = [], []
    for clips, label in progress_bar(loader, desc=desc, show=progress and is_main()):
        score = video_score(
            model, clips[0], device, softmax_average=softmax_average, chunk=chunk, amp=amp
        )
        scores.append(score)
        labels.append(int(label))
        fault_point("evaluate.video")
    shard = getattr(getattr(loader, "sampler", None), "shard_indices", None)
    if shard is not None:  # a distributed run's share (engine.data.ShardSampler): gather all
        scores, labels = gather_rows(shard, scores, labels, len(loader.dataset))
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
