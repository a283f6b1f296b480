"""Classify raw videos with trained stream checkpoints: top-k of spatial, motion, clip and fused.

    python tools/predict.py clip.avi --spatial record/spatial/checkpoint.pth.tar \\
        --motion record/motion/checkpoint.pth.tar [--clip record/clip/checkpoint.pth.tar] \\
        [--top 5] [--gif out.gif]
    python tools/predict.py clips/ more.mp4 --spatial ... --motion ... --csv predictions.csv

The video is decoded, resized and turned into TV-L1 flow in memory with the extraction tool's own
code, with the settings the checkpoint's training frames were extracted with (read from
the checkpoint, else index.json in its data root; refused when neither has them and the
command line does not give them), and sampled and cropped by the stream's own test-time sample
builder (engine/inference.py): a prediction sees exactly what evaluation sees. Nothing is written
but the optional GIF and JSON.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dataloader.extraction_settings import PRESETS
from engine.cli import add_fusion_arguments
from utils.atomic import write_json, write_text
from utils.classes import check_same_classes
from utils.cli import Parser
from utils.errors import UserError, run_cli
from utils.progress import progress
from utils.tables import format_table

STREAM_OPTIONS = ("spatial", "motion", "clip")  # stream spec names, in the table's order
EXTRACTION_OPTIONS = ("short_side", "bound", "preset", "max_frames", "jpeg_quality")


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


def write_gif(path: Path, frames: np.ndarray, text: str, fps: float) -> Path:
    """An animated GIF of the clip with ``text`` on a dark band at the bottom."""
    height, width = frames.shape[1:3]
    scale = max(1, round(240 / max(height, 1)))  # tiny clips are enlarged so the text is readable
    font = ImageFont.load_default(size=max(10, 12 * min(scale, 2)))
    images = []
    for frame in frames:
        image = Image.fromarray(frame).resize((width * scale, height * scale), Image.NEAREST)
        draw = ImageDraw.Draw(image)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        band = bottom - top + 8
        draw.rectangle((0, image.height - band, image.width, image.height), fill=(0, 0, 0))
        draw.text((4, image.height - band + 4 - top), text, fill=(255, 255, 255), font=font)
        images.append(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
    )
    return path


def write_cam(path: Path, streams: dict, samples: dict, best: int, classes: list) -> Path:
    """Grad-CAM of class ``best`` for each stream's test sample, side by side (engine.cam)."""
    from engine.cam import stream_heatmaps
    from utils.heatmaps import write_heatmaps

    rows = stream_heatmaps(streams, samples, best)
    return write_heatmaps(path, rows, f"Grad-CAM for {classes[best]}")


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
    parser.add_argument(
        "--spatial", type=Path, help="spatial-stream checkpoint (checkpoint.pth.tar)"
    )
    parser.add_argument("--motion", type=Path, help="motion-stream checkpoint (checkpoint.pth.tar)")
    parser.add_argument(
        "--clip", type=Path, help="clip-stream (3D network) checkpoint: an optional third stream"
    )
    parser.add_argument("--top", type=int, default=5, help="how many classes to list per stream")
    add_fusion_arguments(parser)
    parser.add_argument("--gif", type=Path, help="also write an animated GIF with the fused top-1")
    parser.add_argument(
        "--cam",
        type=Path,
        metavar="OUT",
        help="also draw where each stream looks (Grad-CAM of the predicted class over the test "
        "snippets): OUT.gif animated, OUT.png a strip",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the probabilities here as JSON (a list for many)"
    )
    parser.add_argument(
        "--csv", type=Path, help="also write one row per video: top-k classes and probabilities"
    )
    extraction = parser.add_argument_group(
        "extraction; default: the settings recorded in each checkpoint, else those in "
        "index.json of the data root it was trained on (written by tools/extract_frames_flow.py); "
        "when neither exists, --short-side, --bound and --preset must be given"
    )
    extraction.add_argument(
        "--short-side", type=int, help="resize frames to this short side (0: keep the size)"
    )
    extraction.add_argument("--bound", type=float, help="flow bound in pixels")
    extraction.add_argument("--preset", choices=sorted(PRESETS), help="TV-L1 preset")
    extraction.add_argument(
        "--max-frames", type=int, help="use only the first N frames, as extracted with it"
    )
    extraction.add_argument(
        "--jpeg-quality",
        type=int,
        help="JPEG quality of the extracted frames; the round trip is done in memory (0: none)",
    )
    extraction.add_argument(
        "--override-extraction",
        action="store_true",
        help="use the extraction options given even where they contradict a checkpoint's "
        "recorded settings (refused otherwise: the frames would differ from training's)",
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    return parser.parse_args(argv)


def _describe(settings) -> str:
    parts = []
    for key, value in settings.as_dict().items():
        if key == "max_frames" and not value:
            continue
        shown = f"{value:g}" if isinstance(value, float) else value
        parts.append(f"--{key.replace('_', '-')} {shown}")
    return ", ".join(parts)


def write_csv(path: Path, rows: list[dict], columns: list[str], top: int) -> Path:
    """One row per video: for each stream (and fused) its top-k classes and probabilities."""
    header = ["video"] + [f"{c}_{what}{k}" for c in columns for k in range(1, top + 1)
                          for what in ("class", "prob")]  # fmt: skip
    lines = []
    for row in rows:
        cells = [row["video"]]
        for column in columns:
            for cls, prob in row["top"][column]:
                cells += [cls, f"{prob:.4f}"]
        lines.append(cells)
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(lines)
    return write_text(path, text.getvalue())


def main(argv=None) -> dict | list[dict]:
    args = get_args(argv)  # before torch is imported: --help and typos answer at once
    from engine.device import resolve_device
    from engine.inference import collect_videos, extraction_settings, load_stream, predict_video

    if args.spatial is None and args.motion is None and args.clip is None:
        raise UserError("give one or more of --spatial, --motion and --clip CHECKPOINT")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    videos = collect_videos(args.videos)
    single = len(videos) == 1 and args.videos[0].is_file()
    if args.gif is not None and not single:
        raise UserError("--gif draws one video; give one video file, or leave --gif out")
    if args.cam is not None and not single:
        raise UserError("--cam draws one video; give one video file, or leave --cam out")
    if args.cam is not None and args.cam.suffix.lower() not in (".gif", ".png"):
        raise UserError(f"--cam {args.cam}: give a .gif (animated) or .png (a strip) file")
    device = resolve_device(args.device)
    streams = {
        name: load_stream(getattr(args, name), name, device)
        for name in STREAM_OPTIONS
        if getattr(args, name) is not None
    }
    first, *others = streams.values()
    for other in others:
        hint = "give checkpoints trained on the same dataset and split files"
        check_same_classes(first.classes, other.classes, first.path, other.path, hint)
    classes = next(iter(streams.values())).classes
    given = {k: getattr(args, k) for k in EXTRACTION_OPTIONS}
    override = args.override_extraction
    settings = {n: extraction_settings(s, given, override) for n, s in streams.items()}
    for name, stream in streams.items():
        config, source = settings[name]
        print(
            f"{name}: {stream.path} ({stream.arch}, epoch {stream.epoch}); "
            f"{_describe(config)} ({source})"
        )

    results = []
    start = time.perf_counter()
    top = min(args.top, len(classes))
    bar = progress(videos, unit="video", show=not single, leave=True)
    for path in bar:
        samples = {} if args.cam is not None else None
        columns, shown, fps = predict_video(
            path, streams, settings, args.weights, args.softmax, device, single, samples
        )
        final = columns["fused" if "fused" in columns else next(iter(columns))]
        best = int(np.argmax(final))
        ranked = {
            name: [(classes[i], float(p[i])) for i in np.argsort(-p, kind="stable")[:top]]
            for name, p in columns.items()
        }
        results.append(
            {
                "video": str(path),
                "classes": classes,
                "top1": classes[best],
                "top": ranked,
                **{name: [float(x) for x in p] for name, p in columns.items()},
            }
        )
        if single:
            print(f"scored in {time.perf_counter() - start:.1f} s")
            print(top_table(columns, classes, args.top))
        else:
            bar.write(f"{path}: {classes[best]} {100 * final[best]:.1f}%")
        if args.gif is not None:
            text = f"{classes[best]} {100 * final[best]:.1f}%"
            print(f"wrote {write_gif(args.gif, shown, text, fps or 25.0)}")
        if args.cam is not None:
            print(f"wrote {write_cam(args.cam, streams, samples, best, classes)}")
    if not single:
        print(f"{len(videos)} videos in {time.perf_counter() - start:.1f} s")
    output = results[0] if single else results
    if args.json is not None:
        write_json(args.json, output)
        print(f"wrote {args.json}")
    if args.csv is not None:
        print(f"wrote {write_csv(args.csv, results, list(results[0]['top']), top)}")
    return output


if __name__ == "__main__":
    run_cli(main)
