import os
import time

import cv2
import numpy as np
import pytest
import torch

import dataloader.frame_index as frame_index
from dataloader.checks import find_problems
from dataloader.datasets import DataError, MotionDataset, SpatialDataset
from dataloader.layout import Layout
from dataloader.sampling import uniform_indices
from dataloader.splits import Video, load_split
from tests.helpers import write_coded_video
from utils.errors import UserError


def rgb_frame_ids(clips):
    """Frame index read for each snippet, from the red channel's value."""
    assert clips.dtype == torch.uint8
    return torch.round(clips[:, 0].float().mean(dim=(1, 2)) / 8).long().tolist()


def flow_values(clips):
    assert clips.dtype == torch.uint8
    return clips.float().mean(dim=(2, 3))  # [N, 2L] uint8 levels


def test_spatial_test_snippets_are_uniform(tmp_path):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 30)
    data = SpatialDataset(tmp_path, [video], train=False, crop_size=16)
    clips, label = data[0]
    assert clips.shape == (1, 19, 3, 16, 16) and label == 0  # [crops, frames, C, H, W]
    assert rgb_frame_ids(clips[0]) == uniform_indices(30, 19).tolist()
    ten = SpatialDataset(tmp_path, [video], train=False, crop_size=16, ten_crop=True)[0][0]
    assert ten.shape == (10, 19, 3, 16, 16)
    for crop in ten:  # every crop is one sequence of the same frames, in time order
        assert rgb_frame_ids(crop) == uniform_indices(30, 19).tolist()


def test_spatial_training_reads_one_frame_per_segment(tmp_path):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 30)
    data = SpatialDataset(tmp_path, [video], train=True, num_segments=3, crop_size=16)
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        clips, _ = data[0]
        assert clips.shape == (3, 3, 16, 16)
        ids = rgb_frame_ids(clips)
        assert [i // 10 for i in ids] == [0, 1, 2]
        seen.update(ids)
    assert len(seen) > 15


def test_motion_stacks_put_first_flow_frame_first(tmp_path):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 31)  # 30 flow frames
    data = MotionDataset(tmp_path, [video], train=False, crop_size=16, stack_length=10)
    clips, _ = data[0]
    assert clips.shape == (1, 19, 20, 16, 16) and data.in_channels == 20
    levels = flow_values(clips[0])
    starts = uniform_indices(21, 19)
    for s, start in enumerate(starts.tolist()):
        frames = range(start, start + 10)
        assert torch.allclose(levels[s, 0::2], torch.tensor([8.0 * i + 4 for i in frames]), atol=2)
        assert torch.allclose(
            levels[s, 1::2], torch.tensor([250.0 - 8 * i for i in frames]), atol=2
        )


def test_motion_training_flips_negate_x_flow_only(tmp_path):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 31)
    data = MotionDataset(tmp_path, [video], train=True, num_segments=3, crop_size=16)
    torch.manual_seed(0)
    signs = set()
    for _ in range(20):
        clips, _ = data[0]
        assert clips.shape == (3, 20, 16, 16)
        for stack in clips:
            x = stack[0::2].float().mean(dim=(1, 2)) - 128
            y = stack[1::2].float().mean(dim=(1, 2))
            first = round(float(y[0].sub(250).div(-8)))  # y-flow never flips: gives the frame
            expected_x = torch.tensor([8.0 * i + 4 - 128 for i in range(first, first + 10)])
            flipped = torch.allclose(x, -expected_x, atol=2)
            assert flipped or torch.allclose(x, expected_x, atol=2)
            signs.add(flipped)
    assert signs == {True, False}


def test_short_videos_repeat_their_last_frames(tmp_path):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 4)  # 3 flow frames < stack length
    for train in (True, False):
        clips, _ = MotionDataset(tmp_path, [video], train=train, crop_size=8)[0]
        clips = clips if train else clips[0]  # test samples are [crops, frames, ...]
        assert clips.shape[1:] == (20, 8, 8)
        x = (flow_values(clips)[0, 0::2] - 128).abs()  # training may mirror (negate x)
        assert torch.allclose(x, torch.tensor([124.0, 116, 108] + [108] * 7), atol=2)
        rgb, _ = SpatialDataset(tmp_path, [video], train=train, crop_size=8)[0]
        assert rgb.shape[:-3] == ((3,) if train else (1, 19))


def test_missing_videos_are_named_and_counted(tmp_path):
    write_coded_video(tmp_path, "v_A_g01_c01", 5)
    videos = [Video("v_A_g01_c01", 0), Video("v_B_g01_c01", 1), Video("v_C_g01_c01", 1)]
    with pytest.raises(UserError, match=r"v_B_g01_c01 and 1 other videos"):
        SpatialDataset(tmp_path, videos, train=True)
    with pytest.raises(UserError, match="does not exist"):
        SpatialDataset(tmp_path / "nope", videos, train=True)


def test_handstand_pushups_found_under_either_spelling(tmp_path):
    write_coded_video(tmp_path, "v_HandstandPushups_g01_c01", 5)
    data = MotionDataset(tmp_path, [Video("v_HandStandPushups_g01_c01", 3)], train=True)
    assert data.names == ["v_HandStandPushups_g01_c01"] and data.labels == [3]
    assert os.path.basename(data.items[0].dirs[0]) == "v_HandstandPushups_g01_c01"


MMACTION = Layout(
    rgb_dir="rawframes",
    flow_x_dir="rawframes",
    flow_y_dir="rawframes",
    rgb_pattern="img_%05d.jpg",
    flow_x_pattern="flow_x_%05d.jpg",
    flow_y_pattern="flow_y_%05d.jpg",
)


def test_mmaction_layout(tmp_path):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 12, MMACTION)
    rgb = SpatialDataset(tmp_path, [video], train=False, crop_size=8, layout=MMACTION)
    flow = MotionDataset(tmp_path, [video], train=False, crop_size=8, layout=MMACTION)
    assert rgb.items[0].num_frames == 12 and flow.items[0].num_frames == 11
    assert rgb_frame_ids(rgb[0][0][0]) == uniform_indices(12, 19).tolist()
    with pytest.raises(UserError, match="%06d"):
        Layout(rgb_pattern="frame.jpg")


def test_mmaction_nested_layout_reads_both_streams(tmp_path):
    """rawframes/<class>/<video>/ is found with the same options as rawframes/<video>/."""
    write_coded_video(tmp_path, "Diving/v_Diving_g01_c01", 12, MMACTION)
    write_coded_video(tmp_path, "Biking/v_Biking_g01_c01", 8, MMACTION)
    videos = [Video("v_Diving_g01_c01", 1), Video("v_Biking_g01_c01", 0)]
    options = dict(train=False, crop_size=8, layout=MMACTION)
    rgb = SpatialDataset(tmp_path, videos, **options)
    flow = MotionDataset(tmp_path, videos, stack_length=3, **options)
    assert [item.num_frames for item in rgb.items] == [12, 8] and rgb.labels == [1, 0]
    assert [item.num_frames for item in flow.items] == [11, 7]
    assert rgb_frame_ids(rgb[1][0][0]) == uniform_indices(8, 19).tolist()
    levels = flow_values(flow[0][0][0])  # 11 flow frames, stacks of 3
    for s, start in enumerate(uniform_indices(9, 19).tolist()):
        frames = torch.arange(start, start + 3).float()
        assert torch.allclose(levels[s, 0::2], 8 * frames + 4, atol=2)
        assert torch.allclose(levels[s, 1::2], 250 - 8 * frames, atol=2)
    for axis in ("x", "y"):  # the data check compares flow with the RGB of the same video
        (tmp_path / f"rawframes/Biking/v_Biking_g01_c01/flow_{axis}_00007.jpg").unlink()
    flow = MotionDataset(tmp_path, videos, strict=False, **options)
    assert find_problems(flow) == {
        "v_Biking_g01_c01": ["flow has 6 frames but RGB has 8 (expected 7)"]
    }
    write_coded_video(tmp_path, "Surfing/v_Diving_g01_c01", 4, MMACTION)
    with pytest.raises(UserError, match="v_Diving_g01_c01 is in 2 class folders"):
        SpatialDataset(tmp_path, videos, **options)


def test_frame_counts_are_cached_and_refreshed(tmp_path, monkeypatch):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 6)
    assert SpatialDataset(tmp_path, [video], train=True).items[0].num_frames == 6
    assert (tmp_path / frame_index.CACHE_NAME).is_file()

    def no_listing(*args):
        raise AssertionError("a cached folder was listed again")

    monkeypatch.setattr(frame_index, "_count", no_listing)
    assert SpatialDataset(tmp_path, [video], train=True).items[0].num_frames == 6
    monkeypatch.undo()
    folder = tmp_path / "jpegs_256" / "v_A_g01_c01"
    cv2.imwrite(str(folder / "frame000007.jpg"), np.zeros((8, 8, 3), np.uint8))
    os.utime(folder, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert SpatialDataset(tmp_path, [video], train=True).items[0].num_frames == 7


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_bad_frames_raise_naming_file_and_video(tmp_path, damage):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 3)
    frame = tmp_path / "jpegs_256" / "v_A_g01_c01" / "frame000002.jpg"
    if damage == "missing":
        frame.rename(frame.with_suffix(".bak"))
        (frame.parent / "frame000009.jpg").write_bytes(frame.with_suffix(".bak").read_bytes())
    elif damage == "truncated":
        frame.write_bytes(frame.read_bytes()[:200])
    else:
        frame.write_bytes(b"\x00" * 300 + b"\xff\xd9")
    data = SpatialDataset(tmp_path, [video], train=False, crop_size=8)
    word = "corrupt" if damage == "garbage" else damage
    with pytest.raises(DataError, match=rf"{word} frame .*frame000002.jpg \(video v_A_g01_c01\)"):
        data[0]


def test_empty_video_folder_is_an_error(tmp_path):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 3)
    for f in (tmp_path / "jpegs_256" / "v_A_g01_c01").iterdir():
        f.unlink()
    with pytest.raises(UserError, match="no rgb frames in .*v_A_g01_c01"):
        SpatialDataset(tmp_path, [video], train=True)


def test_generated_dataset_through_official_style_splits(frame_root):
    split = load_split("ucf101", frame_root / "ucfTrainTestlist", 1)
    train = MotionDataset(frame_root, split.train, train=True, crop_size=32)
    test = SpatialDataset(frame_root, split.test, train=False, crop_size=32)
    assert len(train) == 9 and len(test) == 6
    loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=2)
    clips, labels = next(iter(loader))
    assert clips.shape == (4, 3, 20, 32, 32) and labels.tolist() == [0, 0, 0, 1]
