"""First and second start of the frame index over a UCF101-sized tree.

    python bench/index_bench.py [--videos 13320] [--frames 20] [--data-root DIR]

Without --data-root it builds a throw-away tree of empty frame files (13,320 videos x 3
folders) in a temporary folder; counting never reads file contents.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloader.frame_index import index_videos  # noqa: E402
from dataloader.layout import Layout  # noqa: E402
from dataloader.splits import Video  # noqa: E402
from utils.cli import Parser  # noqa: E402
from utils.errors import run_cli  # noqa: E402


def build_tree(root: Path, videos: int, frames: int, layout: Layout) -> list[Video]:
    names = [f"v_Class{i % 101:03d}_g{i % 25 + 1:02d}_c{i:05d}" for i in range(videos)]
    for folder, pattern in layout.modality("rgb") + layout.modality("flow"):
        for name in names:
            video_dir = root / folder / name
            video_dir.mkdir(parents=True)
            for f in range(frames):
                (video_dir / (pattern % (f + 1))).touch()
    return [Video(name, 0) for name in names]


def main(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=13320, help="videos in the generated tree")
    parser.add_argument("--frames", type=int, default=20, help="frame files per folder")
    parser.add_argument("--data-root", help="index this existing tree instead (all its videos)")
    args = parser.parse_args(argv)

    layout = Layout()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_root:
            root = Path(args.data_root)
            videos = [Video(p.name, 0) for p in sorted((root / layout.rgb_dir).iterdir())]
        else:
            root = Path(tmp)
            start = time.perf_counter()
            videos = build_tree(root, args.videos, args.frames, layout)
            print(f"built {len(videos)} videos in {time.perf_counter() - start:.1f} s")
        for attempt in ("first start (lists folders)", "second start (cached)"):
            start = time.perf_counter()
            for modality in ("rgb", "flow"):
                index_videos(root, videos, modality, layout)
            print(f"{attempt}: {time.perf_counter() - start:.2f} s for {len(videos)} videos")


if __name__ == "__main__":
    run_cli(main)
