"""The training rows of bench/gpu_check.py: each stream's model built as a run builds it
(bench.gpu_rows.stream_model: engine.config.make_options, engine.run.build_model) and trained
with the engine's own step (engine.loops.train_one_epoch: accumulation, clipping, GradScaler,
the parameter groups of engine.optim); the host syncs of an optimizer step; the epoch turnover
of the training loader (bench/turnover_bench.py).

The sync count on CUDA (``torch.cuda.set_sync_debug_mode``) and fp16 were written without a
GPU: untested until one is lent. The CPU dry run counts the calls that would sync a GPU.
"""

import os
import sys
import time
import warnings

from bench.gpu_rows import (
    CLASSES,
    SMALL,
    TOLERANCE,
    device_sync,
    result_row,
    skip_row,
    stream_model,
)

ACCUM = 2  # batches per optimizer step in the training rows: accumulation runs
# Calls that make the host wait for a CUDA device: what the CPU dry run counts.
HOST_READS = {"item", "tolist", "cpu", "numpy", "__int__", "__float__", "__bool__", "__index__"}


def count_syncs(device, work) -> int:
    """How often ``work()`` made the host wait for the device: on CUDA the synchronizing calls
    ``torch.cuda.set_sync_debug_mode("warn")`` reports (untested: written without a GPU); on the
    CPU the calls that would (HOST_READS), but the DataLoader's seed draw on a CPU generator."""
    import torch

    if device.type == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                work()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)
    calls = []

    class HostReads(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            caller = sys._getframe(1).f_code.co_filename.replace(os.sep, "/")
            if getattr(func, "__name__", "") in HOST_READS and "torch/utils/data" not in caller:
                calls.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with HostReads():
        work()
    return len(calls)


# A video transformer in the clip stream at the size its weights take (issue 34): a step costs
# ~7 s a CPU core, so the dry run names its row and skips it.
CLIP_TRANSFORMER = "swin3d_t"
TRANSFORMER = (CLIP_TRANSFORMER, (1, 3, 16, 224, 224), 2)


def _streams(dry: bool, compiled: bool):
    """(spec, arch, sample shape [K, C, ...], --batch-size) of each stream."""
    from engine.streams import CLIP, FLOW_CLIP, MOTION, SPATIAL

    if dry:  # dynamo traces ResNet-18 in 2 s, ShuffleNet's channel shuffles in 7
        small = "resnet18" if compiled else SMALL
        return [(SPATIAL, small, (2, 3, 16, 16), 2), (MOTION, small, (2, 4, 16, 16), 2),
                (CLIP, "mc3_18", (1, 3, 2, 16, 16), 2), (FLOW_CLIP, "mc3_18", (1, 2, 2, 16, 16), 2),
                (CLIP, *TRANSFORMER)]  # fmt: skip
    return [(SPATIAL, "resnet101", (3, 3, 224, 224), 32), (MOTION, "resnet101", (3, 20, 224, 224), 32),
            (CLIP, "r2plus1d_18", (1, 3, 16, 112, 112), 8),
            (FLOW_CLIP, "r2plus1d_18", (1, 2, 16, 112, 112), 8), (CLIP, *TRANSFORMER)]  # fmt: skip


def _skipped(device, dry: bool, compiled: bool, name: str, amp: str, arch: str) -> str | None:
    """Why a training row does not run here (None: it runs)."""
    if arch == CLIP_TRANSFORMER and dry:
        return "the dry run: a Swin3D-T step at 16 x 224 x 224 takes ~7 s a CPU core"
    if arch == CLIP_TRANSFORMER and compiled and amp != "none":
        return "compiled: fp32 only (compiling Swin3D-T takes minutes)"
    if amp == "fp16" and device.type != "cuda":
        return "fp16 needs CUDA"
    if dry and amp != "none" and (compiled or name != "spatial"):
        return "the dry run: bf16 of the spatial stream only"
    if dry and compiled and name != "spatial":  # the same compile call for every stream
        return "the dry run: the compiled spatial stream only"
    return None


def train_rows(device, dry, compiled: bool):
    """Training of each stream at each precision, with or without torch.compile: a row each
    (samples/s, loss, first logits against fp32's), and for eager ones a row of the host syncs
    per optimizer step (1; fp16's GradScaler adds its own)."""
    for spec, arch, shape, batch in _streams(dry, compiled):
        reference = None
        amps = [
            a
            for a in ("none", "bf16", "fp16")
            if not _skipped(device, dry, compiled, spec.name, a, arch)
        ]
        for amp in ("none", "bf16", "fp16"):
            setting = f"{spec.name} {arch} batch {batch} x {ACCUM} {amp}"
            setting += " compiled" if compiled else ""
            why = _skipped(device, dry, compiled, spec.name, amp, arch)
            if why:
                yield skip_row("train", setting, why)
                continue
            model, options = stream_model(spec, arch, shape[1], device, batch_size=batch,
                                          accum_steps=ACCUM, amp=amp, compile=compiled and not dry)  # fmt: skip
            if compiled and dry:  # the eager backend: inductor needs minutes on a CPU
                model.backbone.compile(backend="eager")
            compare = amp != "none" or len(amps) > 1  # the first logits, fp32's the reference
            rows, logits = _train(spec, model, options, shape, device, dry, reference, compare,
                                  count=not compiled)  # fmt: skip
            reference = logits if amp == "none" else reference
            yield from (dict(row, setting=setting) for row in rows)


def _train(spec, model, options, shape, device, dry: bool, reference, compare: bool, count: bool):
    """A training row and with ``count`` a syncs row: a warm-up step (not in the dry run), timed
    steps, one counted step; the logits of the first batch before any step (``compare``)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from engine.device import autocast
    from engine.loops import train_one_epoch
    from engine.optim import make_optimizer, make_scheduler
    from utils.errors import UserError

    amp, batch, steps = options.amp, options.batch_size, 1 if dry else 5
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch * ACCUM * steps, *shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, CLASSES, (len(x),), generator=g)
    logits = None
    if compare:
        with torch.no_grad(), autocast(device, amp):
            logits = model.train()(x[:batch].to(device)).float()
    optimizer = make_optimizer(model, options, spec.lr_mults)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    scheduler = make_scheduler(optimizer, options, steps + 2)

    def epoch(number: int, videos: int) -> dict:
        loader = DataLoader(TensorDataset(x[:videos], y[:videos]), batch_size=batch,
                            pin_memory=device.type == "cuda")  # fmt: skip
        return train_one_epoch(model, torch.nn.CrossEntropyLoss(), optimizer, scheduler, loader,
                               device, number, clip_grad=options.clip_grad, amp=amp,
                               scaler=scaler, accum_steps=ACCUM)  # fmt: skip

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        if not dry:
            epoch(1, batch * ACCUM)  # one step warms up (cuDNN autotuning, compilation)
        device_sync(device)
        start = time.perf_counter()
        stats = epoch(2, len(x))
        device_sync(device)
        seconds = time.perf_counter() - start
        syncs = count_syncs(device, lambda: epoch(3, batch * ACCUM)) if count else None
    except UserError as err:  # a non-finite loss stops training
        return [result_row("train", "", False, "failed", str(err))], logits
    note, ok = f"loss {stats['loss']:.3f}", True
    if amp != "none" and reference is not None:
        err = float((logits - reference).norm() / reference.norm().clamp_min(1e-12))
        ok = err <= TOLERANCE[amp]
        note += f", logits vs fp32 rel. err. {err:.2g} (<= {TOLERANCE[amp]})"
    if device.type == "cuda":
        note += f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
    unit = "clips/s" if spec.archs == "video" else "images/s"
    rows = [result_row("train", "", ok, f"{len(x) * shape[0] / seconds:.1f} {unit}", note)]
    if syncs is not None:
        expected = 1 + (amp == "fp16")  # GradScaler.step reads its inf check
        how = "set_sync_debug_mode" if device.type == "cuda" else "calls that would sync a GPU"
        rows.append(result_row("syncs", "", syncs <= expected, f"{syncs} per optimizer step",
                               f"{how}; at most {expected}"))  # fmt: skip
    return rows, logits


def turnover_rows(device, dry):
    """The wait between an epoch's last training batch and the next one's first, with loader
    workers restarted and kept up (bench/turnover_bench.py)."""
    from bench.turnover_bench import measure
    from engine.config import default_workers

    workers, epochs, videos = (1, 3, 12) if dry else (default_workers(), 4, 60)
    for mode, seconds in measure(workers, epochs, videos, device).items():
        yield result_row("turnover", f"workers {mode}, {workers} of them, spatial batches of 8",
                         True, f"{seconds * 1000:.0f} ms", "median over epochs")  # fmt: skip
