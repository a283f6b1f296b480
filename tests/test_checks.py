import torch

from dataloader.checks import find_problems, write_problems
from dataloader.datasets import MotionDataset, SpatialDataset
from dataloader.splits import Video
from tests.helpers import write_coded_video


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
