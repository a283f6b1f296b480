"""Small real datasets for tests: JPEG frames and flow in the preprocessed layout, with split files."""

import socket
from pathlib import Path

import cv2
import numpy as np

from bench.tiny_data import write_frame_dataset as write_frame_dataset  # the tests' dataset
from dataloader.layout import Layout
from dataloader.splits import Video

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Tests of the plumbing (resume, checkpoints, errors, processes) need no ResNet: ShuffleNet v2
# x0.5 has 1.4 M parameters, and its checkpoints are 30x smaller than ResNet-18's.
SMALL_ARCH = "shufflenet_v2_x0_5"


def write_coded_video(root, name, num_frames, layout=Layout(), size=(40, 32)):
    """A video whose frame i is a flat image of value 8*i (RGB), 8*i+4 (x-flow), 250-8*i (y-flow)."""
    w, h = size
    folders = {
        "rgb": (root / layout.rgb_dir / name, layout.rgb_pattern, lambda i: 8 * i),
        "x": (root / layout.flow_x_dir / name, layout.flow_x_pattern, lambda i: 8 * i + 4),
        "y": (root / layout.flow_y_dir / name, layout.flow_y_pattern, lambda i: 250 - 8 * i),
    }
    for kind, (folder, pattern, value) in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(num_frames if kind == "rgb" else num_frames - 1):
            channels = 3 if kind == "rgb" else 1
            img = np.full((h, w, channels), value(i), np.uint8)
            cv2.imwrite(str(folder / (pattern % (i + 1))), img)
    return Video(name, 0)


def compute_flow(frames, *, preset: str = "fast", bound: float = 20.0):
    """Flow of a whole clip in memory, as the extraction tool maps it: ``(u, v)``, each uint8
    [N-1, H, W], from N frames (RGB or gray)."""
    from extraction.tvl1 import flow_to_uint8, make_tvl1, to_gray

    flow = make_tvl1(preset)
    grays = [to_gray(np.asarray(frame)) for frame in frames]
    pairs = [flow(grays[i], grays[i + 1]) for i in range(len(grays) - 1)]
    height, width = grays[0].shape if grays else (0, 0)
    u = np.zeros((len(pairs), height, width), np.uint8)
    v = u.copy()
    for i, f in enumerate(pairs):
        u[i], v[i] = flow_to_uint8(f[..., 0], bound), flow_to_uint8(f[..., 1], bound)
    return u, v


def uint8_to_flow(quantised, bound: float = 20.0) -> np.ndarray:
    """The inverse of ``extraction.tvl1.flow_to_uint8`` (up to quantisation): uint8 ->
    float32 flow in pixels."""
    return (np.asarray(quantised, dtype=np.float32) - 128.0) * (bound / 127.5)


def sample_in_memory(stream, frames, settings, device="cpu"):
    """The test sample ``[crops, N, C, S, S]`` of a stream (engine.inference.StreamModel) for a
    video in memory, its flow computed as tools/predict.py computes it."""
    from engine.inference import memory_reader

    builder = stream.sample_builder()
    read, count = memory_reader(frames, builder.modality, settings, str(device))
    return builder(read, count, train=False)


def single_thread():
    """Two OpenMP threads on a busy 2-core machine are many times slower than one: run a test
    module on one, and give the old setting back after it. Use as
    ``one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)``.

    OpenCV's pool goes down to one thread too: a process forked from this one (a fault test's
    child) would hang in OpenCV if the pool had threads (dataloader.datasets.before_workers)."""
    import torch

    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv2_threads)


def extract_real_clips(shared_data, tmp_path, short_side: int = 64, max_frames: int = 24):
    """One training and one test clip of two UCF101 classes from ../shared/data, extracted with
    the extraction tool (fast preset), and the official split files trimmed to them.

    Returns (data root, splits folder, the chosen video names: train, test, train, test).
    """
    import os
    import shutil
    import subprocess
    import sys

    from dataloader.splits import load_split

    ucf = shared_data / "ucf101"
    official = ucf / "ucfTrainTestlist"
    split = load_split("ucf101", official, 1)
    on_disk = {p.stem: p for p in (ucf / "UCF-101").rglob("*.avi")}
    chosen = []
    for label in sorted({v.label for v in split.test if v.name in on_disk})[:2]:
        for videos in (split.train, split.test):
            chosen.append(next(v.name for v in videos if v.label == label and v.name in on_disk))
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in chosen:
        (clips / f"{name}.avi").symlink_to(on_disk[name])
    root = tmp_path / "root"
    extraction = subprocess.run(
        [sys.executable, "tools/extract_frames_flow.py", "--videos", str(clips), "--out", str(root)]
        + ["--short-side", str(short_side), "--max-frames", str(max_frames), "--workers", "1"]
        + ["--preset", "fast"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert extraction.returncode == 0, extraction.stderr[-2000:]
    splits = tmp_path / "splits"
    splits.mkdir()
    shutil.copy(official / "classInd.txt", splits)
    for listed in ("trainlist01.txt", "testlist01.txt"):
        lines = (official / listed).read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if any(f"/{n}.avi" in line.decode() for n in chosen)]
        (splits / listed).write_bytes(b"".join(kept))
    return root, splits, chosen


def save_stream_checkpoint(path, stream: str, model, classes, extraction=None, **options):
    """Save ``model`` (a network.recognizer.Recognizer) as a checkpoint of ``stream`` in the
    trainer's format, its options the stream's defaults updated with ``options``: a trained
    stream's file without a training run."""
    import torch

    from engine.config import default_options
    from engine.streams import STREAMS
    from utils.checkpoint import FORMAT

    config = dict(model.config)
    args = default_options(STREAMS[stream]).as_dict()
    assert set(options) <= set(args), set(options) - set(args)
    args.update(options, arch=config["arch"], consensus=config["consensus"])
    ckpt = {
        "format": FORMAT,
        "epoch": 1,
        "stream": stream,
        "arch": config["arch"],
        "classes": list(classes),
        "in_channels": config["in_channels"],
        "model_config": config,
        "args": args,
        "model": model.state_dict(),
        "extraction": extraction,
    }
    torch.save(ckpt, path)
    return Path(path)


def corrupt_image_data(path, seed: int, size: int | None = None, markers: bool = True) -> None:
    """Overwrite ``size`` bytes (default a third) of a JPEG's image data, past its headers and
    before its end marker, with random ones at a random place: a file OpenCV still decodes
    (partly grey), with only a warning on stderr. ``markers=False`` draws no 0xFF byte, so only
    decoding the data can tell that it is corrupt."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    rng = np.random.default_rng(seed)
    size = size or (len(data) - 2 - start) // 3
    at = int(rng.integers(start, len(data) - 2 - size))
    data[at : at + size] = rng.integers(0, 256 if markers else 255, size, np.uint8).tobytes()
    path.write_bytes(bytes(data))


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for a server or torch.distributed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
