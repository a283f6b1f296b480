"""tools/extract_features.py on the synthetic demo data: shapes, means and the sampling of
evaluation (frames on disk) and of predict (video files) giving the same features."""

import numpy as np
import pytest
import torch

from engine.streams import SPATIAL
from network.recognizer import build_recognizer
from tests.helpers import save_stream_checkpoint, single_thread
from tools import extract_features, extract_frames_flow
from tools.synthetic_actions import generate
from utils.errors import UserError

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
HEIGHT = 48
SMALL = ["--crop-size", "32", "--test-frames", "3", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's videos (red or green ball moving up or down) and their extracted frames."""
    base = tmp_path_factory.mktemp("features")
    data = generate(base / "data", 4, 3, (64, HEIGHT), (10, 10), seed=4)
    frames = base / "frames"
    extract_frames_flow.main(
        ["--videos", str(data.videos_dir), "--out", str(frames), "--short-side", str(HEIGHT)]
        + ["--workers", "1", "--preset", "fast"]
    )
    return base, data, frames


def _run(demo, *extra) -> dict:
    base, data, frames = demo
    argv = ["--data-root", str(frames), "--splits-dir", str(data.splits_dir), *SMALL]
    out = extract_features.main([*argv, *map(str, extra)])
    return dict(np.load(out))


def test_features_of_a_split_have_their_shapes_and_means(demo, tmp_path):
    base, data, _ = demo
    saved = _run(demo, "--arch", "resnet18", "--pretrained", "none", "--per-snippet",
                 "--set", "all", "--out", tmp_path / "all.npz")  # fmt: skip
    videos = len(data.clips)
    assert saved["features"].shape == (videos, 512)
    assert saved["snippet_features"].shape == (videos, 3, 512)
    np.testing.assert_allclose(saved["features"], saved["snippet_features"].mean(axis=1), rtol=1e-6)
    assert list(saved["classes"]) == data.classes and saved["labels"].shape == (videos,)
    by_name = {c.name: c.label for c in data.clips}
    assert [by_name[v] for v in saved["videos"]] == saved["labels"].tolist()
    assert "snippet_features" not in _run(demo, "--arch", "resnet18", "--pretrained", "none",
                                          "--out", tmp_path / "test.npz")  # fmt: skip


def test_video_files_give_the_features_of_their_extracted_frames(demo, tmp_path):
    """A checkpoint's features of video files (decoded and sampled in memory, as predict does)
    are those of the same videos' frames on disk (as evaluation reads them)."""
    base, data, frames = demo
    torch.manual_seed(0)
    config = dict(arch="resnet18", num_classes=4, in_channels=3, dropout=0.5, partial_bn=False,
                  consensus="avg")  # fmt: skip
    model = build_recognizer(config, *SPATIAL.statistics(3))
    ckpt = save_stream_checkpoint(
        tmp_path / "spatial.pth.tar", "spatial", model, data.classes, crop_size=32, test_frames=3,
        data_root=str(frames),
    )  # fmt: skip
    on_disk = _run(demo, "--checkpoint", ckpt, "--out", tmp_path / "disk.npz")
    files = extract_features.main(["--checkpoint", str(ckpt), "--videos", str(data.videos_dir),
                                   "--device", "cpu", "--out", str(tmp_path / "files.npz")])  # fmt: skip
    from_files = dict(np.load(files))
    assert list(from_files["classes"]) == sorted(data.classes)  # the class folders, sorted
    rows = [list(from_files["videos"]).index(v) for v in on_disk["videos"]]
    named = [from_files["classes"][label] for label in from_files["labels"][rows]]
    assert named == [on_disk["classes"][label] for label in on_disk["labels"]]
    np.testing.assert_allclose(from_files["features"][rows], on_disk["features"], atol=1e-4)

    with pytest.raises(UserError, match="--checkpoint CKPT or --arch"):
        extract_features.main(["--videos", str(data.videos_dir), "--out", str(tmp_path / "x")])
    with pytest.raises(UserError, match="--data-root ROOT .* or --videos"):
        extract_features.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "x")])
