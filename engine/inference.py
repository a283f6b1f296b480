"""Inference on video frames in memory, with the same code evaluation uses.

A checkpoint is rebuilt as its stream's recognizer (network.recognizer.model_from_checkpoint)
and its test-time sample builder (the stream spec, with the options it was trained with). The
video's frames, and the flow the sampled stacks need, are computed in memory with the
extraction code and go through the same JPEG round trip as extracted frames: a prediction sees
exactly what evaluation of the same video sees.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from dataloader.datasets import decode_jpeg
from dataloader.frame_size import half_size
from engine.config import options_from_dict, resolve_test_sequences
from engine.evaluation import score_kind
from engine.late_fusion import fuse, fused_kind
from engine.loops import video_score
from engine.streams import STREAMS
from extraction.decode import find_videos
from extraction.settings import INDEX_NAME, ExtractionSettings, read_index_settings
from extraction.tvl1 import flow_to_uint8, make_tvl1, to_gray
from network.recognizer import model_from_checkpoint
from utils.checkpoint import load_checkpoint
from utils.errors import UserError
from utils.metrics import probabilities


@dataclass
class StreamModel:
    """A trained stream rebuilt from its checkpoint, with the options it was trained with."""

    name: str  # the stream spec's name
    path: Path
    model: torch.nn.Module
    classes: list[str]
    arch: str
    epoch: int
    args: dict  # every option of the stream's command line: the checkpoint's, else defaults
    extraction: dict | None = None  # how its training frames were extracted, if recorded
    videos: dict | None = None  # how it read video files, if trained from them (--videos)

    def sample_builder(self):
        """The stream's test-time sample builder, as the test split's dataset builds it."""
        spec = STREAMS[self.name]
        return spec.sample_builder(options_from_dict(spec, self.args))

    def scores(self, clips: torch.Tensor, device: torch.device) -> np.ndarray:
        """A test sample's [classes] scores, exactly as evaluation computes them."""
        score = video_score(
            self.model,
            clips,
            device,
            softmax_average=bool(self.args["softmax_average"]),
            chunk=self.args["eval_chunk"],
        )
        return score.numpy()

    @property
    def kind(self) -> str:
        """What ``scores`` returns, as evaluation's score files say it."""
        return score_kind(bool(self.args["softmax_average"]))

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        return probabilities(scores, self.kind)


def load_stream(path, stream: str | None, device: torch.device) -> StreamModel:
    """Rebuild the network a checkpoint was trained with and load its weights (weights_only).

    ``stream``: the stream the checkpoint must be of; None takes whichever it is.
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    stream = ckpt["stream"] if stream is None else stream
    if ckpt["stream"] != stream:
        raise UserError(
            f"{path} is a {ckpt['stream']}-stream checkpoint; pass it as --{ckpt['stream'].replace('_', '-')}"
        )
    if stream not in STREAMS:
        raise UserError(f"{path} is of an unknown stream {stream!r}")
    options = options_from_dict(STREAMS[stream], ckpt.get("args", {}))  # over the defaults
    resolve_test_sequences(options)  # as engine.config.make_options does for --evaluate
    args = options.as_dict()
    model = model_from_checkpoint(ckpt, path).to(device).eval()
    return StreamModel(
        stream,
        path,
        model,
        list(ckpt["classes"]),
        ckpt["arch"],
        int(ckpt["epoch"]),
        args,
        ckpt.get("extraction"),
        ckpt.get("videos"),
    )


def jpeg_round_trip(image: np.ndarray, quality: int, half: bool = False) -> np.ndarray:
    """What an RGB [H, W, 3] or gray [H, W] image becomes once stored as JPEG by the extraction
    tool and read back by the data layer: BGR or gray, at half size if asked; quality 0 stores
    no JPEG (half size is then an area resize)."""
    color = image.ndim == 3
    image = np.ascontiguousarray(image[..., ::-1]) if color else image
    if not quality:
        return half_size(image) if half else image
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise UserError("cannot JPEG-encode a frame; try --jpeg-quality 0")
    return decode_jpeg(data, color, half)


def memory_reader(
    frames: np.ndarray, modality: str, settings: ExtractionSettings, flow_device: str = "cpu"
):
    """``read(i)`` over [N, H, W, 3] RGB frames in memory, as the dataset reads files.

    ``rgb``: frame i, BGR (``half=True``: at half size). ``flow``: flow frame i, TV-L1 from frame
    i to i+1 as the extraction tool computes it, as (x, y) uint8 images; only the flow frames a
    sample asks for are computed.
    Returns the reader and the number of frames (flow: N - 1).
    """
    quality = settings.jpeg_quality
    if modality == "rgb":
        return (lambda i, half=False: jpeg_round_trip(frames[i], quality, half)), len(frames)
    if modality != "flow":
        raise ValueError(f"no in-memory reader for modality {modality!r}")
    if len(frames) < 2:
        raise UserError("the video has a single frame: a flow stream needs two")
    tvl1 = make_tvl1(settings.preset, settings.method, flow_device)

    def read(i):
        f = tvl1(to_gray(frames[i]), to_gray(frames[i + 1]))
        return tuple(
            jpeg_round_trip(flow_to_uint8(f[..., c], settings.bound), quality) for c in (0, 1)
        )

    return read, len(frames) - 1


# What must be known to compute a stream's frames as its training frames were; the others
# (JPEG quality, frame limit) may fall back to the extraction tool's defaults.
REQUIRED_SETTINGS = ("short_side", "bound", "preset")


def _flags(settings: dict) -> str:
    return " ".join(
        f"--{k.replace('_', '-')} {v:g}" if isinstance(v, float) else f"--{k.replace('_', '-')} {v}"
        for k, v in settings.items()
    )


def extraction_settings(
    stream: StreamModel, given: dict, override: bool = False
) -> tuple[ExtractionSettings, str]:
    """How this stream's training frames were extracted, and where that was read.

    The settings recorded in the checkpoint (for one trained from video files: their short
    side, no JPEG), else those in ``index.json`` of the data root it was trained on. Options ``given`` on the command line (not None) that contradict them are
    refused (other frames than training saw), unless ``override``. When neither is there, a
    guess would silently compute other flow than training saw: the command line must give
    REQUIRED_SETTINGS, the rest take the extraction tool's defaults.
    """
    given = {k: v for k, v in given.items() if v is not None}
    root = stream.args.get("data_root")
    saved, source = None, "extraction defaults"
    if stream.videos is not None:  # decoded and resized, never a JPEG (a quality of 0)
        saved = ExtractionSettings(short_side=stream.videos["short_side"], jpeg_quality=0)
        source = f"{stream.path}, trained from video files"
    elif stream.extraction is not None:
        saved, source = ExtractionSettings.from_dict(stream.extraction), f"{stream.path}"
    elif root and read_index_settings(root) is not None:
        saved, source = read_index_settings(root), str(Path(root) / INDEX_NAME)
    else:
        missing = [k for k in REQUIRED_SETTINGS if k not in given]
        if missing:
            options = " ".join(f"--{k.replace('_', '-')} ..." for k in missing)
            raise UserError(
                f"cannot tell how the frames {stream.path} was trained on were extracted (not "
                f"recorded in it, no {INDEX_NAME} in {root}); pass {options}"
            )
    settings = (saved or ExtractionSettings()).as_dict()
    given = {k: v for k, v in given.items() if k in settings}
    contradicting = {k: v for k, v in given.items() if saved is not None and v != settings[k]}
    if contradicting and not override:
        recorded = {k: settings[k] for k in contradicting}
        raise UserError(
            f"{stream.path} was trained on frames extracted with {_flags(recorded)} (recorded "
            f"in {source}), not {_flags(contradicting)}: leave them out to compute the frames "
            "as training saw them, or pass --override-extraction to use them anyway"
        )
    if given:
        settings.update(given)
        source = "command line" if len(given) == len(settings) else f"{source} and command line"
    return ExtractionSettings(**settings), source


def collect_videos(paths: list[Path]) -> list[Path]:
    """The video files named, and those under the folders named (sorted), in order."""
    videos = []
    for path in paths:
        if path.is_dir():
            found = find_videos(path)
            if not found:
                raise UserError(f"no videos (.avi .mp4 .mkv .webm) under {path}; check the path")
            videos.extend(found)
        elif path.is_file():
            videos.append(path)
        else:
            raise UserError(f"video not found: {path}; give the path of a video file or folder")
    return videos


def columns(streams: dict, scores: dict, weights=None, use_softmax: bool = False) -> dict:
    """Each stream's probabilities from its [classes] scores, and the fusion's of two or more."""
    out = {name: streams[name].probabilities(s) for name, s in scores.items()}
    if len(scores) >= 2:
        kinds = [streams[name].kind for name in scores]
        fused = fuse([s[None] for s in scores.values()], weights, use_softmax, kinds)
        out["fused"] = probabilities(fused[0], fused_kind(kinds, use_softmax))
    return out
