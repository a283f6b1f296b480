"""Storage: training samples per CPU-second from frame folders, packs and video files, their size
on disk, and the extraction time that reading RGB from the videos saves.

    python bench/storage_bench.py [--videos ../shared/data/ucf101/UCF-101] [--work DIR]
                                  [--max-frames N] [--json OUT] [--torchcodec] [--dry-run]

The clips are extracted once (tools/extract_frames_flow.py, --preset fast) into WORK/folders and
packed (tools/pack_frames.py) into WORK/packs; a rerun over the same --work reuses both. Every
measurement runs in this process (no DataLoader workers, one thread) on ``time.process_time``:
a warm-up, then --repeats rounds of --seconds, the sources in turn, the median shown. Samples
are the training samples of each stream's defaults (spatial: 3 segments, crop 224; motion: 3
stacks of 10 flow pairs; clip: one 16-frame clip at short side 128, crop 112) at random videos.
Video files are read as --videos reads them (dataloader/video_dataset.py); the decoder thread
settings of PyAV are measured on the spatial and clip streams (CPU and wall clock); with
--torchcodec, video files decoded by torchcodec too (its frames are not the toolkit's: a speed
figure only). Extraction
is timed stage by stage on the first frames of a few clips: decoding (needed by every source),
RGB JPEGs (what the video source saves) and flow (TV-L1 and its JPEGs, needed by every source).
"""

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataloader.datasets import FrameDataset, worker_init  # noqa: E402
from dataloader.frame_size import half_size, resize_short_side  # noqa: E402
from dataloader.samples import (  # noqa: E402
    ClipSampleBuilder,
    FlowSampleBuilder,
    RgbSampleBuilder,
)
from dataloader.splits import Video  # noqa: E402
from dataloader.video_dataset import VideoDataset, find_video_files  # noqa: E402
from dataloader.video_frames import VideoReader, index_video  # noqa: E402
from utils.cli import Parser  # noqa: E402
from utils.cores import usable_cores
from utils.errors import UserError, run_cli  # noqa: E402
from utils.video_names import video_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "ucf101" / "UCF-101"
STREAMS = {
    "spatial": lambda: RgbSampleBuilder(num_segments=3, crop_size=224),
    "motion": lambda: FlowSampleBuilder(num_segments=3, crop_size=224, stack_length=10),
    "clip": lambda: ClipSampleBuilder(num_segments=1, clip_length=16, crop_size=112),
}
# PyAV decoder settings (stream.thread_type, thread_count; 0 = FFmpeg picks): the first is
# dataloader/video_frames.py's (one thread, the type left as PyAV sets it).
THREADINGS = [(None, 1), ("SLICE", 2), ("FRAME", 2), ("AUTO", 0)]


class _ThreadedReader(VideoReader):
    """A VideoReader whose decoder uses ``threading`` (thread_type, thread_count)."""

    def __init__(self, path, index, threading):
        self.threading = threading
        super().__init__(path, index, threading[1])

    def _restart(self) -> None:
        super()._restart()
        if self.threading[0] is not None:
            self.stream.thread_type = self.threading[0]


class _TorchcodecReader:
    """A VideoReader's ``image`` from torchcodec (one FFmpeg thread, no scan at opening). Not
    the toolkit's frames: on UCF101's AVIs with B-frames its frame k is the k-1-th of
    sequential decoding, and its RGB conversion rounds differently."""

    def __init__(self, path, index):
        from torchcodec.decoders import VideoDecoder

        self.decoder = VideoDecoder(
            path, seek_mode="approximate", num_ffmpeg_threads=1, dimension_order="NHWC"
        )

    def image(self, k: int, short_side: int | None, half: bool = False) -> np.ndarray:
        rgb = self.decoder.get_frame_at(k).data.numpy()
        image = resize_short_side(np.ascontiguousarray(rgb[..., ::-1]), short_side)
        return half_size(image) if half else image

    def close(self) -> None:
        self.decoder = None


def _run_tool(*argv: str) -> None:
    """A tool of tools/ in its own process (a bench imports no script)."""
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-400:]}")


def _texture_clip(seed: int, frames: int = 12, width: int = 64, height: int = 48) -> list:
    """A smooth texture drifting by (2, 1) px a frame (the dry run's videos)."""
    noise = np.random.default_rng(seed).random((height + frames, width + 2 * frames))
    big = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 2)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return [
        np.repeat(big[i : i + height, 2 * i : 2 * i + width, None], 3, 2) for i in range(frames)
    ]


def prepare(args) -> tuple[Path, Path, Path]:
    """(videos, folders root, packs root): extracted and packed where --work lacks them."""
    work = args.work
    if args.dry_run:
        from extraction.decode import write_video

        args.videos = work / "videos"
        for i in range(3):
            write_video(args.videos / f"Class{i}" / f"v_Class{i}_g01_c01.avi", _texture_clip(i))
    if not args.videos.is_dir():
        raise UserError(f"--videos {args.videos} is not a folder; give the UCF-101 clips")
    folders, packs = work / "folders", work / "packs"
    extract = ["tools/extract_frames_flow.py", "--videos", str(args.videos), "--out", str(folders)]
    extract += ["--preset", "fast", "--workers", "1", "--short-side", str(args.short_side)]
    if args.max_frames:
        extract += ["--max-frames", str(args.max_frames)]
    _run_tool(*extract)
    _run_tool("tools/pack_frames.py", str(folders), "--out", str(packs))
    return args.videos, folders, packs


def rates(dataset, seconds: float, rng: random.Random) -> tuple[float, float]:
    """(samples per CPU-second, samples per wall-second) of random training samples."""
    count, cpu, wall = 0, time.process_time(), time.perf_counter()
    while (spent := time.process_time() - cpu) < seconds:
        dataset[rng.randrange(len(dataset))]
        count += 1
    return count / spent, count / (time.perf_counter() - wall)


def measure(datasets: dict, seconds: float, repeats: int) -> dict:
    """{name: (median samples/CPU-s, median samples/wall-s)}: a warm-up, then ``repeats``
    rounds of every dataset in turn."""
    rng, got = random.Random(0), {name: [] for name in datasets}
    for data in datasets.values():
        for i in range(min(len(data), 3)):
            data[i]
    for _ in range(repeats):
        for name, data in datasets.items():
            got[name].append(rates(data, seconds, rng))
    return {n: tuple(statistics.median(r[k] for r in v) for k in (0, 1)) for n, v in got.items()}


def _video_dataset(videos_dir, videos, builder, short_side, reader=None) -> VideoDataset:
    """Video files read by ``reader`` (default the toolkit's VideoReader)."""
    data = VideoDataset(videos_dir, videos, True, builder, short_side=short_side, cache=False)
    data.video_reader = reader or data.video_reader
    return data


def loader_speeds(args, videos_dir, folders, packs, names) -> tuple[dict, dict]:
    """Samples per CPU-second of each stream and source, and of each decoder setting."""
    videos = [Video(name, 0) for name in names]
    speeds, threads = {}, {}
    for stream, make in STREAMS.items():
        builder = make()
        sources = {
            "folders": FrameDataset(folders, videos, True, builder),
            "packs": FrameDataset(packs, videos, True, builder),
        }
        if builder.modality == "rgb":
            sources["videos"] = _video_dataset(videos_dir, videos, builder, args.short_side)
            if args.torchcodec:
                sources["torchcodec"] = _video_dataset(
                    videos_dir, videos, builder, args.short_side, _TorchcodecReader
                )
        speeds[stream] = measure(sources, args.seconds, args.repeats)
        if builder.modality == "rgb":
            variants = {
                f"{kind or 'default'} x{count}": _video_dataset(
                    videos_dir,
                    videos,
                    builder,
                    args.short_side,
                    partial(_ThreadedReader, threading=(kind, count)),
                )
                for kind, count in THREADINGS
            }
            threads[stream] = measure(variants, args.seconds, args.repeats)
    return speeds, threads


def disk(videos_dir: Path, folders: Path, packs: Path, names: list[str]) -> dict:
    """Files and bytes of each source, and RGB frames behind them (the video files hold all
    of each clip's frames; the extraction perhaps only the first --max-frames)."""
    index = json.loads((folders / "index.json").read_text())["videos"]
    extracted = sum(index[n]["frames"] for n in names)

    def tally(root: Path, suffix: str) -> tuple[int, int]:
        files = [p for p in root.rglob(f"*{suffix}") if not p.name.startswith(".")]
        files = [p for p in files if ".extract" not in p.parts]
        return len(files), sum(p.stat().st_size for p in files)

    paths = find_video_files(videos_dir, {video_key(n) for n in names})
    files = [paths[video_key(n)] for n in names]
    full = sum(index_video(p).num_frames for p in files)
    out = {}
    for source, (count, size), frames in (
        ("folders", tally(folders, ".jpg"), extracted),
        ("packs", tally(packs, ".zip"), extracted),
        ("videos", (len(files), sum(Path(p).stat().st_size for p in files)), full),
    ):
        out[source] = {"files": count, "bytes": size, "rgb_frames": frames}
    return out


def extraction_stages(videos: list[Path], frames: int, short_side: int) -> dict:
    """CPU seconds per frame of extraction's stages, on the first ``frames`` of each video."""
    from extraction.decode import iter_frames
    from extraction.tvl1 import flow_to_uint8, make_flow, to_gray

    flows = make_flow("fast", "opencv", "cpu", 1)
    spent = {"decode": 0.0, "rgb_jpeg": 0.0, "flow": 0.0}
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "frame.jpg"
        for path in videos:
            decoded, start, previous = iter(iter_frames(path, short_side, frames)), None, None
            while True:
                start = time.process_time()
                rgb = next(decoded, None)
                spent["decode"] += time.process_time() - start
                if rgb is None:
                    break
                start = time.process_time()
                quality = [cv2.IMWRITE_JPEG_QUALITY, 95]
                out.write_bytes(cv2.imencode(".jpg", rgb[..., ::-1], quality)[1])
                spent["rgb_jpeg"] += time.process_time() - start
                start = time.process_time()
                gray = to_gray(rgb)
                if previous is not None:
                    flow = flows(previous[None], gray[None])[0]
                    for channel in (0, 1):
                        image = flow_to_uint8(flow[..., channel], 20.0)
                        out.write_bytes(cv2.imencode(".jpg", image)[1])
                spent["flow"] += time.process_time() - start
                previous, count = gray, count + 1
    return {k: v / max(count, 1) for k, v in spent.items()} | {"frames": count}


def report(speeds, threads, sizes, stages, names) -> dict:
    """Print the tables; the figures as one dict (for --json)."""
    print(f"{'stream':8} {'source':10} {'samples/CPU-s':>14} {'x folders':>10}")
    goals = {}
    for stream, by_source in speeds.items():
        base = by_source["folders"][0]
        for source, (cpu, _) in by_source.items():
            print(f"{stream:8} {source:10} {cpu:14.1f} {cpu / base:10.2f}")
        goals[f"{stream}: packs >= folders"] = by_source["packs"][0] >= base
        if "videos" in by_source:
            goals[f"{stream}: videos >= 0.25x folders"] = by_source["videos"][0] >= 0.25 * base
    print(f"\n{'stream':8} {'decoder threads':16} {'samples/CPU-s':>14} {'samples/s wall':>15}")
    for stream, by_setting in threads.items():
        for setting, (cpu, wall) in by_setting.items():
            print(f"{stream:8} {setting:16} {cpu:14.1f} {wall:15.1f}")
    best = {s: max(v, key=lambda k: v[k][0]) for s, v in threads.items()}
    print(f"best decoder setting per CPU-second: {best}")
    print(f"\n{'source':8} {'files':>7} {'MB':>9} {'files/video':>12} {'kB/RGB frame':>13}")
    for source, d in sizes.items():
        print(
            f"{source:8} {d['files']:7d} {d['bytes'] / 1e6:9.1f} {d['files'] / len(names):12.1f} "
            f"{d['bytes'] / d['rgb_frames'] / 1e3:13.1f}"
        )
    both = stages["decode"] + stages["rgb_jpeg"] + stages["flow"]
    saved = stages["rgb_jpeg"] / both
    print(
        f"\nextraction CPU ms/frame ({stages['frames']} frames, preset fast): decode "
        f"{stages['decode'] * 1e3:.1f}, RGB JPEG {stages['rgb_jpeg'] * 1e3:.1f}, flow "
        f"{stages['flow'] * 1e3:.1f}; RGB+flow {both * 1e3:.1f}, flow only "
        f"{(both - stages['rgb_jpeg']) * 1e3:.1f}: the video source saves {saved:.1%}"
    )
    for goal, held in goals.items():
        print(f"goal {goal}: {'met' if held else 'NOT met'}")
    return {
        "speeds": speeds,
        "decoder_threads": threads,
        "best_decoder_setting": best,
        "disk": sizes,
        "extraction_s_per_frame": stages,
        "extraction_saved_by_videos": saved,
        "goals": goals,
        "videos": len(names),
        "machine": {"cores": usable_cores()},
    }


def parse_args(argv):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--videos", type=Path, default=CLIPS, help="the raw clips (default: %(default)s)"
    )
    p.add_argument("--work", type=Path, help="where to extract and pack (reused; default: a temp)")
    p.add_argument("--short-side", type=int, default=256, help="extraction's and the videos'")
    p.add_argument("--max-frames", type=int, help="extract only each clip's first N frames")
    p.add_argument("--seconds", type=float, default=2.0, help="CPU seconds of one round")
    p.add_argument("--repeats", type=int, default=5, help="rounds per measurement (median)")
    p.add_argument("--stage-frames", type=int, default=40, help="frames per clip timed in stages")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--torchcodec", action="store_true", help="also video files decoded by torchcodec"
    )
    p.add_argument("--dry-run", action="store_true", help="tiny generated videos, short rounds")
    args = p.parse_args(argv)
    if args.dry_run:
        args.short_side, args.seconds, args.repeats, args.stage_frames = 0, 0.02, 1, 4
    if args.repeats < 1 or args.seconds <= 0:
        raise UserError("--repeats must be at least 1 and --seconds positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    worker_init(0)  # one OpenCV thread, as a DataLoader worker has
    with tempfile.TemporaryDirectory() as tmp:
        args.work = args.work or Path(tmp)
        videos_dir, folders, packs = prepare(args)
        names = sorted(json.loads((folders / "index.json").read_text())["videos"])
        print(f"{len(names)} videos extracted in {folders}, packed in {packs}")
        speeds, threads = loader_speeds(args, videos_dir, folders, packs, names)
        sizes = disk(videos_dir, folders, packs, names)
        paths = find_video_files(videos_dir, {video_key(n) for n in names})
        sample = [Path(paths[video_key(n)]) for n in names[:: max(1, len(names) // 3)][:3]]
        stages = extraction_stages(sample, args.stage_frames, args.short_side)
        figures = report(speeds, threads, sizes, stages, names)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
