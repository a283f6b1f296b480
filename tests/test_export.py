"""tools/export.py: the exported ONNX and TorchScript files compute what the checkpoint does."""

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from engine.streams import STREAMS
from network.recognizer import build_recognizer
from tests.helpers import save_stream_checkpoint, single_thread
from tools import export
from tools.synthetic_actions import generate
from utils.errors import UserError

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["Jump", "Run", "Swim"]
EXTRACTION = {"short_side": 48, "bound": 15.0, "preset": "fast", "max_frames": None}
# (stream, model config, options, one snippet's shape)
CASES = {
    "spatial_avg": ("spatial", dict(arch="resnet18", in_channels=3, consensus="avg"), {}, (3, 32, 32)),
    "motion_lstm": (
        "motion",
        dict(arch="resnet18", in_channels=4, consensus="lstm", rnn_hidden=8),
        dict(stack_length=2),
        (4, 32, 32),
    ),
    "clip_r2plus1d": (
        "clip",
        dict(arch="r2plus1d_18", in_channels=3, consensus="avg"),
        dict(clip_length=2, clip_short_side=20, crop_size=16),
        (3, 2, 16, 16),
    ),
    "clip_swin3d": (  # a transformer family: shifted windows, padding, relative positions
        "clip",
        dict(arch="swin3d_t", in_channels=3, consensus="avg"),
        dict(clip_length=2, clip_short_side=20, crop_size=16),
        (3, 2, 16, 16),
    ),
    "flow_clip_mc3": (
        "flow_clip",
        dict(arch="mc3_18", in_channels=2, consensus="avg"),
        dict(clip_length=2, clip_short_side=20, crop_size=16),
        (2, 2, 16, 16),
    ),
}  # fmt: skip


def _checkpoint(tmp_path, case: str) -> tuple[Path, torch.nn.Module]:
    stream, config, options, _ = CASES[case]
    options = {"crop_size": 32, **options}
    torch.manual_seed(0)
    config = dict(config, num_classes=len(CLASSES), dropout=0.5, partial_bn=False)
    model = build_recognizer(**config, statistics=STREAMS[stream].statistics)
    with torch.no_grad():  # BN statistics and a classifier other than the initial ones
        model.train()(torch.randint(0, 256, (2, 2, *CASES[case][3]), dtype=torch.uint8))
        model.head.fc.weight.normal_(0, 0.05)
    path = tmp_path / f"{case}.pth.tar"
    save_stream_checkpoint(path, stream, model, CLASSES, EXTRACTION, test_snippets=3, **options)
    return path, model.eval()


@pytest.mark.parametrize("case", list(CASES))
def test_exported_models_match_pytorch(tmp_path, case, capsys):
    path, model = _checkpoint(tmp_path, case)
    onnx_path, script_path = tmp_path / f"{case}.onnx", tmp_path / f"{case}.pt"
    info = export.main([str(path), "--onnx", str(onnx_path), "--torchscript", str(script_path)])
    assert "matches PyTorch" in capsys.readouterr().out

    snippet = CASES[case][3]
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(script_path))
    for batch, snippets in ((3, 2), (1, 4)):  # dynamic batch and snippet count
        video = torch.randint(0, 256, (batch, snippets, *snippet), dtype=torch.uint8)
        with torch.no_grad():
            expected = model(video).numpy()
            traced = scripted(video).numpy()
        (out,) = session.run(None, {"video": video.numpy()})
        assert out.shape == (batch, len(CLASSES)) and np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)
        np.testing.assert_allclose(traced, expected, rtol=0, atol=1e-4)

    saved = json.loads(onnx_path.with_suffix(".json").read_text())
    assert saved == json.loads(json.dumps(info))
    assert saved["classes"] == CLASSES and saved["stream"] == CASES[case][0]
    assert saved["input"]["shape"] == ["batch", "snippets", *snippet]
    assert saved["input"]["dtype"] == "uint8" and saved["input"]["snippets"] == 3
    assert saved["input"]["layout"]  # what the channels hold, for every stream
    assert saved["output"]["kind"] == "logits"
    np.testing.assert_allclose(saved["statistics"]["mean"], model.mean.numpy(), rtol=1e-6)
    assert saved["extraction"]["short_side"] == 48 and saved["extraction"]["preset"] == "fast"
    assert saved["files"] == {"onnx": onnx_path.name, "torchscript": script_path.name}


def test_export_refuses_bad_requests(tmp_path):
    path, _ = _checkpoint(tmp_path, "spatial_avg")
    with pytest.raises(UserError, match="--onnx OUT.onnx and/or --torchscript"):
        export.main([str(path)])
    with pytest.raises(UserError, match="checkpoint not found"):
        export.main([str(tmp_path / "none.pth.tar"), "--onnx", str(tmp_path / "x.onnx")])


def test_what_an_exporter_cannot_do_is_one_line_and_no_file(tmp_path, monkeypatch):
    path, _ = _checkpoint(tmp_path, "spatial_avg")

    def unsupported(*args, **kwargs):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::roll", 20, "")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    with pytest.raises(UserError, match=r"the ONNX exporter cannot export resnet18 \(Unsupported"):
        export.main([str(path), "--onnx", str(tmp_path / "x.onnx")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spatial_avg.pth.tar"]
    monkeypatch.undo()

    def untraceable(*args, **kwargs):
        raise RuntimeError("a trace it cannot make")

    monkeypatch.setattr(torch.jit, "trace", untraceable)  # ONNX first, then this fails
    argv = [str(path), "--onnx", str(tmp_path / "x.onnx"), "--torchscript", str(tmp_path / "x.pt")]
    with pytest.raises(UserError, match=r"the TorchScript exporter cannot export resnet18"):
        export.main(argv)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["spatial_avg.pth.tar", "x.json", "x.onnx"]  # the ONNX model kept whole
    assert json.loads((tmp_path / "x.json").read_text())["files"] == {"onnx": "x.onnx"}


def test_the_docs_example_runs_an_exported_model_on_a_video(tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "prediction.md").read_text()
    example = re.search(r"```python\n(.*?onnxruntime.*?)```", text, re.S).group(1)
    assert len([line for line in example.splitlines() if line.strip()]) <= 12
    path, _ = _checkpoint(tmp_path, "spatial_avg")
    data = generate(tmp_path / "data", 1, 1, (64, 48), (10, 10), seed=3)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.avi").symlink_to(data.clips[0].path)
    export.main([str(path), "--onnx", "spatial.onnx"])
    capsys.readouterr()
    exec(compile(example, "docs/prediction.md", "exec"), {})
    assert capsys.readouterr().out.strip() in CLASSES
