"""Raw video -> frames + TV-L1 flow: extraction/ and tools/extract_frames_flow.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import extraction.tvl1 as tvl1
from dataloader.frame_size import resized_size
from dataloader.splits import load_split
from extraction.decode import decode_video, write_video
from extraction.tvl1 import flow_to_uint8
from tests.helpers import compute_flow, uint8_to_flow
from tools import extract_frames_flow as tool
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FRAMES = 64, 48, 8
STEP = 2  # px/frame of the moving videos


def _texture(seed=0, height=HEIGHT, width=WIDTH + 2 * STEP * FRAMES):
    noise = np.random.default_rng(seed).random((height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _moving_frames(dx, num_frames=FRAMES):
    """RGB frames of a texture that moves ``dx`` px/frame to the right (dx < 0: left)."""
    big = _texture()
    start = STEP * FRAMES
    crops = [big[:, start - dx * i : start - dx * i + WIDTH] for i in range(num_frames)]
    return [np.repeat(c[..., None], 3, axis=2) for c in crops]


def _run(videos, out, *extra):
    argv = ["--videos", str(videos), "--out", str(out), "--workers", "1", "--short-side", "48"]
    return tool.main(argv + ["--preset", "fast"] + list(extra))  # quality is the default, slower


def _count(folder):
    return len(list(Path(folder).glob("frame*.jpg")))


def _read(folder, index):
    return cv2.imread(str(Path(folder) / f"frame{index:06d}.jpg"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Three tiny videos (right, left, still) extracted once with the CLI."""
    base = tmp_path_factory.mktemp("extract")
    videos = base / "videos"
    write_video(videos / "ClassA" / "right.avi", _moving_frames(STEP))
    write_video(videos / "ClassA" / "left.mp4", _moving_frames(-STEP))
    write_video(videos / "ClassB" / "deeper" / "still.mkv", _moving_frames(0))
    assert _run(videos, base / "out") == 0
    return videos, base / "out"


def test_quantisation_maps_zero_to_128_and_bounds_to_0_255():
    flow = np.array([0.0, 20.0, -20.0, 35.0, -35.0, 10.0])
    assert flow_to_uint8(flow, bound=20).tolist() == [128, 255, 0, 255, 0, 192]
    back = uint8_to_flow(flow_to_uint8(np.array([-7.3, 0.0, 3.1]), 20), 20)
    assert np.allclose(back, [-7.3, 0.0, 3.1], atol=20 / 255)


def test_resize_keeps_aspect_with_even_long_side():
    assert resized_size(320, 240, 256) == (340, 256)  # UCF101/HMDB51 -> the published 340x256
    assert resized_size(240, 320, 256) == (256, 340)
    assert resized_size(1280, 720, 256) == (454, 256)
    assert resized_size(320, 240, 0) == (320, 240)


@pytest.mark.parametrize(("name", "sign"), [("right", 1), ("left", -1)])
def test_x_flow_follows_direction_of_motion(extracted, name, sign):
    _, out = extracted
    expected = 128 + sign * STEP * 127.5 / 20  # 2 px/frame at bound 20
    for i in range(1, FRAMES):
        u = _read(out / "tvl1_flow" / "u" / name, i)[8:-8, 8:-8].astype(float)
        v = _read(out / "tvl1_flow" / "v" / name, i)[8:-8, 8:-8].astype(float)
        assert abs(u.mean() - expected) < 3, (i, u.mean(), expected)
        assert abs(v.mean() - 128) < 3, (i, v.mean())


def test_still_video_gives_flow_128(extracted):
    _, out = extracted
    for axis in ("u", "v"):
        for i in range(1, FRAMES):
            flow = _read(out / "tvl1_flow" / axis / "still", i).astype(int)
            assert np.abs(flow - 128).max() <= 2


def test_layout_counts_and_index_match_decoded_frames(extracted):
    videos, out = extracted
    index = json.loads((out / "index.json").read_text())["videos"]
    assert sorted(index) == ["left", "right", "still"]
    for path in sorted(videos.rglob("*.*")):
        decoded = decode_video(path, 48)
        n = len(decoded.frames)
        assert n == FRAMES
        assert _count(out / "jpegs_256" / path.stem) == n
        assert _count(out / "tvl1_flow" / "u" / path.stem) == n - 1
        assert _count(out / "tvl1_flow" / "v" / path.stem) == n - 1
        rgb = cv2.imread(str(out / "jpegs_256" / path.stem / "frame000001.jpg"))
        assert rgb.shape == (48, 64, 3)
        entry = index[path.stem]
        assert (entry["frames"], entry["width"], entry["height"]) == (n, 64, 48)
        assert entry["fps"] == pytest.approx(25.0)
        assert entry["source"] == str(path.relative_to(videos))
    assert not (out / "failed.txt").exists()


def test_compute_flow_in_memory():
    frames = np.stack(_moving_frames(STEP, 4))
    u, v = compute_flow(frames, preset="quality", bound=20)
    assert u.shape == v.shape == (3, HEIGHT, WIDTH) and u.dtype == np.uint8
    assert u[:, 8:-8, 8:-8].mean() > 135
    still_u, still_v = compute_flow(np.stack(_moving_frames(0, 3)), preset="fast")
    assert np.abs(still_u.astype(int) - 128).max() <= 1
    assert np.abs(still_v.astype(int) - 128).max() <= 1


def test_rerun_skips_finished_videos_and_redoes_interrupted_ones(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    write_video(videos / "a.avi", _moving_frames(STEP))
    write_video(videos / "b.avi", _moving_frames(-STEP))
    assert _run(videos, out) == 0
    a_frame = out / "jpegs_256" / "a" / "frame000001.jpg"
    a_mtime = a_frame.stat().st_mtime_ns
    # Simulate a kill of b while it was being moved into place: its RGB folder is in the layout
    # but half full, its marker not yet written, and a stale temporary folder is left behind.
    (out / ".extract" / "done" / "b.json").unlink()
    (out / ".extract" / "moving").mkdir(exist_ok=True)
    (out / ".extract" / "moving" / "b").touch()
    for f in sorted((out / "jpegs_256" / "b").glob("*.jpg"))[3:]:
        f.unlink()
    stale = out / ".extract" / "tmp" / "b" / "rgb"
    stale.mkdir(parents=True)
    (stale / "frame000001.jpg").write_bytes(b"half")
    capsys.readouterr()

    assert _run(videos, out) == 0
    assert "1 already done, 1 to extract" in capsys.readouterr().out
    assert a_frame.stat().st_mtime_ns == a_mtime
    assert _count(out / "jpegs_256" / "b") == FRAMES
    assert _count(out / "tvl1_flow" / "u" / "b") == FRAMES - 1
    assert not (out / ".extract" / "tmp" / "b").exists()
    assert sorted(json.loads((out / "index.json").read_text())["videos"]) == ["a", "b"]


def test_interrupt_leaves_no_half_video_and_rerun_completes(tmp_path, monkeypatch):
    videos, out = tmp_path / "videos", tmp_path / "out"
    write_video(videos / "clip.avi", _moving_frames(STEP))
    real_make_flow = tvl1.make_flow

    def interrupted_after_two_pairs(*args, **kwargs):
        flows, calls = real_make_flow(*args, **kwargs), []

        def interrupted(prevs, nexts):
            calls.append(len(prevs))
            if sum(calls) > 2:
                raise KeyboardInterrupt
            return flows(prevs, nexts)

        return interrupted

    monkeypatch.setattr(tvl1, "make_flow", interrupted_after_two_pairs)
    assert _run(videos, out, "--flow-batch", "1") == 130  # two flow frames written, then Ctrl-C
    for folder in ("jpegs_256", "tvl1_flow/u", "tvl1_flow/v"):
        assert not (out / folder / "clip").exists()
    monkeypatch.setattr(tvl1, "make_flow", real_make_flow)
    assert _run(videos, out) == 0
    assert _count(out / "jpegs_256" / "clip") == FRAMES


def test_corrupt_video_is_reported_and_others_go_on(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "out"
    write_video(videos / "good" / "ok.avi", _moving_frames(STEP))
    write_video(videos / "good" / "ok2.MP4", _moving_frames(0, 3))
    (videos / "bad").mkdir()
    (videos / "bad" / "broken.avi").write_bytes(b"RIFF" + os.urandom(2000))
    cmd = [sys.executable, "tools/extract_frames_flow.py", "--videos", str(videos)]
    cmd += ["--out", str(out), "--workers", "2", "--short-side", "48", "--preset", "fast"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "1 failed" in result.stdout and "bad/broken.avi" in result.stdout
    assert (out / "failed.txt").read_text().startswith("bad/broken.avi\t")
    assert _count(out / "jpegs_256" / "ok") == FRAMES
    assert _count(out / "jpegs_256" / "ok2") == 3
    assert not (out / "jpegs_256" / "broken").exists()
    assert sorted(json.loads((out / "index.json").read_text())["videos"]) == ["ok", "ok2"]


def test_folders_not_written_by_the_tool_are_never_replaced(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "out"
    write_video(videos / "clip.avi", _moving_frames(STEP, 3))
    downloaded = out / "jpegs_256" / "clip"
    downloaded.mkdir(parents=True)
    (downloaded / "frame000001.jpg").write_bytes(b"theirs")
    assert _run(videos, out) == 1
    assert (downloaded / "frame000001.jpg").read_bytes() == b"theirs"
    assert "was not written by this tool" in (out / "failed.txt").read_text()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "is not a folder"),
        ("empty", "no videos"),
        ("duplicate", "two videos are named 'clip'"),
    ],
)
def test_bad_video_folders_are_user_errors(tmp_path, setup, message):
    videos = tmp_path / "videos"
    if setup != "missing":
        videos.mkdir()
        (videos / "notes.txt").write_text("not a video")
    if setup == "duplicate":
        write_video(videos / "A" / "clip.avi", _moving_frames(0, 2))
        write_video(videos / "B" / "clip.mp4", _moving_frames(0, 2))
    with pytest.raises(UserError, match=message):
        _run(videos, tmp_path / "out")


def test_rerun_with_other_options_is_refused(tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "out"
    write_video(videos / "clip.avi", _moving_frames(0, 2))
    assert _run(videos, out) == 0
    with pytest.raises(UserError, match="--bound 20.0 \\(now 10.0\\)"):
        _run(videos, out, "--bound", "10")


def test_two_real_clips(shared_data, tmp_path):
    clips = [
        sorted((shared_data / "ucf101" / "UCF-101").rglob("*.avi"))[0],
        sorted((shared_data / "hmdb51" / "videos").rglob("*.avi"))[0],
    ]
    videos = tmp_path / "videos"
    videos.mkdir()
    for clip in clips:
        (videos / clip.name).symlink_to(clip)
    out = tmp_path / "out"
    assert _run(videos, out, "--max-frames", "4", "--short-side", "128") == 0
    index = json.loads((out / "index.json").read_text())["videos"]
    for clip in clips:
        entry = index[clip.stem]
        assert (entry["frames"], entry["width"], entry["height"]) == (4, 170, 128)
        assert entry["fps"] > 20
        assert _count(out / "jpegs_256" / clip.stem) == 4
        assert _count(out / "tvl1_flow" / "u" / clip.stem) == 3
        assert _count(out / "tvl1_flow" / "v" / clip.stem) == 3


def test_torch_method_writes_the_same_layout_and_flow_as_opencv(tmp_path):
    """--method torch: same files, quantisation and index; flow agrees with OpenCV's TV-L1."""
    videos = tmp_path / "videos"
    write_video(videos / "clip.avi", _moving_frames(STEP))
    args = ["--preset", "quality", "--flow-batch", "3"]
    assert _run(videos, tmp_path / "cv", *args) == 0
    assert _run(videos, tmp_path / "torch", *args, "--method", "torch") == 0
    index = json.loads((tmp_path / "torch" / "index.json").read_text())
    assert index["settings"]["method"] == "torch"
    for axis in "uv":
        a = sorted((tmp_path / "cv" / "tvl1_flow" / axis / "clip").iterdir())
        b = sorted((tmp_path / "torch" / "tvl1_flow" / axis / "clip").iterdir())
        assert [p.name for p in a] == [p.name for p in b] and len(a) == FRAMES - 1
        x = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in a]).astype(float)
        y = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in b]).astype(float)
        assert np.abs(x - y).mean() < 2.0  # of 255 levels; 128 +- 6.4 per pixel of motion
    with pytest.raises(UserError, match="--method torch"):
        _run(videos, tmp_path / "other", "--device", "cuda")


def _damaged_copies(videos, frames):
    """A 30-frame clip written whole, cut to a third, and with its second half overwritten."""
    whole = write_video(videos / "Other" / "whole.avi", frames)
    data = whole.read_bytes()
    (videos / "Other" / "cut.avi").write_bytes(data[: len(data) // 3])
    noise = np.random.default_rng(0).integers(0, 256, len(data) - len(data) // 2, np.uint8)
    (videos / "Other" / "damaged.avi").write_bytes(data[: len(data) // 2] + noise.tobytes())


def test_truncated_and_damaged_videos_fail_and_stay_out_of_the_split(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    frames = np.random.default_rng(1).integers(0, 256, (30, HEIGHT, WIDTH, 3), np.uint8)
    _damaged_copies(videos, frames)
    write_video(videos / "clip Música" / "my clip.avi", _moving_frames(STEP, 4))
    write_video(videos / "Other" / "single.avi", _moving_frames(STEP, 1))  # no pair: no flow
    assert _run(videos, out, "--test-fraction", "0.5") == 1
    printed = capsys.readouterr().out
    assert "; 3 failed (2 truncated)" in printed
    failed = dict(line.split("\t") for line in (out / "failed.txt").read_text().splitlines())
    assert sorted(failed) == ["Other/cut.avi", "Other/damaged.avi", "Other/single.avi"]
    single = failed.pop("Other/single.avi")
    assert single.startswith("TooShortVideo: ") and "only 1 frame decoded" in single
    for message in failed.values():
        assert "truncated:" in message and "of the 30 frames its container declares" in message
    assert (
        not (out / "jpegs_256" / "cut").exists() and not (out / ".extract" / "tmp" / "cut").exists()
    )
    split = load_split("custom", out / "splits")  # written by the tool, read by the trainer
    listed = {(v.name, split.classes[v.label]) for v in split.train + split.test}
    assert listed == {("whole", "Other"), ("my clip", "clip Música")}
    assert "3 videos not extracted are left out" in printed
    assert not (out / "jpegs_256" / "single").exists()


def test_a_class_without_training_videos_is_one_warning(tmp_path, capsys):
    from dataloader.splits import write_custom_split

    videos = {"Run": ["r1", "r2", "r3", "r4", "r5", "r6"], "Solo": ["b"]}  # b: drawn for test
    counts = write_custom_split(videos, tmp_path / "split", 0.3)
    assert counts == {"train": 3, "test": 4}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: 1 class(es) have no training video")
    assert "'Solo' (1 video)" in err and "add videos to those classes" in err
    assert "Run" not in err
    write_custom_split({"Run": videos["Run"]}, tmp_path / "ok", 0.3)
    assert "warning" not in capsys.readouterr().err
