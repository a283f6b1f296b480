"""Training-sample throughput of the data layer against a straightforward PIL loader.

    python bench/loader_bench.py --data-root DIR --stream motion --seconds 20 --workers 0

Reads every video found under DIR in the preprocessed layout (no split files needed) and
prints samples/s of the straightforward loader (PIL open -> resize to the crop -> ToTensor per
frame, stacked), then of the toolkit's loader; the last line is ``samples/s: <number>``.
"""

import sys
import time
from pathlib import Path

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
from dataloader.layout import (  # noqa: E402
    Layout,  # noqa: E402
    add_layout_arguments,
    frame_path,
)
from dataloader.samples import ClipSamples  # noqa: E402
from dataloader.sampling import clip_indices, num_clip_starts  # noqa: E402
from dataloader.splits import Video  # noqa: E402
from utils.cli import Parser  # noqa: E402
from utils.errors import run_cli  # noqa: E402


class NaiveDataset(torch.utils.data.Dataset):
    """The loader of the older two-stream repositories, frame by frame through PIL."""

    def __init__(self, fast: FrameDataset):
        self.fast = fast

    def __len__(self):
        return len(self.fast)

    def _load(self, path: Path, mode: str) -> torch.Tensor:
        image = Image.open(path).convert(mode)
        size = self.fast.samples.crop_size
        return F.to_tensor(image.resize((size, size), Image.BILINEAR))

    def __getitem__(self, index):
        item = self.fast.items[index]
        layout = self.fast.layout
        samples = self.fast.samples
        if isinstance(samples, ClipSamples):  # each clip frame by frame: open, resize, stack
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


def throughput(dataset, seconds: float, workers: int) -> float:
    """Samples per second over about ``seconds`` of loading (after one warm-up batch)."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=1,
        shuffle=True,
        num_workers=workers,
        worker_init_fn=worker_init,
        persistent_workers=workers > 0,
    )
    count, start = 0, None
    while True:
        for _ in loader:
            if start is None:
                start = time.perf_counter()
                continue
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return count / elapsed


def main(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="folder with the preprocessed frames")
    parser.add_argument("--stream", choices=("spatial", "motion", "clip"), default="motion")
    parser.add_argument("--clip-length", type=int, default=16, help="clip stream: frames per clip")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per loader")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--num-segments", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true", help="time only the toolkit loader")
    add_layout_arguments(parser)
    args = parser.parse_args(argv)

    layout = Layout.from_args(args)
    folder = Path(args.data_root) / layout.rgb_dir
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    videos = [Video(name, 0) for name in names]
    options = dict(num_segments=args.num_segments, crop_size=args.crop_size)
    if args.stream == "clip":
        samples = ClipSamples(
            clip_length=args.clip_length, short_side=max(args.crop_size, 128), **options
        )
        dataset = FrameDataset(args.data_root, videos, True, samples, layout=layout)
    else:
        cls = SpatialDataset if args.stream == "spatial" else MotionDataset
        dataset = cls(args.data_root, videos, train=True, layout=layout, **options)
    torch.set_num_threads(1)
    print(
        f"{args.stream} stream, {len(dataset)} videos, crop {args.crop_size}, workers {args.workers}"
    )
    if not args.skip_naive:
        naive = throughput(NaiveDataset(dataset), args.seconds, args.workers)
        print(f"straightforward PIL loader samples/s: {naive:.1f}")
    fast = throughput(dataset, args.seconds, args.workers)
    if not args.skip_naive:
        print(f"speed-up: {fast / naive:.2f}x")
    print(f"samples/s: {fast:.1f}")


if __name__ == "__main__":
    run_cli(main)
