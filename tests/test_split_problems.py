"""Bad split files: each problem is one line naming the file and line, before anything trains."""

import pytest

from dataloader.splits import check_training_classes, load_split
from engine.cli import main
from engine.streams import SPATIAL
from tests.helpers import write_frame_dataset
from utils.errors import UserError

CLASSES = "1 Run\r\n2 Jump\r\n"
TRAIN = "Run/v_Run_g01_c01.avi 1\r\nJump/v_Jump_g01_c01.avi 2\r\n"
TEST = "Run/v_Run_g02_c01.avi\r\nJump/v_Jump_g02_c01.avi\r\n"


def ucf101(folder, classes=CLASSES, train=TRAIN, test=TEST):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("classInd", classes), ("trainlist01", train), ("testlist01", test)):
        (folder / f"{name}.txt").write_bytes(text.encode() if isinstance(text, str) else text)
    return folder


def refusal(*args) -> str:
    with pytest.raises(UserError) as caught:
        load_split(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("files", "where", "words"),
    [
        ({"train": TRAIN + "Run/v_Run_g01_c01.avi 1\n"}, "trainlist01.txt, line 3", "listed again"),
        ({"test": TEST + "Jump/v_Jump_g01_c01.avi\n"}, "testlist01.txt, line 3", "trainlist01.txt, line 2"),
        ({"classes": "1 Run\n2\n"}, "classInd.txt, line 2", "'<class id> <class name>'"),
        ({"classes": "Run\n2 Jump\n"}, "classInd.txt, line 1", "'<class id> <class name>'"),
        ({"classes": "1 Run\n1 Jump\n"}, "classInd.txt, line 2", "class id 1 of '1 Jump' is given again, first at line 1 ('1 Run')"),
        ({"classes": "1 Run\n2 run\n"}, "classInd.txt, line 2", "class 'run' of '2 run' is given again"),
        ({"train": "Run/v_Run_g01_c01.avi 1\nJump/my clip.avi 2\n"}, "trainlist01.txt, line 2", "(a name with a space?)"),
        ({"train": TRAIN + "Walk/v_Walk_g01_c01.avi\n"}, "trainlist01.txt, line 3", "class 'Walk'"),
    ],
)  # fmt: skip
def test_each_bad_ucf101_line_is_one_line_naming_file_and_line(tmp_path, files, where, words):
    parts = {"classes": CLASSES, "train": TRAIN, "test": TEST, **files}
    message = refusal("ucf101", ucf101(tmp_path, *parts.values()), 1)
    assert f"{tmp_path / where}: " in message and words in message


def test_a_duplicate_class_id_names_the_id_and_both_lines_and_blames_no_other_class(tmp_path):
    message = refusal("ucf101", ucf101(tmp_path, "1 Run\n2 Jump\n2 Walk\n"), 1)
    assert message.startswith(f"{tmp_path / 'classInd.txt'}, line 3: class id 2 of '2 Walk'")
    assert "first at line 2 ('2 Jump')" in message


def test_a_byte_order_mark_is_dropped_and_utf16_refused(tmp_path):
    bom = "\ufeff"
    split = load_split("ucf101", ucf101(tmp_path, bom + CLASSES, bom + TRAIN, bom + TEST), 1)
    assert split.classes == ["Run", "Jump"] and [v.name for v in split.train][0] == "v_Run_g01_c01"
    (tmp_path / "classInd.txt").write_bytes(CLASSES.encode("utf-16"))
    assert "classInd.txt is UTF-16 text; save it as UTF-8" in refusal("ucf101", tmp_path, 1)


def hmdb51(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}_test_split1.txt").write_text(text)
    return folder


@pytest.mark.parametrize(
    ("jump", "where", "words"),
    [
        ("b_0.avi 1 \nmy clip.avi 2 \n", "jump_test_split1.txt, line 2", "'<video>.avi <tag>'"),
        (
            "b_0.avi 1 \nb_1.avi 3 \n",
            "jump_test_split1.txt, line 2",
            "tag 1 (train), 2 (test) or 0",
        ),
        ("b_0.avi 1 \nb_1.avi\n", "jump_test_split1.txt, line 2", "'<video>.avi <tag>'"),
        ("b_0.avi 1 \na_0.avi 2 \n", "jump_test_split1.txt, line 2", "run_test_split1.txt, line 1"),
    ],
)
def test_each_bad_hmdb51_line_is_one_line_naming_file_and_line(tmp_path, jump, where, words):
    splits = hmdb51(tmp_path, run="a_0.avi 1 \na_1.avi 2 \n", jump=jump)
    message = refusal("hmdb51", splits, 1)
    assert message.startswith(f"{tmp_path / where}: ") and words in message


@pytest.mark.parametrize(
    ("files", "where", "words"),
    [
        ({"classes": "Run\nJump\nrun\n"}, "classes.txt, line 3", "listed again (letter case aside), first at line 1"),
        ({"train": "a\tRun\nb\tJump\nv_a.avi\tRun\n"}, "train.txt, line 3", "video v_a is listed again"),
        ({"val": "c\tRun\n"}, "val.txt, line 1", "first at " ),
        ({"train": "a\tRun\nb\n"}, "train.txt, line 2", "needs '<video> <class name>'"),
        ({"test": "c\tWalk\n"}, "test.txt, line 1", "class 'Walk'"),
    ],
)  # fmt: skip
def test_each_bad_custom_line_is_one_line_naming_file_and_line(tmp_path, files, where, words):
    parts = {"classes": "Run\nJump\n", "train": "a\tRun\nb\tJump\n", "test": "c\tRun\n", **files}
    for name, text in parts.items():
        (tmp_path / f"{name}.txt").write_text(text)
    message = refusal("custom", tmp_path)
    assert message.startswith(f"{tmp_path / where}: ") and words in message


def test_a_class_without_training_videos_is_refused_naming_it_and_the_train_list(tmp_path):
    split = load_split("ucf101", ucf101(tmp_path, train="Run/v_Run_g01_c01.avi 1\n"), 1)
    with pytest.raises(UserError, match="class 'Jump' has 1 test video but no training video in "):
        check_training_classes(split, tmp_path)
    with pytest.raises(UserError, match=f"{tmp_path / 'trainlist01.txt'}: it could never be"):
        check_training_classes(split, tmp_path)
    splits = hmdb51(tmp_path / "h", run="a_0.avi 1 \n", jump="b_0.avi 2 \nb_1.avi 2 \n")
    untrained = "'jump' has 2 test videos but no training video in .*/jump_test_split1.txt"
    with pytest.raises(UserError, match=untrained):
        check_training_classes(load_split("hmdb51", splits, 1), splits)
    check_training_classes(load_split("ucf101", ucf101(tmp_path), 1), tmp_path)  # both trained


def test_a_duplicate_split_line_stops_training_before_anything_is_written(tmp_path):
    root = write_frame_dataset(
        tmp_path / "data", num_classes=2, train_per_class=1, test_per_class=1
    )
    train = root / "ucfTrainTestlist" / "trainlist01.txt"
    train.write_bytes(train.read_bytes() * 2)
    record = tmp_path / "record"
    with pytest.raises(
        UserError, match=f"^{train}, line 3: video v_Class0_g01_c01 is listed again"
    ):
        main(SPATIAL, ["--data-root", str(root), "--record-dir", str(record)])
    assert not record.exists()


def test_a_class_without_training_videos_stops_training_before_anything_is_written(tmp_path):
    root = write_frame_dataset(tmp_path / "data", num_classes=2, train_per_class=1,
                               test_per_class=1)  # fmt: skip
    train = root / "ucfTrainTestlist" / "trainlist01.txt"
    train.write_bytes(train.read_bytes().splitlines(keepends=True)[0])  # Class0's video only
    with pytest.raises(UserError, match=f"class 'Class1' has 1 test video .* in {train}"):
        main(SPATIAL, ["--data-root", str(root), "--record-dir", str(tmp_path / "record")])
    assert not (tmp_path / "record").exists()
