"""Training-sample throughput of the data layer against a straightforward PIL loader.

    python bench/loader_bench.py --data-root DIR --stream spatial|motion|clip [--clock cpu]

Reads every video found under DIR in the preprocessed layout (no split files needed) and
prints samples/s of the decode floor (the JPEG files the toolkit's samples read, decoded by
cv2.imdecode alone in one process, already in memory; at full size, and at half size for the
clip stream, which decodes 340x256 frames so), of the straightforward loader (PIL open -> resize
to the crop -> ToTensor per frame, stacked) and of the toolkit's loader, with each loader's
fraction of the floor. Every measurement runs --rounds times in turn and the median is shown.
The last line is ``samples/s: <number>`` (the toolkit's loader).
"""

import random
import sys
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms import functional as F  # noqa: E402

from dataloader.datasets import (  # noqa: E402
    FrameDataset,
    MotionDataset,
    SpatialDataset,
    worker_init,
)
from dataloader.layout import frame_path  # noqa: E402
from dataloader.samples import ClipSampleBuilder  # noqa: E402
from dataloader.sampling import clip_indices, num_clip_starts  # noqa: E402
from dataloader.splits import Video  # noqa: E402
from engine.cli import add_layout_arguments  # noqa: E402
from engine.config import options_from_dict  # noqa: E402
from engine.streams import STREAMS  # noqa: E402
from utils.cli import Parser  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402

NAIVE, TOOLKIT = "straightforward PIL loader", "toolkit loader"


class NaiveDataset(torch.utils.data.Dataset):
    """The loader of the older two-stream repositories, frame by frame through PIL."""

    def __init__(self, fast: FrameDataset):
        self.fast = fast

    def __len__(self):
        return len(self.fast)

    def _load(self, path: Path, mode: str) -> torch.Tensor:
        image = Image.open(path).convert(mode)
        size = self.fast.builder.crop_size
        return F.to_tensor(image.resize((size, size), Image.BILINEAR))

    def __getitem__(self, index):
        item = self.fast.items[index]
        layout = self.fast.layout
        samples = self.fast.builder
        if isinstance(samples, ClipSampleBuilder):  # each clip frame by frame: open, resize, stack
            num_clip = num_clip_starts(item.num_frames, samples.clip_length, samples.frame_stride)
            starts = samples.positions(num_clip, train=True)
            idx = clip_indices(starts, samples.clip_length, samples.frame_stride, item.num_frames)
            (folder,) = item.dirs
            clips = [
                torch.stack(
                    [self._load(frame_path(folder, layout.rgb_pattern, i), "RGB") for i in ids],
                    dim=1,
                )
                for ids in idx.tolist()
            ]
            return torch.stack(clips), item.label
        if self.fast.modality == "rgb":
            idx = samples.positions(item.num_frames, train=True)
            (folder,) = item.dirs
            frames = [self._load(frame_path(folder, layout.rgb_pattern, i), "RGB") for i in idx]
            return torch.stack(frames), item.label
        length = samples.stack_length
        starts = samples.positions(max(item.num_frames - length + 1, 1), train=True)
        x_dir, y_dir = item.dirs
        stacks = []
        for s in starts.tolist():
            channels = []
            for i in range(s, min(s + length, item.num_frames)):
                channels.append(self._load(frame_path(x_dir, layout.flow_x_pattern, i), "L"))
                channels.append(self._load(frame_path(y_dir, layout.flow_y_pattern, i), "L"))
            stacks.append(torch.cat(channels))
        return torch.stack(stacks), item.label


def throughput(
    dataset, seconds: float, workers: int, batch_size: int = 1, clock=time.perf_counter
) -> float:
    """Samples per second over about ``seconds`` of loading (after one warm-up batch)."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        worker_init_fn=worker_init,
        persistent_workers=workers > 0,
    )
    count, start = 0, None
    while True:
        for _, labels in loader:
            if start is None:
                start = clock()
                continue
            count += len(labels)
            elapsed = clock() - start
            if elapsed >= seconds:
                return count / elapsed


def _recording(read, paths: set, item, patterns):
    """``read`` that also notes the files it reads in ``paths``."""

    def recorded(i, *args, **kwargs):
        paths.update(str(frame_path(d, p, i)) for d, p in zip(item.dirs, patterns, strict=True))
        return read(i, *args, **kwargs)

    return recorded


def sample_files(dataset: FrameDataset, count: int) -> list[list[str]]:
    """The frame files each of ``count`` random training samples reads (every one once)."""
    patterns = [pattern for _, pattern in dataset.layout.modality(dataset.modality)]
    files = []
    for item in random.Random(0).choices(dataset.items, k=count):
        paths = set()
        read = _recording(dataset.reader(item), paths, item, patterns)
        dataset.builder(read, item.num_frames, True)
        files.append(sorted(paths))
    return files


def decode_floor(data: list[list[np.ndarray]], flag: int, seconds: float, clock) -> float:
    """Samples per second of cv2.imdecode alone over the samples' JPEG files, in memory."""
    count, start = 0, clock()
    while True:
        for sample in data:
            for buffer in sample:
                cv2.imdecode(buffer, flag)
            count += 1
        elapsed = clock() - start
        if elapsed >= seconds:
            return count / elapsed


def parse_args(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="folder with the preprocessed frames")
    parser.add_argument("--stream", choices=("spatial", "motion", "clip"), default="motion")
    parser.add_argument("--clip-length", type=int, default=16, help="clip stream: frames per clip")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="time per measurement, all rounds"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="seconds of the wall clock, or of this process's CPU time (--workers 0 only: on a "
        "machine shared with other work, what one idle core would take)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="each measurement this many times, in turn"
    )
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="samples per DataLoader batch, collated (training's default --batch-size)",
    )
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--num-segments", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true", help="time only the toolkit loader")
    add_layout_arguments(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.batch_size < 1 or args.seconds <= 0:
        raise UserError("--rounds and --batch-size must be at least 1, --seconds positive")
    if args.clock == "cpu" and args.workers:
        raise UserError("--clock cpu counts this process only: use it with --workers 0")
    return args


def build_dataset(args):
    """The stream's training set of every video folder under --data-root."""
    layout = options_from_dict(STREAMS[args.stream], vars(args)).layout()
    folder = Path(args.data_root) / layout.rgb_dir
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    videos = [Video(name, 0) for name in names]
    options = dict(num_segments=args.num_segments, crop_size=args.crop_size)
    if args.stream == "clip":
        samples = ClipSampleBuilder(
            clip_length=args.clip_length, short_side=max(args.crop_size, 128), **options
        )
        dataset = FrameDataset(args.data_root, videos, True, samples, layout=layout)
    else:
        cls = SpatialDataset if args.stream == "spatial" else MotionDataset
        dataset = cls(args.data_root, videos, train=True, layout=layout, **options)
    return dataset


def report(speeds: dict, floors: dict, frames: float, skip_naive: bool) -> None:
    """Each measurement's median, the loaders' as fractions of the decode floors."""
    speed = {name: float(np.median(values)) for name, values in speeds.items()}
    for name, values in speeds.items():
        spread = f"median of {' '.join(f'{v:.1f}' for v in values)}"
        if name in floors.values():
            print(f"{name} ({frames:.0f} JPEGs a sample) samples/s: {speed[name]:.1f} ({spread})")
            continue
        fractions = [
            f"{speed[name] / speed[f]:.2f}x the {size} floor" for size, f in floors.items()
        ]
        print(f"{name} samples/s: {speed[name]:.1f} ({', '.join(fractions)}; {spread})")
    if not skip_naive:
        print(f"speed-up: {speed[TOOLKIT] / speed[NAIVE]:.2f}x")
    print(f"samples/s: {speed[TOOLKIT]:.1f}")


def main(argv=None):
    args = parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    dataset = build_dataset(args)
    torch.set_num_threads(1)
    worker_init(0)  # one OpenCV thread, as in each DataLoader worker
    print(
        f"{args.stream} stream, {len(dataset)} videos, crop {args.crop_size}, "
        f"batch {args.batch_size}, workers {args.workers}"
    )
    files = sample_files(dataset, 200)
    color = dataset.modality == "rgb"
    flags = {"full size": cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE}
    if args.stream == "clip":
        flags["half size"] = cv2.IMREAD_REDUCED_COLOR_2
    floors = {size: f"decode floor, {size}" for size in flags}
    data = [[np.fromfile(path, np.uint8) for path in sample] for sample in files]
    runs = {
        floors[size]: partial(decode_floor, data, flag, clock=clock) for size, flag in flags.items()
    }
    if not args.skip_naive:
        runs[NAIVE] = partial(
            throughput,
            NaiveDataset(dataset),
            workers=args.workers,
            batch_size=args.batch_size,
            clock=clock,
        )
    runs[TOOLKIT] = partial(
        throughput, dataset, workers=args.workers, batch_size=args.batch_size, clock=clock
    )
    # Rounds in turn, medians: the ratios hold on a machine whose load changes meanwhile.
    seconds = args.seconds / args.rounds
    speeds = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            speeds[name].append(run(seconds=seconds))
    report(speeds, floors, sum(map(len, files)) / len(files), args.skip_naive)


if __name__ == "__main__":
    run_cli(main)
