"""--check-data and --skip-bad-videos through the training command line."""

import shutil

import numpy as np
import pytest
import torch

from dataloader.datasets import SpatialDataset
from dataloader.splits import Video
from engine.cli import main
from engine.streams import MOTION, SPATIAL
from tests.helpers import SMALL_ARCH, corrupt_image_data, single_thread, write_frame_dataset
from utils.errors import UserError, one_line

FAST = [
    "--arch", SMALL_ARCH, "--pretrained", "none", "--crop-size", "32", "--num-segments", "2",
    "--test-snippets", "3", "--batch-size", "3", "--workers", "0", "--epochs", "1",
]  # fmt: skip


@pytest.fixture
def damaged_root(tmp_path):
    """The tiny dataset with a broken RGB frame, a test video with random bytes in the middle of
    a frame (which OpenCV decodes, partly grey), a missing test video and short flow."""
    root = write_frame_dataset(tmp_path / "data")
    (root / "jpegs_256" / "v_Class0_g01_c01" / "frame000002.jpg").write_bytes(b"broken")
    corrupt_image_data(root / "jpegs_256" / "v_Class2_g04_c01" / "frame000005.jpg", seed=0)
    shutil.rmtree(root / "jpegs_256" / "v_Class1_g05_c01")
    for axis in "uv":
        for f in sorted((root / "tvl1_flow" / axis / "v_Class2_g02_c01").iterdir())[-3:]:
            f.unlink()
    return root


one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def run(stream, root, tmp_path, *extra):
    return main(
        stream, ["--data-root", str(root), "--record-dir", str(tmp_path / "rec"), *FAST, *extra]
    )


def test_check_data_reports_every_problem_without_training(damaged_root, tmp_path, capsys):
    with pytest.raises(UserError, match="3 of 15 videos have problems"):
        run(SPATIAL, damaged_root, tmp_path, "--check-data")
    out = capsys.readouterr().out
    assert "v_Class0_g01_c01: truncated frame" in out and "frame000002.jpg" in out
    corrupt = str(damaged_root / "jpegs_256" / "v_Class2_g04_c01" / "frame000005.jpg")
    assert f"v_Class2_g04_c01: corrupt frame {corrupt} (" in out
    assert "v_Class1_g05_c01: no rgb frames on disk" in out
    assert not (tmp_path / "rec" / "checkpoint.pth.tar").exists()
    with pytest.raises(UserError, match="1 of 15 videos have problems"):
        run(MOTION, damaged_root, tmp_path, "--check-data")
    assert "v_Class2_g02_c01: flow has" in capsys.readouterr().out


def test_default_stops_at_a_missing_video(damaged_root, tmp_path):
    with pytest.raises(UserError, match="v_Class1_g05_c01"):
        run(SPATIAL, damaged_root, tmp_path)


def test_skip_bad_videos_trains_on_the_rest_and_lists_them(damaged_root, tmp_path, capsys):
    assert run(SPATIAL, damaged_root, tmp_path, "--skip-bad-videos") == 0
    assert "skipping 3 bad videos" in capsys.readouterr().out
    skipped = (tmp_path / "rec" / "skipped_videos.txt").read_text().splitlines()
    names = ["v_Class0_g01_c01", "v_Class1_g05_c01", "v_Class2_g04_c01"]
    assert [line.split("\t")[0] for line in skipped] == names
    assert "corrupt frame" in skipped[2]
    scores = np.load(tmp_path / "rec" / "video_scores.npz")  # the test set: 6 less 2 bad ones
    assert sorted(scores["videos"]) == ["v_Class0_g04_c01", "v_Class0_g05_c01"] + [
        "v_Class1_g04_c01",
        "v_Class2_g05_c01",
    ]


def test_bad_frame_in_a_worker_process_is_one_line(tmp_path):
    root = write_frame_dataset(tmp_path / "data", num_classes=1, train_per_class=1)
    for f in (root / "jpegs_256" / "v_Class0_g01_c01").iterdir():
        f.write_bytes(b"x")
    data = SpatialDataset(root, [Video("v_Class0_g01_c01", 0)], train=True, crop_size=16)
    loader = torch.utils.data.DataLoader(data, num_workers=1)
    with pytest.raises(UserError) as caught:
        next(iter(loader))
    line = one_line(caught.value)
    assert line.startswith("truncated frame ") and "(video v_Class0_g01_c01)" in line
    assert "\n" not in line and "--skip-bad-videos" in line
