"""Your own clips: the custom split format, mmaction lists, trimmed class lists, and the three
commands from a folder of clips to a trained stream."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from dataloader.splits import load_split, write_custom_split
from engine.cli import main
from engine.streams import SPATIAL
from tests.helpers import single_thread
from tools import extract_frames_flow
from tools.synthetic_actions import generate
from utils.errors import UserError
from utils.scores import load_npz

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def _write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


def test_trimmed_class_index_labels_follow_class_names(tmp_path):
    splits = _write(
        tmp_path,
        classInd="11 Biking\r\n18 BoxingSpeedBag\r\n26 Diving\r\n",
        trainlist01="BoxingSpeedBag/v_BoxingSpeedBag_g08_c01.avi 18\nDiving/v_Diving_g08_c01.avi 26\n",
        testlist01="Biking/v_Biking_g01_c01.avi\nDiving/v_Diving_g01_c01.avi\n",
    )
    split = load_split("ucf101", splits, 1)
    assert split.classes == ["Biking", "BoxingSpeedBag", "Diving"]
    assert [v.label for v in split.train] == [1, 2] and [v.label for v in split.test] == [0, 2]

    _write(tmp_path, trainlist01="ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n")
    with pytest.raises(UserError, match="class 'ApplyEyeMakeup' .* is not in .*classInd.txt"):
        load_split("ucf101", splits, 1)
    _write(tmp_path, trainlist01="Biking/v_Biking_g08_c01.avi 26\n")
    with pytest.raises(UserError, match="in folder 'Biking' but class id 26 is 'Diving'"):
        load_split("ucf101", splits, 1)
    _write(tmp_path, trainlist01="v_Biking_g08_c01.avi 17\n")
    with pytest.raises(UserError, match="class id 17 .* is not in"):
        load_split("ucf101", splits, 1)


def test_custom_lists_by_class_name_and_mmaction_formats(tmp_path):
    named = _write(
        tmp_path / "named",
        classes="Pour tea\nStir\n",
        train="kitchen/clip_001.mp4 Stir\nclip_002 Pour tea\n",
        test="clip_003.avi stir\n",
        val="clip_004 Pour tea\n",
    )
    split = load_split("custom", named)
    assert split.classes == ["Pour tea", "Stir"]
    assert [(v.name, v.label) for v in split.train] == [("clip_001", 1), ("clip_002", 0)]
    assert [(v.name, v.label) for v in split.test] == [("clip_003", 1)]
    assert [(v.name, v.label) for v in split.val] == [("clip_004", 0)]

    mmaction = _write(
        tmp_path / "mm", train="rawframes/v_a 120 2\nrawframes/v_b 80 0\n", test="v_c.mp4 1\n"
    )
    split = load_split("custom", mmaction)
    assert split.classes == ["0", "1", "2"]
    assert [(v.name, v.label) for v in split.train] == [("v_a", 2), ("v_b", 0)]

    _write(tmp_path / "named", test="clip_003 Jump\n")
    with pytest.raises(UserError, match="class 'Jump' of 'clip_003 Jump' is not in"):
        load_split("custom", named)


def test_custom_split_keeps_groups_together_and_is_deterministic(tmp_path):
    videos = {c: [f"v_{c}_g{g:02d}_c{k}" for g in range(1, 9) for k in (1, 2)] for c in "AB"}
    counts = write_custom_split(videos, tmp_path / "one", 0.25)
    write_custom_split(videos, tmp_path / "two", 0.25)
    assert (tmp_path / "one" / "test.txt").read_text() == (
        tmp_path / "two" / "test.txt"
    ).read_text()
    split = load_split("custom", tmp_path / "one")
    assert counts == {"train": len(split.train), "test": len(split.test)}
    assert len(split.train) + len(split.test) == 32 and split.test
    train_groups = {v.name.rsplit("_", 1)[0] for v in split.train}
    assert not train_groups & {v.name.rsplit("_", 1)[0] for v in split.test}


def test_from_a_folder_of_clips_to_a_trained_stream_in_three_commands(
    tmp_path, capsys, monkeypatch
):
    clips = generate(tmp_path / "data", 2, 1, (48, 32), (8, 8), seed=3).videos_dir  # <class>/<clip>
    root = tmp_path / "frames"
    extract_frames_flow.main(
        ["--videos", str(clips), "--out", str(root), "--test-fraction", "0.4", "--workers", "1"]
        + ["--short-side", "32", "--preset", "fast"]
    )
    split = load_split("custom", root / "splits")
    assert len(split.classes) == 4 and len(split.train) + len(split.test) == 12
    record = tmp_path / "record"
    titles = []
    save = Figure.savefig
    monkeypatch.setattr(
        Figure,
        "savefig",
        lambda fig, *a, **k: (titles.append(fig.axes[0].get_title()), save(fig, *a, **k)),
    )
    main(
        SPATIAL,
        ["--data-root", str(root), "--dataset", "custom", "--record-dir", str(record)]
        + ["--arch", "resnet18", "--pretrained", "none", "--epochs", "1", "--crop-size", "32"]
        + ["--test-snippets", "2", "--batch-size", "4", "--workers", "0"],
    )
    scores = load_npz(record / "video_scores.npz")
    assert scores.classes == split.classes and len(scores) == len(split.test)
    assert np.isfinite(scores.scores).all()
    # A custom split is no "split 1": the score file says 0 and the reports no split.
    assert scores.split == 0
    (confusion,) = [t for t in titles if "rows normalised" in t]
    assert confusion.startswith("spatial: ") and "split" not in confusion
    # 4 videos x 32 accumulated steps keep the recipe's 128: more than the training set.
    err = capsys.readouterr().err
    n = len(split.train)
    assert f"warning: the effective batch 128 is larger than the {n} training videos" in err
    assert "--accum-steps 1" in err
