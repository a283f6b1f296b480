"""The toolkit from Python, without a command line: typed options in, the same run out; and no
module below the command line sees argparse."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import make_options, resume_options
from engine.late_fusion import fuse_files
from engine.run import run
from engine.streams import SPATIAL
from tests.helpers import single_thread
from utils.errors import UserError
from utils.scores import load_npz

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(arch="resnet18", pretrained="none", crop_size=32, num_segments=2, test_snippets=3)
TINY.update(batch_size=3, workers=0, epochs=1, seed=1)

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def test_a_spatial_run_trains_and_evaluates_from_python(frame_root, tmp_path):
    options = make_options(SPATIAL, data_root=frame_root, record_dir=str(tmp_path / "s"), **TINY)
    assert options.partial_bn is False and options.test_sequences == 0  # resolved as the CLI does
    assert run(SPATIAL, options) == 0
    ckpt = torch.load(tmp_path / "s" / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["args"]["crop_size"] == 32 and ckpt["args"]["data_root"] == str(frame_root)
    trained = load_npz(tmp_path / "s" / "video_scores.npz")

    again = tmp_path / "again.npz"
    options, ckpt = resume_options(
        SPATIAL, tmp_path / "s" / "checkpoint.pth.tar", evaluate=True, scores_out=str(again)
    )
    assert options.crop_size == 32 and options.arch == "resnet18"  # the checkpoint's options
    assert run(SPATIAL, options, ckpt) == 0
    np.testing.assert_allclose(load_npz(again).scores, trained.scores, rtol=1e-5, atol=1e-5)

    results, fused = fuse_files({"trained": trained, "again": load_npz(again)}, weights=[1, 3])
    assert fused.videos == trained.videos and results["fused"]["videos"] == len(trained)
    np.testing.assert_allclose(fused.scores, trained.scores, rtol=1e-4, atol=1e-4)


def test_typed_options_refuse_what_the_command_line_refuses(frame_root):
    with pytest.raises(UserError, match="unknown option 'stack_length' for the spatial stream"):
        make_options(SPATIAL, data_root=frame_root, stack_length=4)
    with pytest.raises(UserError, match="--crop-size must be at least 1"):
        make_options(SPATIAL, data_root=frame_root, crop_size=0)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_below_the_command_line_imports_argparse_or_it():
    layers = [ROOT / name for name in ("dataloader", "network", "utils", "engine")]
    allowed = {
        ROOT / "utils" / "cli.py",
        ROOT / "engine" / "cli.py",
        ROOT / "engine" / "cli_data.py",
        ROOT / "engine" / "cli_predict.py",
    }
    modules = [p for layer in layers for p in sorted(layer.glob("*.py")) if p not in allowed]
    assert len(modules) > 30
    for path in modules:
        found = _imports(path) & {"argparse", "engine.cli", "utils.cli"}
        assert not found, f"{path.relative_to(ROOT)} imports {', '.join(sorted(found))}"


def test_the_backbone_modules_import_one_way():
    assert "network.backbones3d" not in _imports(ROOT / "network" / "backbones.py")
