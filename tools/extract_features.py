"""Pooled backbone features of videos, for your own classifiers: one npz, one row per video.

    python tools/extract_features.py --checkpoint record/spatial/checkpoint.pth.tar \\
        --data-root data/ucf101 [--set test|train|all] --out features.npz [--per-snippet]
    python tools/extract_features.py --arch resnet50 --pretrained imagenet --videos clips/ \\
        --short-side 256 --out features.npz

A video's features are the backbone's pooled output (before the head) for each of its test
snippets, averaged over its crops, and ``features`` is their mean over the snippets. Snippets are
sampled by the stream's own test-time sample builder: from a data root through the dataset that
evaluation reads, from video files through tools/predict.py's in-memory path. The npz holds
``videos``, ``classes``, ``features`` [videos, D], ``labels`` when known (a split, or videos in
``<folder>/<class>/`` folders) and with ``--per-snippet`` ``snippet_features`` [videos, N, D].
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloader.splits import DATASETS
from engine.streams import STREAMS
from extraction.settings import PRESETS
from network.archs import CLIP_FAMILIES, check_image_arch, is_clip_arch
from utils.cli import Parser
from utils.errors import UserError, run_cli

SETS = ("test", "train", "all")


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    model = parser.add_argument_group("model: a trained stream, or a pretrained backbone")
    model.add_argument("--checkpoint", type=Path, help="a stream's checkpoint.pth.tar")
    model.add_argument(
        "--arch",
        help="a backbone, no checkpoint: a torchvision image model (as spatial_cnn.py --arch) "
        f"or a 3D one ({CLIP_FAMILIES})",
    )
    model.add_argument(
        "--pretrained",
        default="imagenet",
        help="with --arch: 'imagenet' (clip archs: 'kinetics'), 'none' or a state-dict file",
    )
    model.add_argument(
        "--stream", choices=sorted(STREAMS), default="spatial", help="with --arch: its input"
    )
    data = parser.add_argument_group("videos: a data root with a split, or video files")
    data.add_argument("--data-root", type=Path, help="extracted frames (jpegs_256/, tvl1_flow/)")
    data.add_argument("--dataset", choices=DATASETS, help="default: the checkpoint's, or ucf101")
    data.add_argument("--splits-dir", type=Path, help="default: as for training")
    data.add_argument("--split", type=int, choices=(1, 2, 3), help="default: the checkpoint's")
    data.add_argument("--set", choices=SETS, default="test", help="which videos of the split")
    data.add_argument("--videos", type=Path, nargs="+", help="video files or folders of them")
    sampling = parser.add_argument_group("sampling; default: the checkpoint's test options")
    sampling.add_argument(
        "--test-snippets",
        "--test-frames",
        type=int,
        help="snippets per video (frames, stacks, clips)",
    )
    sampling.add_argument("--crop-size", type=int, help="network input size in pixels")
    sampling.add_argument("--ten-crop", action=argparse.BooleanOptionalAction, default=None)
    extraction = parser.add_argument_group(
        "extraction of --videos; default: as in tools/predict.py (checkpoint, index.json)"
    )
    extraction.add_argument("--short-side", type=int, help="resize frames to this short side")
    extraction.add_argument("--bound", type=float, help="flow bound in pixels")
    extraction.add_argument("--preset", choices=sorted(PRESETS), help="TV-L1 preset")
    parser.add_argument("--out", type=Path, required=True, help="the npz to write")
    parser.add_argument(
        "--per-snippet", action="store_true", help="also store every snippet's features"
    )
    parser.add_argument("--workers", type=int, default=2, help="data loading processes")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (args.arch is None):
        parser.error("give --checkpoint CKPT or --arch ARCH (a pretrained backbone)")
    if (args.data_root is None) == (args.videos is None):
        parser.error("give --data-root ROOT (a split's videos) or --videos PATH ...")
    return args


def load_model(args, device):
    """The stream whose backbone gives the features: a checkpoint's, or a pretrained one."""
    from engine.config import default_options
    from engine.inference import StreamModel, load_stream
    from network.recognizer import build_recognizer

    if args.checkpoint is not None:
        stream = load_stream(args.checkpoint, None, device)
    else:
        spec = STREAMS[args.stream]
        clip = is_clip_arch(args.arch)
        if not clip:
            check_image_arch(args.arch)
        if clip != (spec.archs == "video"):
            raise UserError(f"--arch {args.arch} does not take --stream {spec.name} input")
        defaults = default_options(spec)
        defaults.arch = args.arch
        if spec.resolve is not None:  # the input size the arch takes
            spec.resolve(defaults, set())
        channels = spec.sample_builder(defaults).in_channels
        config = dict(arch=args.arch, num_classes=1, in_channels=channels, dropout=0.0)
        config.update(partial_bn=False, consensus="avg")
        model = build_recognizer(**config, pretrained=args.pretrained, statistics=spec.statistics)
        stream = StreamModel(spec.name, Path(args.arch), model.to(device).eval(), [],
                             args.arch, 0, defaults.as_dict())  # fmt: skip
    given = {k: getattr(args, k) for k in ("test_snippets", "crop_size", "ten_crop")}
    stream.args.update({k: v for k, v in given.items() if v is not None})
    return stream


def snippet_features(model, sample, device):
    """A test sample ``[crops, N, ...]`` -> [N, D] pooled features, averaged over the crops."""
    import torch

    with torch.inference_mode():
        crops, count = sample.shape[:2]
        pooled = model.features(sample.flatten(0, 1).to(device))
        return pooled.float().view(crops, count, -1).mean(dim=0).cpu().numpy()


def from_data_root(args, stream, device):
    """(names, labels, classes, samples) of a split's videos, read as evaluation reads them."""
    from dataloader.datasets import FrameDataset
    from engine.config import options_from_dict
    from engine.data import load_run_split, make_loader

    options = dict(stream.args, data_root=str(args.data_root))
    for key in ("dataset", "splits_dir", "split"):
        if getattr(args, key) is not None:
            options[key] = str(getattr(args, key)) if key == "splits_dir" else getattr(args, key)
    if args.dataset is not None and args.splits_dir is None:
        options["splits_dir"] = None  # the new dataset's default, not the checkpoint's folder
    options["workers"] = args.workers
    options = options_from_dict(STREAMS[stream.name], options)
    split = load_run_split(options)
    videos = {"test": split.test, "train": split.train, "all": split.train + split.test}
    dataset = FrameDataset(
        args.data_root, videos[args.set], False, stream.sample_builder(), layout=options.layout()
    )
    loader = make_loader(dataset, options, device, train=False, seed=0)
    samples = (sample[0] for sample, _ in loader)
    return dataset.names, dataset.labels, list(split.classes), samples


def folder_labels(paths: list[Path], videos: list[Path]) -> tuple[list[int] | None, list[str]]:
    """Labels by class folder when one folder is given and every video is in a subfolder of it."""
    if len(paths) != 1 or not paths[0].is_dir():
        return None, []
    parents = [video.parent for video in videos]
    if any(parent.parent != paths[0] for parent in parents):
        return None, []
    classes = sorted({parent.name for parent in parents})
    return [classes.index(parent.name) for parent in parents], classes


def from_videos(args, stream, device):
    """(names, labels, classes, samples) of video files, sampled as tools/predict.py does."""
    from engine.inference import collect_videos, extraction_settings
    from engine.streaming import score_video

    videos = collect_videos(args.videos)
    given = {k: getattr(args, k) for k in ("short_side", "bound", "preset")}
    settings = {stream.name: extraction_settings(stream, given)}
    labels, classes = folder_labels(args.videos, videos)

    built = {}

    def keep(window, scores, samples):
        built.update(samples)

    def samples():
        for path in videos:  # the whole video as one window: evaluation's sample
            score_video(path, {stream.name: stream}, settings, device, on_window=keep, score=False)
            yield built.pop(stream.name)

    return [video.stem for video in videos], labels, classes, samples()


def main(argv=None) -> Path:
    args = get_args(argv)
    import numpy as np

    from engine.device import resolve_device
    from utils.atomic import atomic_write
    from utils.progress import progress

    device = resolve_device(args.device)
    stream = load_model(args, device)
    source = from_data_root if args.data_root is not None else from_videos
    names, labels, classes, samples = source(args, stream, device)
    per_snippet = np.stack(
        [
            snippet_features(stream.model, sample, device)
            for sample in progress(samples, total=len(names), unit="video", leave=True)
        ]
    )
    arrays = dict(
        videos=np.array(names),
        classes=np.array(classes, dtype=str),
        features=per_snippet.mean(axis=1),
        stream=np.array(stream.name),
        source=np.array(str(stream.path)),
    )
    if labels is not None:
        arrays["labels"] = np.array(labels, dtype=np.int64)
    if args.per_snippet:
        arrays["snippet_features"] = per_snippet
    with atomic_write(args.out) as file:
        np.savez(file, **arrays)
    count, snippets, size = per_snippet.shape
    print(f"wrote {args.out}: {count} videos x {size} features (mean of {snippets} snippets)")
    return args.out


if __name__ == "__main__":
    run_cli(main)
