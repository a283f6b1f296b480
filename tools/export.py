"""Export a trained stream for deployment: ONNX (onnxruntime, TensorRT) and TorchScript.

    python tools/export.py record/spatial/checkpoint.pth.tar --onnx spatial.onnx \\
        [--torchscript spatial.pt]

The exported network is the whole recognizer: uint8 input ``[B, K, C, H, W]`` (clips
``[B, K, 3, T, H, W]``), its own normalisation, backbone and consensus head, out ``[B, classes]``
scores as evaluation computes them (one row per crop sequence; evaluation averages the crops'
rows). Batch and snippet count are dynamic; crop size and channels are fixed. Beside each file,
``<name>.json`` holds what a caller needs: classes, input shape, statistics, sampling and the
extraction settings the training frames were made with.

ONNX goes through torch.onnx's TorchScript-based exporter (``dynamo=False``), opset 20: it runs
offline with no package beyond onnx, and exports a ResNet in about a second where the
torch.export-based one (which also needs onnxscript) takes ten or more. Both are checked
here: each file is run (onnxruntime, torch.jit.load) at another batch size and snippet count
than it was traced with, and must match PyTorch to 1e-4, else nothing is kept. An exporter that
cannot export a model (an operator it lacks) stops with one line naming it, the arch and its error.
"""

import argparse
import contextlib
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.atomic import write_json
from utils.cli import Parser
from utils.errors import UserError, run_cli

OPSET = 20  # the newest the TorchScript-based exporter fully supports (torch 2.14)
TOLERANCE = 1e-4  # largest difference to PyTorch's output a file may show
INPUT, OUTPUT = "video", "scores"
TRACE_SHAPE = (2, 3)  # (batch, snippets) traced with; checked at another
CHECK_SHAPE = (1, 4)


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a stream's checkpoint.pth.tar")
    parser.add_argument("--onnx", type=Path, help="write the ONNX model here (OUT.onnx)")
    parser.add_argument("--torchscript", type=Path, help="write the TorchScript model here")
    args = parser.parse_args(argv)
    if args.onnx is None and args.torchscript is None:
        parser.error("give --onnx OUT.onnx and/or --torchscript OUT.pt")
    return args


def deployed(stream):
    """The stream's recognizer as a module of one uint8 input, in eval mode."""
    from torch import nn

    softmax = bool(stream.args["softmax_average"])

    class Deployed(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, video):
            return self.model(video, probabilities=softmax)

    return Deployed(stream.model).eval()


def snippet_shape(stream) -> tuple[int, ...]:
    """One snippet's [C, H, W] (clips: [C, T, H, W]) as the stream's test samples have it."""
    from dataloader.samples import ClipSampleBuilder

    builder = stream.sample_builder()
    size = builder.crop_size
    if isinstance(builder, ClipSampleBuilder):  # the clip and flow-clip streams
        return (builder.in_channels, builder.clip_length, size, size)
    return (builder.in_channels, size, size)


def _example(shape, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def _check(name: str, run, model, snippet) -> float:
    """Run an exported file at CHECK_SHAPE; its largest difference to PyTorch's output."""
    import torch

    video = _example((*CHECK_SHAPE, *snippet), seed=1)
    with torch.inference_mode():
        expected = model(video).numpy()
    difference = float(abs(run(video) - expected).max())
    if not difference <= TOLERANCE:
        raise UserError(
            f"the exported {name} model differs from PyTorch by {difference:.2e} "
            f"(more than {TOLERANCE:g}); nothing written, please report it"
        )
    return difference


@contextlib.contextmanager
def exporter(name: str, arch: str):
    """What an exporter cannot do (an operator it lacks, a trace it cannot make) as one line:
    the temporary file goes with it (utils.atomic), the other format may still work."""
    try:
        yield
    except (RuntimeError, TypeError, ValueError, NotImplementedError) as err:
        detail = " ".join(str(err).split())[:200]
        raise UserError(
            f"the {name} exporter cannot export {arch} ({type(err).__name__}: {detail}); "
            f"nothing written for {name}: export the other format alone, or please report it"
        ) from None


def export_onnx(model, snippet, path: Path, arch: str) -> float:
    """Write ``model`` as ONNX with dynamic batch and snippets; its checked difference."""
    import onnxruntime
    import torch

    from utils.atomic import atomic_write

    with warnings.catch_warnings(), exporter("ONNX", arch):
        # Tracer and deprecation notes; whether the trace generalises is checked below.
        warnings.simplefilter("ignore")
        with atomic_write(path) as file:
            torch.onnx.export(
                model,
                (_example((*TRACE_SHAPE, *snippet), seed=0),),
                file,
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch", 1: "snippets"}, OUTPUT: {0: "batch"}},
            )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    try:
        return _check("ONNX", lambda v: session.run(None, {INPUT: v.numpy()})[0], model, snippet)
    except UserError:
        path.unlink()
        raise


def export_torchscript(model, snippet, path: Path, arch: str) -> float:
    """Write ``model`` traced as TorchScript; its checked difference."""
    import torch

    from utils.atomic import atomic_write

    with warnings.catch_warnings(), torch.inference_mode(False), exporter("TorchScript", arch):
        warnings.simplefilter("ignore")  # as for ONNX: checked below
        traced = torch.jit.trace(
            model, (_example((*TRACE_SHAPE, *snippet), seed=0),), check_trace=False
        )
        with atomic_write(path) as file:
            torch.jit.save(traced, file)
    loaded = torch.jit.load(str(path), map_location="cpu")

    def run(video):
        with torch.inference_mode():
            return loaded(video).numpy()

    try:
        return _check("TorchScript", run, model, snippet)
    except UserError:
        path.unlink()
        raise


def metadata(stream, snippet, files: dict) -> dict:
    """What a caller of the exported model needs to feed it as evaluation does."""
    from engine.evaluation import score_kind
    from engine.inference import extraction_settings

    try:
        settings, source = extraction_settings(stream, {})
        extraction = settings.as_dict()
    except UserError:
        extraction, source = None, "not recorded in the checkpoint nor its data root"
    builder = stream.sample_builder()
    sampling = {"test_snippets": builder.test_snippets, "ten_crop": builder.ten_crop}
    for key in ("stack_length", "clip_length", "frame_stride", "short_side"):
        if hasattr(builder, key):
            sampling[key] = getattr(builder, key)
    layouts = {
        "spatial": "RGB frames, channels R, G, B",
        "motion": "stacks of flow frames: channel 2j is the x-flow and 2j+1 the y-flow of the "
        "stack's j-th frame, uint8 = 128 + flow * 127.5 / bound (128: no motion)",
        "clip": "RGB clips [3, T, H, W]: channels R, G, B, then frames in time order",
        "flow_clip": "flow clips [2, T, H, W]: channel 0 the x-flow and 1 the y-flow, then frames "
        "in time order, uint8 = 128 + flow * 127.5 / bound (128: no motion)",
    }
    model = stream.model
    return {
        "stream": stream.name,
        "checkpoint": str(stream.path),
        "epoch": stream.epoch,
        "arch": stream.arch,
        "consensus": model.config["consensus"],
        "classes": stream.classes,
        "files": files,
        "input": {
            "name": INPUT,
            "dtype": "uint8",
            "shape": ["batch", "snippets", *snippet],
            "layout": layouts.get(stream.name, ""),
            "snippets": builder.test_snippets,
        },
        "output": {
            "name": OUTPUT,
            "shape": ["batch", len(stream.classes)],
            "kind": score_kind(bool(stream.args["softmax_average"])),
            "note": "one row per crop sequence; evaluation averages the rows of a video's crops",
        },
        "statistics": {
            "mean": [float(x) for x in model.mean],
            "std": [float(x) for x in model.std],
            "note": "on the 0..255 scale, applied inside the model: feed raw uint8",
        },
        "sampling": sampling,
        # Test crops: this fraction of the frame's short side, centred, resized to size x size.
        "crop": {"size": builder.crop_size, "fraction": test_crop_fraction(builder)},
        "extraction": extraction,
        "extraction_source": source,
        "onnx_opset": OPSET,
    }


def test_crop_fraction(builder) -> float:
    """How much of the short side a test crop covers: clips' crop / short side, else 224/256."""
    from dataloader.samples import ClipSampleBuilder
    from dataloader.transforms import TEST_CROP_FRACTION

    if isinstance(builder, ClipSampleBuilder):
        return builder.crop_size / builder.short_side
    return TEST_CROP_FRACTION


def main(argv=None) -> dict:
    args = get_args(argv)
    import torch

    from engine.inference import load_stream

    stream = load_stream(args.checkpoint, None, torch.device("cpu"))
    model = deployed(stream)
    snippet = snippet_shape(stream)
    written = {}  # format -> path, each with its checked difference
    try:
        if args.onnx is not None:
            difference = export_onnx(model, snippet, args.onnx, stream.arch)
            written["onnx"] = args.onnx
            print(f"wrote {args.onnx} (opset {OPSET}; onnxruntime matches PyTorch to "
                  f"{difference:.1e})")  # fmt: skip
        if args.torchscript is not None:
            difference = export_torchscript(model, snippet, args.torchscript, stream.arch)
            written["torchscript"] = args.torchscript
            print(f"wrote {args.torchscript} (TorchScript matches PyTorch to {difference:.1e})")
    finally:  # a format that failed leaves the other one whole, with its metadata
        info = metadata(stream, snippet, {k: p.name for k, p in written.items()})
        for path in {p.with_suffix(".json") for p in written.values()}:
            write_json(path, info)
            print(f"wrote {path}")
    return info


if __name__ == "__main__":
    run_cli(main)
