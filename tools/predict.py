"""Classify raw videos with trained stream checkpoints: top-k of each stream and of their fusion.

    python tools/predict.py clip.avi --spatial record/spatial/checkpoint.pth.tar \\
        --motion record/motion/checkpoint.pth.tar [--clip record/clip/checkpoint.pth.tar] \\
        [--top 5] [--gif out.gif] [--timeline out.csv --window 10 --stride 5]
    python tools/predict.py clips/ more.mp4 --spatial ... --motion ... --csv predictions.csv

A video is scored in windows (--window seconds every --stride seconds), decoded once and
window by window (engine/streaming.py): memory follows the window, not the video. A video no
longer than a window is one window, sampled as evaluation samples it; a longer one's result is
each stream's scores averaged over its windows, then fused.

The video is decoded, resized and turned into TV-L1 flow in memory with the extraction tool's own
code, with the settings the checkpoint's training frames were extracted with (read from
the checkpoint, else index.json in its data root; refused when neither has them and the
command line does not give them), and sampled and cropped by the stream's own test-time sample
builder (engine/inference.py): a prediction sees exactly what evaluation sees. Nothing is written
but the outputs asked for. In a batch (engine/predict_batch.py), each video's row is written as
soon as it is scored, a video that fails is a row with its error, and a rerun skips the videos
already done. A truncated video (fewer frames decode than its container declares) fails, unless
--allow-truncated. One run writes a --csv or --json at a time: a second is refused.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from engine.cli_predict import add_video_arguments, check_video_arguments, video_options
from engine.predict_video import column_names, final_column, predict_one, write_cam
from engine.stream_setup import STREAM_OPTIONS, load_streams
from utils.atomic import write_json
from utils.cli import Parser
from utils.errors import UserError, run_cli
from utils.gif import gif_labels, write_gif
from utils.outputs import locked_outputs, on_full_disk
from utils.tables import format_table
from utils.unknown import UNKNOWN, shown


def top_table(columns: dict[str, np.ndarray], classes: list[str], top: int) -> str:
    """One column per stream: rank, then 'ClassName  12.3%' cells, best first."""
    top = min(top, len(classes))
    width = max(len(c) for c in classes)
    ranked = {
        name: [f"{classes[i]:<{width}} {100 * p[i]:5.1f}%" for i in np.argsort(-p, kind="stable")]
        for name, p in columns.items()
    }
    rows = [[f"{r + 1:3d}", *(ranked[name][r] for name in columns)] for r in range(top)]
    return format_table(["  #", *columns], rows)


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(
        description=__doc__.split("\n")[0],
    )
    parser.add_argument(
        "videos",
        type=Path,
        nargs="+",
        metavar="VIDEO",
        help="video files (any format PyAV reads) or folders of them; models are loaded once",
    )
    add_video_arguments(parser)
    parser.add_argument(
        "--timeline",
        type=Path,
        metavar="OUT.csv",
        help="also write each window's top-k (OUT.csv), a plot of them over time (OUT.png) and "
        "the runs of one fused label (OUT_segments.csv)",
    )
    parser.add_argument(
        "--gif",
        type=Path,
        help="also write an animated GIF, small and at a few frames a second, each frame "
        "labelled with its window's fused top-1",
    )
    parser.add_argument(
        "--cam",
        type=Path,
        metavar="OUT",
        help="also draw where each stream looks (Grad-CAM of the predicted class over the test "
        "snippets of the most confident window): OUT.gif animated, OUT.png a strip",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="also write the probabilities here as JSON (a list for many, updated per video)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        help="also write one row per video as it is scored: top-k classes and probabilities, or "
        "its error; a rerun skips the videos already in it",
    )
    return parser.parse_args(argv)


def draw(args, result: dict, drawn: dict, streams: dict) -> None:
    """The single video's timeline, GIF and Grad-CAM, as asked."""
    from utils.timeline import write_timeline

    classes, video = result["classes"], drawn["video"]
    if args.timeline is not None:
        paths = write_timeline(args.timeline, video.times(), drawn["windows"], classes, args.top,
                               args.threshold)  # fmt: skip
        print("wrote " + ", ".join(map(str, paths)))
    if args.gif is not None:
        start, gif = time.perf_counter(), drawn["gif"]
        texts = gif_labels(gif, video.times(), drawn["windows"], classes, args.threshold)
        write_gif(args.gif, [f for _, f in gif.frames], texts, gif.fps)
        size = args.gif.stat().st_size / 1e6
        print(
            f"wrote {args.gif} ({len(texts)} frames at {gif.fps:.2g} a second, {size:.1f} MB) "
            f"in {time.perf_counter() - start:.1f} s"
        )
    if args.cam is not None:
        best = int(np.argmax(final_column(drawn["whole"])))
        print(f"wrote {write_cam(args.cam, streams, drawn['cam'], best, classes)}")


def check_args(args, single: bool) -> None:
    check_video_arguments(args)
    for option in ("gif", "cam", "timeline"):
        if getattr(args, option) is not None and not single:
            raise UserError(f"--{option} draws one video; give one video file, or leave it out")
    if args.cam is not None and args.cam.suffix.lower() not in (".gif", ".png"):
        raise UserError(f"--cam {args.cam}: give a .gif (animated) or .png (a strip) file")
    if args.timeline is not None and args.timeline.suffix.lower() != ".csv":
        raise UserError(f"--timeline {args.timeline}: give a .csv file (the plot goes beside it)")


def predict_single(path: Path, streams: dict, settings: dict, args, device, files) -> dict:
    """One video, printed in full (table, real-time factors) and drawn as asked."""
    start = time.perf_counter()
    from engine.predict_batch import Work, csv_cells

    result, drawn = predict_one(path, streams, settings, video_options(args), device,
                                args.gif is not None, args.cam is not None)  # fmt: skip
    video = drawn["video"]
    if video.warning:
        print(f"warning: {video.warning}", file=sys.stderr)
    print(
        f"{path}: {video.num_frames} frames, {result['seconds']:.1f} s, "
        f"{result['windows']} window(s); scored in {time.perf_counter() - start:.1f} s"
    )
    print(top_table(drawn["whole"], result["classes"], args.top))
    if result["top1"] == UNKNOWN:
        top = shown(final_column(drawn["whole"]), result["classes"])
        print(f"{UNKNOWN}: the top class ({top}) is below --threshold {args.threshold:g}")
    work = Work()
    work.add(video)
    print(work.summary())
    draw(args, result, drawn, streams)
    names = list(drawn["whole"])
    top, labelled = min(args.top, len(result["classes"])), args.threshold is not None
    files.add(csv_cells(result, names, top, labelled), result)
    if args.json is not None:
        with on_full_disk("the result is printed above"):
            print(f"wrote {write_json(args.json, result)}")
    return result


def main(argv=None) -> dict | list[dict]:
    args = get_args(argv)  # before torch is imported: --help and typos answer at once
    from engine.inference import collect_videos

    videos = collect_videos(args.videos)
    single = len(videos) == 1 and args.videos[0].is_file()
    check_args(args, single)
    with locked_outputs({args.csv: "--csv", args.json: "--json"}):  # before the models load
        return _run(args, videos, single)


def _run(args, videos: list[Path], single: bool) -> dict | list[dict]:
    from engine.device import resolve_device
    from engine.predict_batch import csv_header, run_batch
    from utils.result_files import ResultFiles

    device = resolve_device(args.device)
    streams, settings = load_streams(args, device, STREAM_OPTIONS)
    names = column_names(streams)
    top = min(args.top, len(next(iter(streams.values())).classes))
    redo = {str(videos[0])} if single else set()  # a video named alone is scored again
    labelled = args.threshold is not None
    header = csv_header(names, top, labelled)
    files = ResultFiles(args.csv, None if single else args.json, header, redo)
    if single:
        return predict_single(videos[0], streams, settings, args, device, files)
    start = time.perf_counter()

    options = video_options(args)

    def score(path: Path) -> tuple[dict, dict]:
        return predict_one(path, streams, settings, options, device)  # nothing drawn in a batch

    results, failed, work = run_batch(videos, score, names, top, files, labelled)
    skipped = len(videos) - len(results)
    print(f"{len(results)} videos in {time.perf_counter() - start:.1f} s"
          + (f" ({skipped} already in the output, skipped)" if skipped else ""))  # fmt: skip
    print(work.summary())
    for path in (args.csv, args.json):
        if path is not None:
            print(f"wrote {path}")
    if failed:
        raise UserError(
            f"{len(failed)} of {len(results)} videos failed (their rows say why; a rerun "
            f"tries them again), the first: {failed[0]['video']}: {failed[0]['error']}"
        )
    return results


if __name__ == "__main__":
    run_cli(main)
