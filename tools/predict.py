"""Classify one raw video with trained stream checkpoints: top-k of spatial, motion and fused.

    python tools/predict.py clip.avi --spatial record/spatial/checkpoint.pth.tar \
        --motion record/motion/checkpoint.pth.tar [--top 5] [--gif out.gif]

The video is decoded, resized and turned into TV-L1 flow in memory with the extraction tool's own
code (dataloader/extraction.py), with the settings the checkpoint's training frames were
extracted with (read from index.json in its data root), and the frames it uses go through the
same JPEG round trip as extracted frames: a prediction sees exactly what evaluation sees. Nothing
is written but the optional GIF and JSON. Frames and stacks are sampled and cropped as at test
time, with the settings (arch, classes, crop size, test frames, stack length) each checkpoint was
trained with; only the flow frames the sampled stacks use are computed.
"""

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy.special import softmax

from dataloader.extraction import (
    PRESETS,
    DecodeError,
    decode_video,
    flow_to_uint8,
    make_tvl1,
    resize_short_side,
    to_gray,
)
from dataloader.sampling import num_stack_starts, stack_indices, uniform_indices
from dataloader.transforms import flow_clip, rgb_clip, test_crops
from fusion import add_fusion_arguments, fuse
from network import build_model
from utils.atomic import write_json
from utils.checkpoint import load_checkpoint
from utils.engine import evaluate, resolve_device
from utils.errors import UserError, run_cli

INDEX_NAME = "index.json"  # tools/extract_frames_flow.py's record of a data root's settings
# tools/extract_frames_flow.py's defaults, for checkpoints whose data root is not at hand.
EXTRACTION_DEFAULTS = {
    "short_side": 256,
    "bound": 20.0,
    "preset": "fast",
    "max_frames": None,
    "jpeg_quality": 95,
}


@dataclass
class StreamModel:
    """A trained stream rebuilt from its checkpoint, with the test settings it was trained with."""

    name: str  # spatial | motion
    path: Path
    model: torch.nn.Module
    classes: list[str]
    arch: str
    epoch: int
    args: dict

    def setting(self, key: str, default):
        value = self.args.get(key)
        return default if value is None else value


def load_stream(path: str | Path, stream: str, device: torch.device) -> StreamModel:
    """Rebuild the network a checkpoint was trained with and load its weights (weights_only)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    if ckpt["stream"] != stream:
        raise UserError(
            f"{path} is a {ckpt['stream']}-stream checkpoint; pass it as --{ckpt['stream']}"
        )
    args = ckpt.get("args", {})
    model = build_model(
        ckpt["arch"],
        len(ckpt["classes"]),
        ckpt["in_channels"],
        dropout=args.get("dropout", 0.0),
        pretrained="none",
        partial_bn=False,
    )
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:200]
        raise UserError(f"{path}: weights do not fit {ckpt['arch']}: {detail}") from err
    model.to(device).eval()
    return StreamModel(
        stream, path, model, list(ckpt["classes"]), ckpt["arch"], int(ckpt["epoch"]), args
    )


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """What an image becomes once stored as JPEG by the extraction tool and read back by the
    data layer (RGB [H, W, 3] or gray [H, W]); quality 0 leaves it as it is."""
    if not quality:
        return image
    color = image.ndim == 3
    ok, data = cv2.imencode(
        ".jpg", image[..., ::-1] if color else image, [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise UserError("cannot JPEG-encode a frame; try --jpeg-quality 0")
    return cv2.imdecode(data, cv2.IMREAD_COLOR_RGB if color else cv2.IMREAD_GRAYSCALE)


def spatial_input(frames: np.ndarray, stream: StreamModel, jpeg_quality: int) -> torch.Tensor:
    """[N, H, W, 3] uint8 RGB -> SpatialDataset's test clips: uniform frames, test crops."""
    idx = uniform_indices(len(frames), stream.setting("test_frames", 19)).tolist()
    images = {i: jpeg_round_trip(frames[i], jpeg_quality) for i in set(idx)}
    height, width = frames.shape[1:3]
    crops = test_crops(width, height, stream.setting("ten_crop", False))
    return rgb_clip(images, np.asarray(idx), crops, stream.setting("crop_size", 224))


def motion_input(
    frames: np.ndarray, stream: StreamModel, preset: str, bound: float, jpeg_quality: int
) -> torch.Tensor:
    """[N, H, W, 3] uint8 RGB -> MotionDataset's test stacks (x, y flow interleaved).

    Flow frame i is TV-L1 from frame i to i+1, as the extraction tool computes it; only the
    ones in the sampled stacks are computed.
    """
    length = stream.setting("stack_length", 10)
    num_flow = len(frames) - 1
    starts = uniform_indices(num_stack_starts(num_flow, length), stream.setting("test_frames", 19))
    idx = stack_indices(starts, length, num_flow)
    tvl1 = make_tvl1(preset)
    flows = {}
    for i in np.unique(idx).tolist():
        f = tvl1(to_gray(frames[i]), to_gray(frames[i + 1]))
        flows[i] = [jpeg_round_trip(flow_to_uint8(f[..., c], bound), jpeg_quality) for c in (0, 1)]
    height, width = frames.shape[1:3]
    crops = test_crops(width, height, stream.setting("ten_crop", False))
    return flow_clip(flows, idx, crops, stream.setting("crop_size", 224))


def stream_scores(stream: StreamModel, clips: torch.Tensor, device: torch.device) -> np.ndarray:
    """The video's class scores exactly as evaluation computes them (utils.engine.evaluate)."""
    with warnings.catch_warnings():  # accuracy of one video with a dummy label: meaningless
        warnings.simplefilter("ignore")
        scores, _ = evaluate(
            stream.model,
            [(clips, torch.tensor([0]))],
            device,
            softmax_average=bool(stream.setting("softmax_average", False)),
            chunk=stream.setting("eval_chunk", 0),
            desc=f"{stream.name} stream",
        )
    return scores[0]


def probabilities(stream: StreamModel, scores: np.ndarray) -> np.ndarray:
    """Scores of a softmax-averaging stream already are probabilities; logits go through softmax."""
    if stream.setting("softmax_average", False):
        return scores.astype(np.float64)
    return softmax(scores.astype(np.float64))


def check_same_classes(spatial: StreamModel, motion: StreamModel) -> None:
    if [c.lower() for c in spatial.classes] != [c.lower() for c in motion.classes]:
        if len(spatial.classes) != len(motion.classes):
            detail = f"{len(spatial.classes)} vs {len(motion.classes)} classes"
        else:
            i = next(
                i
                for i, (a, b) in enumerate(zip(spatial.classes, motion.classes, strict=True))
                if a.lower() != b.lower()
            )
            detail = f"class {i + 1}: {spatial.classes[i]!r} vs {motion.classes[i]!r}"
        raise UserError(
            f"{spatial.path} and {motion.path} have different class names ({detail}); "
            "give checkpoints trained on the same dataset and split files"
        )


def format_table(columns: dict[str, np.ndarray], classes: list[str], top: int) -> str:
    """One column per stream: rank, then 'ClassName  12.3%' lines, best first."""
    top = min(top, len(classes))
    name_width = max(len(c) for c in classes)
    cells = {
        name: [
            f"{classes[i]:<{name_width}} {100 * p[i]:5.1f}%"
            for i in np.argsort(-p, kind="stable")[:top]
        ]
        for name, p in columns.items()
    }
    widths = {name: max(len(name), *(len(c) for c in col)) for name, col in cells.items()}
    lines = ["  #  " + "   ".join(f"{name:<{widths[name]}}" for name in cells)]
    for rank in range(top):
        lines.append(
            f"{rank + 1:3d}  "
            + "   ".join(f"{cells[name][rank]:<{widths[name]}}" for name in cells)
        )
    return "\n".join(lines)


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


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "video", type=Path, help="the video file to classify (any format PyAV reads)"
    )
    parser.add_argument(
        "--spatial", type=Path, help="spatial-stream checkpoint (checkpoint.pth.tar)"
    )
    parser.add_argument("--motion", type=Path, help="motion-stream checkpoint (checkpoint.pth.tar)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to list per stream")
    add_fusion_arguments(parser)
    parser.add_argument("--gif", type=Path, help="also write an animated GIF with the fused top-1")
    parser.add_argument("--json", type=Path, help="also write the probabilities here as JSON")
    extraction = parser.add_argument_group(
        "extraction; default: the settings in index.json of the data root each checkpoint was "
        "trained on (written by tools/extract_frames_flow.py), else that tool's defaults"
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
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser.parse_args(argv)


def extraction_settings(stream: StreamModel, args: argparse.Namespace) -> tuple[dict, str]:
    """How this stream's training frames were extracted, and where that was read.

    Options given on the command line win; then the ``settings`` of ``index.json`` in the data
    root the checkpoint was trained on; then the extraction tool's defaults.
    """
    settings = dict(EXTRACTION_DEFAULTS)
    source = "extraction defaults"
    root = stream.args.get("data_root")
    index = Path(root) / INDEX_NAME if root else None
    if index is not None and index.is_file():
        try:
            saved = json.loads(index.read_text())["settings"]
            settings.update({k: saved[k] for k in settings if k in saved})
            source = str(index)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: fall back to the defaults, as for a checkpoint from elsewhere
    given = {k: getattr(args, k) for k in settings if getattr(args, k) is not None}
    if given:
        settings.update(given)
        source = "command line" if len(given) == len(settings) else f"{source} and command line"
    return settings, source


def main(argv=None) -> dict:
    args = get_args(argv)
    if args.spatial is None and args.motion is None:
        raise UserError("give --spatial CHECKPOINT, --motion CHECKPOINT or both")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    if not args.video.is_file():
        raise UserError(f"video not found: {args.video}; give the path of a video file")
    device = resolve_device(args.device)
    streams = {}
    if args.spatial is not None:
        streams["spatial"] = load_stream(args.spatial, "spatial", device)
    if args.motion is not None:
        streams["motion"] = load_stream(args.motion, "motion", device)
    if len(streams) == 2:
        check_same_classes(streams["spatial"], streams["motion"])
    classes = next(iter(streams.values())).classes

    start = time.perf_counter()
    settings = {name: extraction_settings(stream, args) for name, stream in streams.items()}
    max_frames = [s["max_frames"] for s, _ in settings.values() if s["max_frames"]]
    try:
        video = decode_video(args.video, None, min(max_frames) if max_frames else None)
    except DecodeError as err:
        raise UserError(f"cannot decode {args.video} ({err}); give a readable video file") from None
    frames = {}  # short side -> resized frames, as the extraction tool resizes them
    scores = {}
    for name, stream in streams.items():
        config, source = settings[name]
        side = config["short_side"] or None
        if side not in frames:
            frames[side] = np.stack([resize_short_side(f, side) for f in video.frames])
        clip = frames[side][: config["max_frames"]]
        described = ", ".join(
            f"--{k.replace('_', '-')} {v:g}"
            if isinstance(v, float)
            else f"--{k.replace('_', '-')} {v}"
            for k, v in config.items()
            if k != "max_frames" or v
        )
        print(
            f"{name}: {stream.path} ({stream.arch}, epoch {stream.epoch}); {described} ({source})"
        )
        if name == "spatial":
            clips = spatial_input(clip, stream, config["jpeg_quality"])
        else:
            if len(clip) < 2:
                raise UserError(f"{args.video} has a single frame: the motion stream needs two")
            clips = motion_input(
                clip, stream, config["preset"], config["bound"], config["jpeg_quality"]
            )
        scores[name] = stream_scores(stream, clips, device)
    shown = next(iter(frames.values()))
    print(
        f"{args.video}: {len(video.frames)} frames of {video.width}x{video.height}, "
        f"scored in {time.perf_counter() - start:.1f} s"
    )

    columns = {name: probabilities(streams[name], s) for name, s in scores.items()}
    if len(scores) == 2:
        fused = fuse(scores["spatial"][None], scores["motion"][None], args.weights, args.softmax)
        columns["fused"] = softmax(fused[0])
    print(format_table(columns, classes, args.top))

    final = columns["fused" if "fused" in columns else next(iter(columns))]
    best = int(np.argmax(final))
    result = {
        "video": str(args.video),
        "classes": classes,
        "top1": classes[best],
        **{name: [float(x) for x in p] for name, p in columns.items()},
    }
    if args.gif is not None:
        text = f"{classes[best]} {100 * final[best]:.1f}%"
        print(f"wrote {write_gif(args.gif, shown, text, video.fps or 25.0)}")
    if args.json is not None:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    run_cli(main)
