"""TV-L1 speed, and agreement with ``quality`` of the ``fast`` preset and of the PyTorch TV-L1.

    python bench/flow_bench.py [--pairs 8] [--real PATH ... | --no-real]
                               [--torch-batch 8] [--batch-sizes 1 8 32 | --no-speed]

Frames go through the extraction code (PyAV decode, resize to short side 256, gray), so a
320x240 clip is measured at 340x256 as in the UCF101 layout. Speed is pairs per CPU-second
of this single process with one OpenCV thread: a per-core figure that a busy machine does not
distort. Agreement: mean absolute difference (pixels) and Pearson correlation of the fast flow
with the quality flow over all pixels and both components, both clipped to +-bound as stored.

The PyTorch TV-L1 (extraction/tvl1_torch.py, OpenCV's default settings, i.e. ``quality``) is
compared with ``quality`` the same way, on every clip and pooled over the real ones. Its speed
table runs the real pairs (repeated to fill a batch) on CPU with one thread and with all of
them, and on CUDA when there is one, at each ``--batch-sizes``; OpenCV ``quality`` with one
thread is the reference. Wall-clock pairs/s, and pairs per CPU-second for the CPU runs. On a
machine whose cores are busy with other work, run with OMP_WAIT_POLICY=PASSIVE: OpenMP threads
that spin-wait for a descheduled peer make the all-threads run 10x slower than one thread.

Clips: a synthetic one written here with PyAV (smooth random texture translating by (2, 1)
px/frame with a textured square moving (-3, 2) over it, so the true flow is known and the
end-point error against it is printed too), and real clips (by default the first clip of each
of three UCF101 classes in ../shared/data, when present), each alone and pooled.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
import torch

from extraction.decode import decode_video, find_videos, write_video
from extraction.settings import PRESETS
from extraction.tvl1 import make_tvl1, to_gray
from extraction.tvl1_torch import TorchTVL1
from utils.cli import Parser  # noqa: E402
from utils.cores import usable_cores
from utils.errors import UserError, run_cli

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BACKGROUND_STEP = (2, 1)
SQUARE_STEP = (-3, 2)
MAX_SYNTHETIC_PAIRS = 16  # the square stays inside a 340x256 frame


def texture(rng, height, width) -> np.ndarray:
    """Smooth random texture with detail at several scales, like a photographed surface."""
    image = np.zeros((height, width), np.float32)
    for cell in (2, 4, 8, 16, 32):
        small = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
        image += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)[:height, :width]
    image = (image - image.min()) / (image.max() - image.min())
    return (image * 255).astype(np.uint8)


def synthetic_frames(num_frames, width, height, seed=0):
    """RGB frames and the true flow [N-1, H, W, 2] of the synthetic clip."""
    rng = np.random.default_rng(seed)
    margin = 4 * num_frames
    big = texture(rng, height + 2 * margin, width + 2 * margin)
    patch_size = height // 3
    patch = 255 - texture(rng, patch_size, patch_size)
    frames, flows = [], []
    for i in range(num_frames):
        bx, by = (margin - s * i for s in BACKGROUND_STEP)
        frame = big[by : by + height, bx : bx + width].copy()
        px, py = width // 2 + SQUARE_STEP[0] * i, height // 3 + SQUARE_STEP[1] * i
        frame[py : py + patch_size, px : px + patch_size] = patch
        frames.append(np.repeat(frame[..., None], 3, axis=2))
        truth = np.empty((height, width, 2), np.float32)
        truth[:] = BACKGROUND_STEP
        truth[py : py + patch_size, px : px + patch_size] = SQUARE_STEP
        flows.append(truth)
    return frames, np.stack(flows[:-1])


def time_flow(grays, preset):
    """Flow of consecutive pairs and pairs per CPU-second (one thread)."""
    flow = make_tvl1(preset)
    flow(grays[0], grays[1])  # warm-up: allocations
    start = time.process_time()
    flows = np.stack([flow(a, b) for a, b in zip(grays[:-1], grays[1:], strict=True)])
    return flows, (len(grays) - 1) / (time.process_time() - start)


def time_torch(grays, batch_size):
    """PyTorch TV-L1 flow (OpenCV's default settings) of consecutive pairs, one CPU thread."""
    flow = TorchTVL1(device="cpu", batch_size=batch_size)
    start = time.process_time()
    flows = flow(np.stack(grays[:-1]), np.stack(grays[1:]))
    return flows, (len(grays) - 1) / (time.process_time() - start)


def measure(grays, torch_batch):
    """Flows and speeds of both presets and of the PyTorch TV-L1 on consecutive pairs."""
    flows, speeds = {}, {}
    for preset in ("quality", "fast"):
        flows[preset], speeds[preset] = time_flow(grays, preset)
    flows["torch"], speeds["torch"] = time_torch(grays, torch_batch)
    return flows, speeds


def agreement(quality, fast, bound) -> tuple[float, float]:
    """Mean absolute difference (px) and correlation of two flows, clipped to +-bound as stored."""
    q, f = np.clip(quality, -bound, bound), np.clip(fast, -bound, bound)
    return float(np.abs(q - f).mean()), float(np.corrcoef(q.ravel(), f.ravel())[0, 1])


def report(name, pairs, speeds, flows, bound, truth=None) -> str:
    """Lines for one clip (or a pool of clips): speed of each method, agreement, error vs truth."""
    rows = [f"{name} ({pairs})"]
    for method in ("quality", "fast", "torch"):
        row = f"  {method:8s} {speeds[method]:7.2f} pairs/s/core"
        if method != "quality":
            mad, corr = agreement(flows["quality"], flows[method], bound)
            row += f"   vs quality: MAD {mad:.3f} px, correlation {corr:.3f}"
        if truth is not None:
            error = np.linalg.norm(flows[method] - truth, axis=-1).mean()
            row += f"   end-point error vs truth {error:.3f} px"
        rows.append(row)
    return "\n".join(rows)


def speed_table(prev, nxt, batch_sizes, min_pairs) -> list[str]:
    """PyTorch TV-L1 pairs/s on CPU (1 and all threads) and CUDA, vs OpenCV quality (1 thread).

    Each run solves whole batches of the given pairs, repeated to fill them (at least
    ``min_pairs`` pairs); a first call per setting warms up allocations and kernels.
    """
    cores = usable_cores()
    flow = make_tvl1("quality")
    flow(prev[0], nxt[0])
    wall, cpu = time.perf_counter(), time.process_time()
    count = min(len(prev), max(2, min_pairs // 2))
    for a, b in zip(prev[:count], nxt[:count], strict=True):
        flow(a, b)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = [
        f"speed at {prev.shape[2]}x{prev.shape[1]}: backend, threads, batch size -> pairs/s (wall), "
        "pairs per CPU-second",
        f"  opencv quality  1 thread            {count / wall:7.2f} pairs/s  {count / cpu:7.2f} /CPU-s",
    ]
    settings = [("cpu", 1), ("cpu", cores)]
    if torch.cuda.is_available():
        settings.append(("cuda", None))
    threads_before = torch.get_num_threads()
    try:
        for device, threads in settings:
            if threads:
                torch.set_num_threads(threads)
            for batch in batch_sizes:
                total = -(-max(batch, min_pairs) // batch) * batch
                pick = np.arange(total) % len(prev)
                solver = TorchTVL1(device=device, batch_size=batch)
                solver(prev[pick[:batch]], nxt[pick[:batch]])  # warm-up
                if device == "cuda":
                    torch.cuda.synchronize()
                wall, cpu = time.perf_counter(), time.process_time()
                solver(prev[pick], nxt[pick])  # returns numpy: synchronised
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                label = f"torch {device:4s}  " + (
                    f"{threads} thread(s)" if threads else "GPU       "
                )
                per_cpu = f"  {total / cpu:7.2f} /CPU-s" if device == "cpu" else ""
                rows.append(f"  {label:28s} batch {batch:3d} {total / wall:7.2f} pairs/s{per_cpu}")
    finally:
        torch.set_num_threads(threads_before)
    return rows


def _pairs(grays) -> str:
    return f"{len(grays) - 1} pairs at {grays[0].shape[1]}x{grays[0].shape[0]}"


def default_real_clips(count=3) -> list[Path]:
    """The first clip of each of the first ``count`` UCF101 classes in ../shared/data."""
    clips = find_videos(SHARED_DATA / "ucf101") if SHARED_DATA.is_dir() else []
    firsts = {}
    for clip in clips:
        firsts.setdefault(clip.parent, clip)
    return list(firsts.values())[:count]


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=8, help="flow pairs measured per clip")
    parser.add_argument("--short-side", type=int, default=256, help="frames resized to this")
    parser.add_argument("--bound", type=float, default=20.0, help="clip flow to +-bound (px)")
    parser.add_argument(
        "--real",
        type=Path,
        nargs="+",
        default=None,
        help="real clips (default: the first clip of 3 UCF101 classes in ../shared/data)",
    )
    parser.add_argument("--no-real", action="store_true", help="measure the synthetic clip only")
    parser.add_argument(
        "--torch-batch", type=int, default=8, help="batch size of the PyTorch TV-L1 agreement runs"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 8, 32],
        help="batch sizes of the PyTorch TV-L1 speed table",
    )
    parser.add_argument(
        "--speed-pairs", type=int, default=8, help="pairs per speed-table run (at least one batch)"
    )
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        raise UserError(f"--pairs must be at least 1, got {args.pairs}")
    for name in ("torch_batch", "speed_pairs"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.batch_sizes) < 1:
        raise UserError(f"--batch-sizes must be at least 1, got {args.batch_sizes}")
    for path in args.real or []:
        if not path.is_file():
            raise UserError(f"--real {path} not found; give video files or --no-real")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)  # agreement runs: one thread, as OpenCV; the speed table sets its own
    print(
        f"TV-L1 presets (scale, DualTVL1 arguments): { {k: (v.scale, v.tvl1) for k, v in PRESETS.items()} }"
    )
    print(
        "speed: pairs per CPU-second, 1 process, cv2.setNumThreads(1); torch: PyTorch TV-L1 at "
        f"OpenCV's defaults, CPU, 1 thread, batch {args.torch_batch}"
    )

    num_frames = min(args.pairs, MAX_SYNTHETIC_PAIRS) + 1
    width = round(args.short_side * 4 / 3) // 2 * 2
    frames, truth = synthetic_frames(num_frames, width, args.short_side)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.avi"
        write_video(path, frames, bit_rate=8_000_000)
        grays = [to_gray(f) for f in decode_video(path, args.short_side).frames]
    flows, speeds = measure(grays, args.torch_batch)
    name = f"synthetic: texture moving {BACKGROUND_STEP}, square {SQUARE_STEP} px/frame"
    print(report(name, _pairs(grays), speeds, flows, args.bound, truth))

    real = [] if args.no_real else (args.real or default_real_clips())
    if not real:
        print("real clips: none (../shared/data absent; give --real PATH)")
        if not args.no_speed:
            prev, nxt = np.stack(grays[:-1]), np.stack(grays[1:])
            print("\n".join(speed_table(prev, nxt, args.batch_sizes, args.speed_pairs)))
        return 0
    pooled = {"quality": [], "fast": [], "torch": []}
    seconds = {"quality": 0.0, "fast": 0.0, "torch": 0.0}
    real_grays = []
    for path in real:
        grays = [to_gray(f) for f in decode_video(path, args.short_side, args.pairs + 1).frames]
        if len(grays) < 2:
            raise UserError(f"{path} has fewer than 2 frames; give another --real clip")
        real_grays.append(grays)
        flows, speeds = measure(grays, args.torch_batch)
        for preset in pooled:
            pooled[preset].append(flows[preset])
            seconds[preset] += len(flows[preset]) / speeds[preset]
        print(report(f"real: {path}", _pairs(grays), speeds, flows, args.bound))
    if len(real) > 1:
        flows = {k: np.concatenate(v) for k, v in pooled.items()}
        speeds = {k: len(flows[k]) / seconds[k] for k in flows}
        pairs = f"{len(flows['fast'])} pairs of {len(real)} clips"
        print(report("real clips pooled", pairs, speeds, flows, args.bound))
    if not args.no_speed:
        prev = np.concatenate([np.stack(grays[:-1]) for grays in real_grays])
        nxt = np.concatenate([np.stack(grays[1:]) for grays in real_grays])
        print("\n".join(speed_table(prev, nxt, args.batch_sizes, args.speed_pairs)))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
