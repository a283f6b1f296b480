"""The demo's synthetic dataset is what it claims, and the whole demo shows fusion beating both streams."""

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from dataloader.splits import load_split
from tools.demo import prepare_out
from tools.synthetic_actions import CLASSES, generate
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(
        tmp_path_factory.mktemp("synthetic"),
        train_per_class=3,
        test_per_class=2,
        size=(64, 48),
        frames=(12, 14),
        seed=3,
    )


def test_generator_writes_the_videos_and_splits_it_lists(dataset):
    classes = [name for name, _, _ in CLASSES]
    assert dataset.classes == classes
    assert len(dataset.clips) == len(classes) * 5
    files = sorted(dataset.videos_dir.glob("*/*.avi"))
    assert files == sorted(c.path for c in dataset.clips)
    for clip in dataset.clips:
        assert clip.path.parent.name == classes[clip.label]
        assert clip.path.stem == clip.name == f"v_{classes[clip.label]}_g{clip.name[-6:-4]}_c01"
        frames = _decode(clip.path)
        assert frames.shape == (clip.num_frames, 48, 64, 3)
        assert 12 <= clip.num_frames <= 14

    split = load_split("ucf101", dataset.splits_dir, 1)
    assert split.classes == classes
    assert len(split.train) == 4 * 3 and len(split.test) == 4 * 2
    by_name = {c.name: c for c in dataset.clips}
    for video in split.train + split.test:
        assert by_name[video.name].label == video.label
    assert {v.name for v in split.train} == {c.name for c in dataset.clips if c.train}
    # Test groups are scenes never seen in training.
    groups = lambda videos: {v.name.rsplit("_g", 1)[1] for v in videos}  # noqa: E731
    assert groups(split.train).isdisjoint(groups(split.test))


def test_each_stream_sees_only_half_of_the_class(dataset):
    """Up is down played backwards (same frames); red and green have the same gray levels."""
    by_name = {c.name: c for c in dataset.clips}
    red_up = _decode(by_name["v_RedBallUp_g01_c01"].path).astype(np.float32)
    red_down = _decode(by_name["v_RedBallDown_g01_c01"].path).astype(np.float32)
    green_up = _decode(by_name["v_GreenBallUp_g01_c01"].path).astype(np.float32)
    assert np.abs(red_up - red_down[::-1]).mean() < 0.5 * np.abs(red_up - red_down).mean()

    def gray(x):
        return x @ np.float32([0.299, 0.587, 0.114])

    assert np.abs(gray(red_up) - gray(green_up)).mean() < 3
    assert np.abs(red_up - green_up).mean() > 4  # but the colours differ
    # The ball moves: consecutive frames differ by more than the noise.
    assert np.abs(np.diff(gray(red_up), axis=0)).mean() > 1


def test_generator_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", 1, 1, (48, 40), (10, 10), seed=5)
    b = generate(tmp_path / "b", 1, 1, (48, 40), (10, 10), seed=5)
    for x, y in zip(a.clips, b.clips, strict=True):
        assert np.array_equal(_decode(x.path), _decode(y.path))
    assert (a.splits_dir / "trainlist01.txt").read_text() == (
        b.splits_dir / "trainlist01.txt"
    ).read_text()


def test_generator_cli_refuses_a_frame_too_small_for_the_motion(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "tools/synthetic_actions.py",
            "--out",
            str(tmp_path),
            "--size",
            "32",
            "16",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "--size" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The README's demo command end to end, with the 3D flow stream added (--flow-clip)."""
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "tools/demo.py", "--out", str(out), "--flow-clip"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_demo_fusion_beats_both_streams(demo):
    """Each stream about 50 %, fusion far above both."""
    out, result = demo
    accuracy = json.loads((out / "fusion.json").read_text())
    spatial, motion, fused = (accuracy[k]["top1"] for k in ("spatial", "motion", "fused"))
    assert accuracy["fused"]["videos"] == 24
    assert fused >= max(spatial, motion) + 30, (spatial, motion, fused)
    assert fused >= 90
    for stream in ("spatial", "motion"):
        assert (out / "record" / stream / "checkpoint.pth.tar").is_file()
    # The predicted clip gets the class its evaluation scores fuse to.
    prediction = json.loads((out / "prediction.json").read_text())
    rows = []
    for stream in ("spatial", "motion"):
        scores = np.load(out / "record" / stream / "video_scores.npz")
        rows.append(scores["scores"][list(scores["videos"]).index("v_RedBallDown_g01_c01")])
    assert prediction["top1"] == prediction["classes"][int(np.argmax(rows[0] + rows[1]))]
    assert (out / "prediction.gif").stat().st_size > 0
    assert "fused" in result.stdout and "in all" in result.stdout
    log = result.stdout + result.stderr  # as `demo.py > log 2>&1` writes it: no redrawn bars
    assert "\r" not in log and len(log.splitlines()) <= 4 * 38, log[-3000:]  # 15 + 15 + 8 epochs


def _direction_accuracy(score_file: Path) -> float:
    """How often the top class moves the way the video's class does (Up or Down), in %."""
    with np.load(score_file) as f:
        classes = [str(c) for c in f["classes"]]
        up = np.array([c.endswith("Up") for c in classes])
        return 100.0 * float(np.mean(up[f["scores"].argmax(1)] == up[f["labels"]]))


def test_demo_3d_flow_stream_tells_the_direction_and_fuses_with_the_spatial_one(demo):
    """The flow clip sees what the motion stream sees: the direction (not the colour)."""
    out, _ = demo
    record = out / "record"
    assert _direction_accuracy(record / "motion" / "video_scores.npz") >= 90
    assert _direction_accuracy(record / "flow_clip" / "video_scores.npz") >= 90
    summary = json.loads((out / "demo.json").read_text())["accuracy"]
    spatial, flow_clip = summary["spatial"]["top1"], summary["flow_clip"]["top1"]
    fused = summary["spatial+flow_clip"]["top1"]
    assert summary["spatial+flow_clip"]["videos"] == 24
    assert fused >= max(spatial, flow_clip) + 25, (spatial, flow_clip, fused)


def test_demo_starts_from_a_clean_out_folder(tmp_path):
    """A rerun replaces the previous demo's outputs; a folder with other files is refused."""
    (tmp_path / "frames" / "jpegs_256").mkdir(parents=True)
    (tmp_path / "fusion.json").write_text("{}")
    prepare_out(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "thesis.tex").write_text("keep me")
    with pytest.raises(UserError, match="thesis.tex"):
        prepare_out(tmp_path)
    assert (tmp_path / "thesis.tex").is_file()
