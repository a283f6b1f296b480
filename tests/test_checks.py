import sys

import cv2
import numpy as np
import torch

from dataloader.checks import find_problems, write_problems
from dataloader.datasets import MotionDataset, SpatialDataset
from dataloader.splits import Video
from tests.helpers import corrupt_image_data, write_coded_video


def test_every_bad_video_is_found_in_one_pass(tmp_path):
    good = write_coded_video(tmp_path, "v_Good_g01_c01", 6)
    corrupt = write_coded_video(tmp_path, "v_Corrupt_g01_c01", 6)
    gap = write_coded_video(tmp_path, "v_Gap_g01_c01", 6)
    empty = write_coded_video(tmp_path, "v_Empty_g01_c01", 3)
    absent = Video("v_Absent_g01_c01", 0)
    rgb = tmp_path / "jpegs_256"
    (rgb / "v_Corrupt_g01_c01" / "frame000003.jpg").write_bytes(b"not a jpeg")
    (rgb / "v_Gap_g01_c01" / "frame000002.jpg").unlink()
    for f in (rgb / "v_Empty_g01_c01").iterdir():
        f.unlink()
    videos = [good, corrupt, gap, empty, absent]
    data = SpatialDataset(tmp_path, videos, train=True, strict=False)
    problems = find_problems(data, workers=0)
    assert set(problems) == {"v_Corrupt_g01_c01", "v_Gap_g01_c01", "v_Empty_g01_c01", absent.name}
    assert "frame000003.jpg" in problems["v_Corrupt_g01_c01"][0]
    assert "missing frame" in problems["v_Gap_g01_c01"][0]
    assert "no frames" in problems["v_Empty_g01_c01"][0]
    data.drop(problems)
    assert data.names == ["v_Good_g01_c01"] and data.missing == []
    assert data[0][0].shape[0] == 3
    write_problems(problems, tmp_path / "skipped_videos.txt")
    lines = (tmp_path / "skipped_videos.txt").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("v_Absent_g01_c01\t")


def test_flow_shorter_than_rgb_or_x_y_mismatch(tmp_path):
    short = write_coded_video(tmp_path, "v_Short_g01_c01", 8)
    uneven = write_coded_video(tmp_path, "v_Uneven_g01_c01", 8)
    ok = write_coded_video(tmp_path, "v_Ok_g01_c01", 8)
    flow = tmp_path / "tvl1_flow"
    for axis in "uv":
        (flow / axis / "v_Short_g01_c01" / "frame000007.jpg").unlink()
    (flow / "v" / "v_Uneven_g01_c01" / "frame000007.jpg").unlink()
    data = MotionDataset(tmp_path, [short, uneven, ok], train=True, strict=False)
    problems = find_problems(data, workers=2)
    assert set(problems) == {"v_Short_g01_c01", "v_Uneven_g01_c01"}
    assert any("RGB has 8" in p for p in problems["v_Short_g01_c01"])
    assert any("y-flow has 6" in p for p in problems["v_Uneven_g01_c01"])
    clips, label = data[2]  # the good video still gives a whole sample
    assert clips.shape == (3, 20, 224, 224) and clips.dtype == torch.uint8 and label == 0


def test_corrupt_image_data_is_found_though_opencv_decodes_it(tmp_path, capfd):
    """3 KB of random bytes in the middle of a frame, at 12 places, half of them without a 0xFF
    byte (no stray marker: only libjpeg's warning tells): OpenCV decodes every one, the scan
    names every one and keeps libjpeg's warnings off the terminal."""
    rng = np.random.default_rng(0)
    good, noisy = Video("v_Good_g01_c01", 0), Video("v_Noisy_g01_c01", 0)
    for video in (good, noisy):
        folder = tmp_path / "jpegs_256" / video.name
        folder.mkdir(parents=True)
        for i in range(12):
            image = rng.integers(0, 256, (120, 160, 3), np.uint8)
            cv2.imwrite(str(folder / f"frame{i + 1:06d}.jpg"), image)
    frames = sorted((tmp_path / "jpegs_256" / noisy.name).iterdir())
    for seed, frame in enumerate(frames):
        corrupt_image_data(frame, seed, size=3000, markers=seed < 6)
        assert cv2.imread(str(frame)) is not None  # the kind a training read takes
    capfd.readouterr()
    data = SpatialDataset(tmp_path, [good, noisy], train=False, strict=False)
    problems = find_problems(data, workers=0)
    assert list(problems) == [noisy.name]
    found = problems[noisy.name]
    assert [p.split(" (")[0] for p in found] == [f"corrupt frame {f}" for f in frames]
    assert all("(libjpeg: Corrupt JPEG data: " in p for p in found[6:])
    print("stderr is back", file=sys.stderr)
    assert capfd.readouterr().err == "stderr is back\n"


def test_a_stray_marker_after_the_last_row_is_found(tmp_path):
    """libjpeg meets it only after the image is complete, and OpenCV says nothing at all."""
    video = write_coded_video(tmp_path, "v_Marker_g01_c01", 3)
    frame = tmp_path / "jpegs_256" / video.name / "frame000002.jpg"
    data = frame.read_bytes()
    frame.write_bytes(data[:-2] + b"\xff\xf0" + bytes(8) + data[-2:])
    assert cv2.imread(str(frame)) is not None
    problems = find_problems(SpatialDataset(tmp_path, [video], train=False, strict=False))
    assert problems == {
        video.name: [
            f"corrupt frame {frame} (marker 0xF0 inside the image data at byte {len(data) - 2})"
        ]
    }
