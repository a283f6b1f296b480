import pytest

from dataloader.splits import (
    check_training_classes,
    default_splits_dir,
    holdout_groups,
    load_split,
    ucf101_group,
    write_custom_split,
)
from utils.errors import UserError
from utils.video_names import video_key


@pytest.mark.parametrize(
    ("split", "train", "test"), [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)]
)
def test_official_ucf101_splits(shared_data, split, train, test):
    s = load_split("ucf101", shared_data / "ucf101" / "ucfTrainTestlist", split)
    assert (len(s.train), len(s.test), len(s.classes)) == (train, test, 101)
    check_training_classes(s, shared_data / "ucf101" / "ucfTrainTestlist")
    assert s.classes[0] == "ApplyEyeMakeup" and s.classes[-1] == "YoYo"
    assert s.train[0].label == 0 and s.train[0].name.startswith("v_ApplyEyeMakeup_g")
    assert {v.label for v in s.test} == set(range(101))
    # the class is HandstandPushups, its files are spelled HandStandPushups
    hand = s.classes.index("HandstandPushups")
    assert any(v.name.startswith("v_HandStandPushups") and v.label == hand for v in s.test)


def test_official_hmdb51_split(shared_data):
    s = load_split("hmdb51", shared_data / "hmdb51" / "testTrainMulti_7030_splits", 1)
    assert (len(s.train), len(s.test), len(s.classes)) == (3570, 1530, 51)
    check_training_classes(s, shared_data / "hmdb51" / "testTrainMulti_7030_splits")
    assert s.classes[0] == "brush_hair"
    assert s.train[0] == type(s.train[0])("April_09_brush_hair_u_nm_np1_ba_goo_0", 0)


def test_unix_line_endings_and_missing_label(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Run\n2 Jump\n")
    (tmp_path / "trainlist01.txt").write_text("Jump/v_Jump_g01_c01.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("Run/v_Run_g02_c01.avi\n\n")
    s = load_split("ucf101", tmp_path, 1)
    assert [(v.name, v.label) for v in s.train] == [("v_Jump_g01_c01", 1)]
    assert [(v.name, v.label) for v in s.test] == [("v_Run_g02_c01", 0)]


def test_missing_split_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="classInd.txt"):
        load_split("ucf101", tmp_path, 1)
    with pytest.raises(UserError, match="_test_split2"):
        load_split("hmdb51", tmp_path, 2)
    with pytest.raises(UserError, match="unknown dataset"):
        load_split("kinetics", tmp_path, 1)


def test_video_key_matches_all_spellings():
    keys = {
        video_key("v_HandStandPushups_g01_c01"),
        video_key("v_HandstandPushups_g01_c01"),
        video_key("HandstandPushups_g01_c01"),
        video_key("HandstandPushups/v_HandStandPushups_g01_c01.avi"),
    }
    assert keys == {"handstandpushups_g01_c01"}


def test_holdout_keeps_whole_groups(shared_data):
    s = load_split("ucf101", shared_data / "ucf101" / "ucfTrainTestlist", 1)
    train, val = holdout_groups(s.train, 3, seed=1)
    assert len(train) + len(val) == len(s.train)
    train_groups = {ucf101_group(v.name) for v in train}
    val_groups = {ucf101_group(v.name) for v in val}
    assert len(val_groups) == 3 and not train_groups & val_groups
    assert holdout_groups(s.train, 3, seed=1) == (train, val)
    with pytest.raises(UserError, match="groups"):
        holdout_groups(s.train, 50)


def test_custom_split_names_with_spaces_and_dots_read_back_as_written(tmp_path):
    videos = {"clip Música": ["my clip", "Dr. Who 2"], "Música": ["clip Música take"], "Run": ["a"]}
    counts = write_custom_split(videos, tmp_path, 0.5)
    split = load_split("custom", tmp_path)
    read = {(v.name, split.classes[v.label]) for v in split.train + split.test}
    assert read == {(n, c) for c, names in videos.items() for n in names}
    assert counts == {"train": len(split.train), "test": len(split.test)}
    # Written by hand with a space: the longest class name the line ends with is its class.
    (tmp_path / "train.txt").write_text("my clip clip Música\nclip2.avi Música\n")
    (tmp_path / "test.txt").write_text("a Run\n")  # each video in one list only
    split = load_split("custom", tmp_path)
    assert [(v.name, split.classes[v.label]) for v in split.train] == [
        ("my clip", "clip Música"),
        ("clip2", "Música"),
    ]


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51"])
def test_a_custom_split_under_the_data_root_suggests_dataset_custom(tmp_path, dataset):
    write_custom_split({"Run": ["a", "b"], "Jump": ["c", "d"]}, tmp_path / "splits", 0.5)
    with pytest.raises(UserError, match="splits/classes.txt is there: .* --dataset custom"):
        load_split(dataset, default_splits_dir(dataset, tmp_path), 1)
    with pytest.raises(UserError, match="--dataset custom"):  # --splits-dir at the custom folder
        load_split(dataset, tmp_path / "splits", 1)
