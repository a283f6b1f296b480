"""Small real datasets for tests: JPEG frames and flow in the preprocessed layout, with split files."""

from pathlib import Path

import cv2
import numpy as np

from dataloader.layout import Layout
from dataloader.splits import Video

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Tests of the plumbing (resume, checkpoints, errors, processes) need no ResNet: ShuffleNet v2
# x0.5 has 1.4 M parameters, and its checkpoints are 30x smaller than ResNet-18's.
SMALL_ARCH = "shufflenet_v2_x0_5"


def write_frame_dataset(
    root,
    num_classes: int = 3,
    train_per_class: int = 3,
    test_per_class: int = 2,
    num_frames=(12, 20),
    size=(80, 60),
    flow: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny UCF101-like dataset under ``root`` and return it.

    Layout: ``jpegs_256/v_<Name>/frame%06d.jpg`` (RGB), ``tvl1_flow/{u,v}/v_<Name>/frame%06d.jpg``
    (N-1 gray flow frames), and ``ucfTrainTestlist/`` with classInd.txt, trainlist01.txt and
    testlist01.txt (Windows line endings, as the official files). Class c is drawn with a colour
    and a flow value of its own, so a network can learn it in a few steps.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    width, height = size
    splits = root / "ucfTrainTestlist"
    splits.mkdir(parents=True, exist_ok=True)
    classes = [f"Class{c}" for c in range(num_classes)]
    train_lines, test_lines = [], []
    for c, cls in enumerate(classes):
        for i in range(train_per_class + test_per_class):
            name = f"v_{cls}_g{i + 1:02d}_c01"
            n = int(rng.integers(num_frames[0], num_frames[1] + 1))
            rgb_dir = root / "jpegs_256" / name
            rgb_dir.mkdir(parents=True, exist_ok=True)
            colour = np.array([(60 * c) % 256, 255 - (70 * c) % 256, 40 + 50 * c % 200])
            for f in range(n):
                img = rng.integers(0, 40, (height, width, 3)) + colour
                cv2.imwrite(
                    str(rgb_dir / f"frame{f + 1:06d}.jpg"), np.clip(img, 0, 255).astype(np.uint8)
                )
            if flow:
                for axis, value in (("u", 128 + 30 * (c + 1)), ("v", 128 - 20 * (c + 1))):
                    flow_dir = root / "tvl1_flow" / axis / name
                    flow_dir.mkdir(parents=True, exist_ok=True)
                    for f in range(n - 1):
                        img = np.clip(rng.integers(-10, 10, (height, width)) + value, 0, 255)
                        cv2.imwrite(str(flow_dir / f"frame{f + 1:06d}.jpg"), img.astype(np.uint8))
            line = f"{cls}/{name}.avi"
            if i < train_per_class:
                train_lines.append(f"{line} {c + 1}")
            else:
                test_lines.append(line)
    (splits / "classInd.txt").write_bytes(
        "".join(f"{c + 1} {cls}\r\n" for c, cls in enumerate(classes)).encode()
    )
    (splits / "trainlist01.txt").write_bytes("".join(f"{x}\r\n" for x in train_lines).encode())
    (splits / "testlist01.txt").write_bytes("".join(f"{x}\r\n" for x in test_lines).encode())
    return root


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
