"""The rows of bench/gpu_check.py but training's (bench/gpu_train.py): each check a generator of
table rows (check, setting, ok, result, note), on ``device``; ``dry``: the CPU dry run's tiny
sizes. Where the assets that ``--prepare`` writes are missing, a check says so in its row or runs
on synthetic data. Models are built as a run builds them (``stream_model``). The CUDA paths
(NCCL, the torchrun launcher, bf16 on a GPU) were written without a GPU: untested until one is
lent.
"""

import contextlib
import io
import json
import os
import socket
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
CLASSES = 101
SMALL = "shufflenet_v2_x0_5"  # the dry run's 2-D arch (1.4 M parameters), mc3_18 its 3-D one


def device_sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def result_row(check, setting, ok, result, note=""):
    return dict(check=check, setting=setting, ok=ok, result=result, note=note)


def skip_row(check, setting, why):
    return result_row(check, setting, None, "skipped", why)


def stream_model(spec, arch: str, channels: int, device, **given):
    """The model (seed 0) and options of a run of ``spec``, built as engine.run builds them."""
    import torch

    from engine.config import make_options
    from engine.run import build_model, recognizer_config

    quiet = io.StringIO()  # the builder's line would break the table; partial BN's warning
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(quiet), \
            contextlib.redirect_stderr(quiet):  # fmt: skip
        options = make_options(spec, data_root=tmp, record_dir=tmp, arch=arch, pretrained="none",
                               dropout=0.0, partial_bn=True, **given)  # fmt: skip
        torch.manual_seed(0)
        config = recognizer_config(options, CLASSES, channels)
        return build_model(spec, options, config, None, device), options


def eval_row(device, dry, assets: Path):
    """One test video of 19 frames x 10 crops through the evaluation's per-video scoring."""
    import torch
    from torchvision.transforms.v2 import functional as F

    from engine.loops import video_score
    from engine.streams import SPATIAL

    frames_dir = assets / "frames"
    size, arch = (16, SMALL) if dry else (224, "resnet101")
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
    model = stream_model(SPATIAL, arch, 3, device)[0].eval()
    scores = {}
    with torch.inference_mode():
        for amp in ("none",) if dry else ("none", "bf16"):  # bf16 convolutions crawl on CPUs
            if not dry:  # warm-up: cuDNN autotuning
                video_score(model, crops, device, amp=amp, chunk=EVAL_FRAMES * 2)
            device_sync(device)
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
        device_sync(device)
        start = time.perf_counter()
        out = solver(p, n)
        device_sync(device)
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


def _torchrun(nproc: int, argv: list) -> tuple[int, str]:
    """spatial_cnn.py under the torchrun launcher: its exit status and the end of its stderr."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", str(ROOT / "spatial_cnn.py"), *argv]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    return done.returncode, done.stderr.strip()[-300:]


def _rank(env: dict, argv: list, stderr: Path) -> None:
    """One process of a forked run, in torchrun's environment; stdout dropped, stderr to a file."""
    import torch

    from engine.cli import main
    from engine.streams import SPATIAL
    from utils.errors import run_cli

    os.environ.update(env)
    torch.set_num_threads(1)
    os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (the process ends with the run)
    run_cli(lambda a: main(SPATIAL, a), argv)


def _forked(nproc: int, argv: list, folder: Path) -> tuple[int, str]:
    """The CPU dry run's ranks: processes forked from this one with torchrun's environment, so
    they pay no start-up of seconds each; the worst exit status and the end of their stderr."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(nproc):
        env = dict(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), MASTER_PORT=str(port),
                   LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1")  # fmt: skip
        err = folder / f"rank{rank}.err"
        procs.append(mp.get_context("fork").Process(target=_rank, args=(env, argv, err)))
        procs[-1].start()
    for proc in procs:
        proc.join(240)
        if proc.is_alive():
            proc.kill()
            proc.join()
    errors = " ".join((folder / f"rank{r}.err").read_text().strip() for r in range(nproc))
    return max(abs(p.exitcode or 0) for p in procs), errors[-300:]


def torchrun_rows(device):
    """Training (2 batches accumulated: DDP's no_sync) and its test under torchrun (two processes
    where there are two GPUs, and in the dry run; one on a single GPU), then the same checkpoint
    evaluated by this plain process."""
    import torch

    from bench.tiny_data import write_frame_dataset
    from engine.cli import main as stream_main
    from engine.streams import SPATIAL

    backend = "nccl" if device.type == "cuda" else "gloo"
    nproc = min(2, torch.cuda.device_count()) if device.type == "cuda" else 2
    if device.type != "cuda":  # what rank 0 and the plain process import late, imported once
        import matplotlib.backends.backend_agg  # noqa: F401  (the curves and reports)

        import utils.records  # noqa: F401  (TensorBoard)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_frame_dataset(Path(tmp) / "data")
        record = Path(tmp) / "record"
        common = ["--data-root", str(data), "--workers", "0", "--record-dir", str(record),
                  "--device", device.type]  # fmt: skip
        train = ["--arch", SMALL, "--pretrained", "none", "--crop-size", "32",
                 "--num-segments", "2", "--test-snippets", "2", "--batch-size", "2",
                 "--accum-steps", "2", "--epochs", "1", "--lr", "0.01", "--dropout", "0",
                 "--dist-timeout", "60"]  # fmt: skip
        start = time.perf_counter()
        if device.type == "cuda":  # forked children could not use CUDA: the launcher
            status, errors = _torchrun(nproc, common + train)
        else:
            status, errors = _forked(nproc, common + train, Path(tmp))
        setting = f"{backend}, {nproc} process{'es' if nproc > 1 else ''}: train 1 epoch + test"
        if status != 0:
            yield result_row("torchrun", setting, False, "failed", errors)
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
