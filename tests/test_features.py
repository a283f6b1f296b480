"""tools/extract_features.py on the synthetic demo data: shapes, means, the sampling of evaluation
(frames on disk) and of predict (video files) giving the same features, and what they tell apart."""

import numpy as np
import pytest
import torch
from torch import nn

from dataloader.datasets import FrameDataset
from dataloader.splits import load_split
from engine.config import options_from_dict
from engine.loops import train_one_epoch
from engine.streams import FLOW_CLIP, SPATIAL
from network.recognizer import build_recognizer
from tests.helpers import save_stream_checkpoint, single_thread
from tools import extract_features, extract_frames_flow
from tools.synthetic_actions import CLASSES, generate
from utils.errors import UserError

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
HEIGHT = 48
SMALL = ["--crop-size", "32", "--test-snippets", "3", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's videos (red or green ball moving up or down) and their extracted frames."""
    base = tmp_path_factory.mktemp("features")
    data = generate(base / "data", 6, 3, (64, HEIGHT), (10, 10), seed=0)
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
    model = build_recognizer(**config)
    ckpt = save_stream_checkpoint(
        tmp_path / "spatial.pth.tar", "spatial", model, data.classes, crop_size=32, test_snippets=3,
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


def test_features_of_a_flow_clip_checkpoint(demo, tmp_path):
    """A 3D flow stream's checkpoint (MC3-18 on [2, T, H, W] flow clips): one pooled 512-vector
    per test clip, from the flow on disk."""
    base, data, frames = demo
    torch.manual_seed(0)
    config = dict(arch="mc3_18", num_classes=4, in_channels=2, dropout=0.5, partial_bn=False,
                  consensus="avg")  # fmt: skip
    model = build_recognizer(**config, statistics=FLOW_CLIP.statistics)
    ckpt = save_stream_checkpoint(
        tmp_path / "flow_clip.pth.tar", "flow_clip", model, data.classes, crop_size=32,
        test_snippets=3, clip_length=4, clip_short_side=40, data_root=str(frames),
    )  # fmt: skip
    saved = _run(demo, "--checkpoint", ckpt, "--per-snippet", "--out", tmp_path / "f.npz")
    tests = [c.name for c in data.clips if not c.train]
    assert sorted(saved["videos"]) == sorted(tests) and str(saved["stream"]) == "flow_clip"
    assert saved["snippet_features"].shape == (len(tests), 3, 512)  # SMALL's 3 clips
    assert saved["features"].shape == (len(tests), 512) and np.isfinite(saved["features"]).all()
    np.testing.assert_allclose(saved["features"], saved["snippet_features"].mean(axis=1), rtol=1e-6)
    assert np.ptp(saved["features"], axis=0).max() > 0  # the videos differ


def test_a_linear_classifier_on_spatial_features_tells_the_colours_apart(demo, tmp_path):
    """The spatial stream sees the ball's colour (not its direction): a logistic regression on
    the features of a briefly trained spatial stream tells red from green on unseen videos."""
    base, data, frames = demo
    red = [int(colour == "red") for _, colour, _ in CLASSES]
    options = dict(num_segments=1, test_snippets=3, test_sequences=0, crop_size=32)
    builder = SPATIAL.sample_builder(options_from_dict(SPATIAL, options))
    train = FrameDataset(frames, load_split("ucf101", data.splits_dir, 1).train, True, builder)
    torch.manual_seed(0)
    config = dict(arch="resnet18", num_classes=2, in_channels=3, dropout=0.0, partial_bn=False,
                  consensus="avg")  # fmt: skip
    model = build_recognizer(**config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    for epoch in range(12):
        order = torch.randperm(len(train)).tolist()
        batches = []
        for start in range(0, len(order), 8):
            items = [train[j] for j in order[start : start + 8]]
            clips = torch.stack([clip for clip, _ in items])
            batches.append((clips, torch.tensor([red[label] for _, label in items])))
        train_one_epoch(
            model, nn.CrossEntropyLoss(), optimizer, schedule, batches, torch.device("cpu"),
            epoch, clip_grad=0.0,
        )  # fmt: skip
    ckpt = save_stream_checkpoint(tmp_path / "s.pth.tar", "spatial", model, ["Green", "Red"],
                                  crop_size=32, test_snippets=3)  # fmt: skip
    sets = {}
    for name in ("train", "test"):
        saved = _run(demo, "--checkpoint", ckpt, "--set", name, "--out", tmp_path / f"{name}.npz")
        sets[name] = saved["features"], [CLASSES[label][1] for label in saved["labels"]]
    features, colours = sets["train"]
    scale = features.std(axis=0) + 1e-6
    from sklearn.linear_model import LogisticRegression  # 1.5 s to import: not at collection

    classifier = LogisticRegression(max_iter=5000).fit(features / scale, colours)
    test_features, test_colours = sets["test"]
    assert classifier.score(test_features / scale, test_colours) >= 0.75  # 12 videos, chance 0.5
