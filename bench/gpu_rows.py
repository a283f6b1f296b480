"""The rows of bench/gpu_check.py: each check a generator of table rows (check, setting, ok,
result, note), on ``device``; ``dry``: the CPU dry run's tiny sizes. Where the assets that
``--prepare`` writes are missing, a check says so in its row or runs on synthetic data."""

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# bf16/fp16 logits of the first training step against fp32's on the same batch and weights:
# relative L2 error (|a - b| / |b|) at most this. bf16 keeps 8 mantissa bits, fp16 11.
TOLERANCE = {"bf16": 0.05, "fp16": 0.01}
FLOW_SIZE = (256, 340)  # H, W of UCF101 frames in the layout
EVAL_FRAMES = 19  # frames of the evaluation's test video


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def result_row(check, setting, ok, result, note=""):
    return dict(check=check, setting=setting, ok=ok, result=result, note=note)


def skip_row(check, setting, why):
    return result_row(check, setting, None, "skipped", why)


def train_rows(device, dry, compiled: bool):
    """Training steps of each stream at each precision, with or without torch.compile."""
    import torch

    from engine.device import autocast
    from network.recognizer import build_model

    batch, steps = (2, 2) if dry else (32, 6)
    streams = [  # name, arch, input channels, sample shape [K, C, ...]
        ("spatial", "resnet18" if dry else "resnet101", 3, (2, 3, 16, 16) if dry else (3, 3, 224, 224)),
        ("motion", "resnet18" if dry else "resnet101", 20, (2, 20, 16, 16) if dry else (3, 20, 224, 224)),
        ("clip", "r2plus1d_18", 3, (1, 3, 2, 16, 16) if dry else (1, 3, 16, 112, 112)),
    ]  # fmt: skip
    for name, arch, channels, shape in streams:
        b = batch if name != "clip" or dry else 8  # the clip stream's --batch-size
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (b, *shape), dtype=torch.uint8, generator=g).to(device)
        y = torch.randint(0, 101, (b,), generator=g).to(device)
        reference = None
        torch.manual_seed(0)
        initial = build_model(arch, 101, channels, dropout=0.0, partial_bn=True)
        for amp in ("none", "bf16", "fp16"):
            setting = f"{name} {arch} batch {b} {amp}{' compiled' if compiled else ''}"
            if amp == "fp16" and device.type != "cuda":
                yield skip_row("train", setting, "fp16 needs CUDA")
                continue
            if dry and amp != "none" and (compiled or name != "spatial"):
                yield skip_row("train", setting, "the dry run: bf16 of the spatial stream only")
                continue
            if dry and compiled and name != "spatial":  # the same compile call for every stream
                yield skip_row("train", setting, "the dry run: the compiled spatial stream only")
                continue
            model = copy.deepcopy(initial).to(device)
            if device.type == "cuda":
                model.to_channels_last()
            if compiled:  # the eager backend in the dry run: inductor needs minutes on a CPU
                model.backbone.compile(**({"backend": "eager"} if dry else {}))
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            losses, start = [], 0.0
            for step in range(steps):
                if step == 1:  # step 0 warms up (cuDNN autotuning, compilation)
                    _sync(device)
                    start = time.perf_counter()
                with autocast(device, amp):
                    logits = model(x)
                    loss = torch.nn.functional.cross_entropy(logits.float(), y)
                if step == 0:
                    first = logits.detach().float()
                    reference = first if amp == "none" else reference
                opt.zero_grad(set_to_none=True)
                (scaler.scale(loss) if scaler else loss).backward()
                if scaler:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                losses.append(float(loss.detach()))
            _sync(device)
            rate = b * shape[0] * (steps - 1) / (time.perf_counter() - start)
            finite = bool(np.isfinite(losses).all())
            note = f"loss {losses[-1]:.3f}"
            ok = finite
            if amp != "none" and reference is not None:
                err = float((first - reference).norm() / reference.norm().clamp_min(1e-12))
                ok = ok and err <= TOLERANCE[amp]
                note += f", logits vs fp32 rel. err. {err:.2g} (<= {TOLERANCE[amp]})"
            if device.type == "cuda":
                note += f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
            unit = "clips/s" if name == "clip" else "images/s"
            yield result_row("train", setting, ok, f"{rate:.1f} {unit}", note)
            del model, opt
        del initial


def eval_row(device, dry, assets: Path):
    """One test video of 19 frames x 10 crops through the evaluation's per-video scoring."""
    import torch
    from torchvision.transforms.v2 import functional as F

    from engine.loops import video_score
    from network.recognizer import build_model

    frames_dir = assets / "frames"
    size, arch = (16, "resnet18") if dry else (224, "resnet101")
    if frames_dir.is_dir() and len(list(frames_dir.glob("*.jpg"))) >= EVAL_FRAMES:
        from torchvision.io import decode_jpeg, read_file

        paths = sorted(frames_dir.glob("*.jpg"))[:EVAL_FRAMES]
        video = torch.stack([decode_jpeg(read_file(str(p))) for p in paths])  # [N, 3, H, W]
        source = f"real frames of {assets.name}"
    else:
        video = torch.randint(0, 256, (EVAL_FRAMES, 3, 256, 340), dtype=torch.uint8)
        source = "random frames (no assets prepared)"
    if dry:
        video = F.resize(video, [24, 32])
    crops = torch.stack(F.ten_crop(video, [size, size]))  # [10, N, 3, size, size]
    model = build_model(arch, 101, 3, dropout=0.0).to(device).eval()
    if device.type == "cuda":
        model.to_channels_last()
    scores = {}
    with torch.inference_mode():
        for amp in ("none",) if dry else ("none", "bf16"):  # bf16 convolutions crawl on CPUs
            if not dry:  # warm-up: cuDNN autotuning
                video_score(model, crops, device, amp=amp, chunk=EVAL_FRAMES * 2)
            _sync(device)
            start = time.perf_counter()
            scores[amp] = video_score(model, crops, device, amp=amp, chunk=EVAL_FRAMES * 2)
            seconds = time.perf_counter() - start
            yield_ok = bool(torch.isfinite(scores[amp]).all())
            note = source
            if amp == "bf16":
                ref = scores["none"]
                err = float((scores[amp] - ref).norm() / ref.norm().clamp_min(1e-12))
                yield_ok = yield_ok and err <= TOLERANCE["bf16"]
                note += f", scores vs fp32 rel. err. {err:.2g}"
            yield result_row(
                "evaluate",
                f"1 video, {EVAL_FRAMES} frames x 10 crops, {arch} {amp}",
                yield_ok,
                f"{EVAL_FRAMES * 10 / seconds:.1f} images/s",
                note,
            )


def _synthetic_pair(h, w):
    """A smooth random texture and the same moved by (2, 1) px (x, y): known flow."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2))
    big = np.kron(coarse, np.ones((8, 8)))
    kernel = np.ones(5) / 5
    for axis in (0, 1):
        big = np.apply_along_axis(np.convolve, axis, big, kernel, mode="same")
    prev = big[4 : 4 + h, 4 : 4 + w]
    nxt = big[3 : 3 + h, 2 : 2 + w]  # content moves right 2, down 1
    truth = np.broadcast_to(np.float32([2, 1]), (1, h, w, 2))
    return prev[None].astype(np.uint8), nxt[None].astype(np.uint8), truth


def tvl1_rows(device, dry, assets: Path):
    """PyTorch TV-L1 speed per batch size and agreement with OpenCV's TV-L1 flow."""
    from extraction.tvl1_torch import TorchTVL1

    pairs = assets / "pairs.npz"
    if pairs.is_file():
        with np.load(pairs) as f:
            prev, nxt, ref = f["prev"], f["next"], f["flow"]
        source = f"OpenCV TV-L1 on {len(prev)} real pairs"
    else:
        prev, nxt, ref = _synthetic_pair(*FLOW_SIZE)
        source = "true flow of synthetic motion (no assets prepared)"
    params = dict(nscales=2, warps=1, inner_iterations=5, outer_iterations=2) if dry else {}
    if dry:
        prev, nxt, ref = prev[:2, :48, :64], nxt[:2, :48, :64], ref[:2, :48, :64]
    flow = TorchTVL1(device, batch_size=len(prev), **params)(prev, nxt)
    bound = 20.0
    a, b = np.clip(flow, -bound, bound).ravel(), np.clip(ref, -bound, bound).ravel()
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    epe = float(np.linalg.norm(flow - ref, axis=-1).mean())
    ok = bool(np.isfinite(flow).all()) and (dry or corr >= 0.9)
    size = f"{prev.shape[2]}x{prev.shape[1]}"
    if dry:
        source += " (dry run: a corner, a cut-down solver: not a measure of agreement)"
    yield result_row(
        "tvl1", f"agreement at {size}", ok, f"r = {corr:.3f}", f"{source}, EPE {epe:.2f} px"
    )
    for batch in (1, 2) if dry else (1, 8, 32, 64):
        reps = -(-batch // len(prev))
        p, n = np.concatenate([prev] * reps)[:batch], np.concatenate([nxt] * reps)[:batch]
        solver = TorchTVL1(device, batch_size=batch, **params)
        _sync(device)
        start = time.perf_counter()
        out = solver(p, n)
        _sync(device)
        rate = batch / (time.perf_counter() - start)
        yield result_row(
            "tvl1", f"batch {batch} at {size}", bool(np.isfinite(out).all()), f"{rate:.2f} pairs/s"
        )


def extraction_row(device, dry, assets: Path):
    """The extraction tool with --method torch on the device, end to end on real clips."""
    setting = f"tools/extract_frames_flow.py --method torch --device {device.type}"
    clips = assets / "clips"
    if not clips.is_dir():
        return skip_row("extract", setting, f"no clips in {clips}: run --prepare first")
    try:
        import av  # noqa: F401  (only asked whether it is there)
    except ImportError:
        return skip_row("extract", setting, "no PyAV on this machine (the tool decodes with it)")
    with tempfile.TemporaryDirectory() as tmp:
        size = ["--short-side", "64", "--max-frames", "6"] if dry else ["--max-frames", "48"]
        argv = [sys.executable, str(ROOT / "tools" / "extract_frames_flow.py"), "--videos",
                str(clips), "--out", tmp, "--method", "torch", "--device", device.type,
                "--workers", "1", *size]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=240)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            return result_row("extract", setting, False, "failed", done.stderr.strip()[-300:])
        index = json.loads((Path(tmp) / "index.json").read_text())
        frames = sum(v["frames"] for v in index["videos"].values())
        videos = len(index["videos"])
    return result_row(
        "extract",
        setting,
        videos == len(list(clips.iterdir())),
        f"{videos / seconds:.2f} videos/s, {frames / seconds:.1f} frames/s",
        f"{videos} clips, {frames} frames, start-up included",
    )


def _torchrun(nproc: int, argv: list) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", str(ROOT / "spatial_cnn.py"), *argv]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)


def torchrun_rows(device):
    """Training and its test under torchrun (two processes where there are two GPUs, and in the
    dry run; one on a single GPU), then the same checkpoint evaluated by this plain process."""
    import torch

    from bench.tiny_data import write_frame_dataset
    from engine.cli import main as stream_main
    from engine.streams import SPATIAL

    backend = "nccl" if device.type == "cuda" else "gloo"
    gpus = torch.cuda.device_count() if device.type == "cuda" else 2
    nproc = min(2, gpus)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_frame_dataset(Path(tmp) / "data")
        record = Path(tmp) / "record"
        common = ["--data-root", str(data), "--workers", "0", "--record-dir", str(record),
                  "--device", device.type]  # fmt: skip
        train = ["--arch", "resnet18", "--pretrained", "none", "--crop-size", "32",
                 "--num-segments", "2", "--test-snippets", "3", "--batch-size", "3",
                 "--epochs", "1", "--lr", "0.01", "--dropout", "0", "--dist-timeout", "60"]  # fmt: skip
        start = time.perf_counter()
        done = _torchrun(nproc, common + train)
        setting = f"{backend}, {nproc} process{'es' if nproc > 1 else ''}: train 1 epoch + test"
        if done.returncode != 0:
            yield result_row("torchrun", setting, False, "failed", done.stderr.strip()[-300:])
            return
        with np.load(record / "video_scores.npz") as f:
            launched = f["scores"]
        seconds = time.perf_counter() - start
        yield result_row(
            "torchrun", setting, True, f"{seconds:.1f} s", f"{len(launched)} test videos"
        )
        out = Path(tmp) / "plain.npz"
        ckpt = str(record / "checkpoint.pth.tar")
        with contextlib.redirect_stdout(io.StringIO()):  # its lines would break the table
            stream_main(
                SPATIAL, common + ["--evaluate", "--resume", ckpt, "--scores-out", str(out)]
            )
        with np.load(out) as f:
            diff = float(np.abs(f["scores"] - launched).max())
        note = f"max |torchrun - plain process| = {diff:.2g} (<= 1e-4)"
        setting = f"{backend}: the checkpoint's --evaluate in one plain process"
        yield result_row("torchrun", setting, diff <= 1e-4, f"{len(launched)} videos", note)
