"""fusion.py: the accuracy table, the fused file and its reports, and clear errors on bad inputs."""

import csv
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fusion
from engine.late_fusion import fuse
from engine.late_fusion import load_score_file as load_scores
from tests.test_scores import reference_preds, write_splits
from utils.errors import UserError
from utils.metrics import accuracy_report
from utils.reports import write_reports
from utils.scores import ScoreFile, save_scores

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["A", "B", "C"]
VIDEOS = [f"v_{c}_g0{i}_c01" for c in CLASSES for i in (1, 2)]
LABELS = [0, 0, 1, 1, 2, 2]
# spatial gets v_A_g02 and v_C_g01 wrong, motion gets v_B_g01 wrong; the average gets all right
SPATIAL = np.array(
    [[3, 1, 0], [1, 2, 0], [0, 4, 1], [0, 3, 1], [0, 2, 1], [0, 0, 5]], dtype=np.float32
)
MOTION = np.array(
    [[4, 0, 0], [5, 1, 0], [2, 1, 0], [0, 3, 0], [0, 0, 6], [0, 1, 2]], dtype=np.float32
)


def write_npz(
    path,
    scores=SPATIAL,
    videos=VIDEOS,
    labels=LABELS,
    classes=CLASSES,
    stream="spatial",
    epoch=5,
    test_mode="19 snippets, centre crop",
    split=1,
):
    return save_scores(
        path,
        videos=videos,
        labels=labels,
        classes=classes,
        scores=scores,
        stream=stream,
        split=split,
        epoch=epoch,
        test_mode=test_mode,
    )


@pytest.fixture
def pair(tmp_path):
    spatial = write_npz(tmp_path / "spatial" / "video_scores.npz")
    motion = write_npz(tmp_path / "motion" / "video_scores.npz", MOTION, stream="motion")
    return spatial, motion


def test_fusion_table_json_and_outputs(pair, tmp_path, capsys):
    spatial, motion = pair
    out, report = tmp_path / "fused" / "fused.npz", tmp_path / "fused.json"
    argv = ["--spatial", str(spatial), "--motion", str(motion), "--out", str(out)]
    results = fusion.main([*argv, "--json", str(report)])
    assert results["spatial"]["top1"] == pytest.approx(100 * 4 / 6)
    assert results["motion"]["top1"] == pytest.approx(100 * 5 / 6)
    assert results["fused"] == {"top1": 100.0, "top5": 100.0, "mean_class": 100.0, "videos": 6}
    assert json.loads(report.read_text()) == results

    printed = capsys.readouterr().out
    table = [line.split() for line in printed.splitlines()[1:5]]
    assert table == [
        ["stream", "top-1", "top-5", "mean", "class", "videos", "epoch", "test"],
        ["spatial", "66.67", "100.00", "66.67", "6", "5", "19", "snippets,", "centre", "crop"],
        ["motion", "83.33", "100.00", "83.33", "6", "5", "19", "snippets,", "centre", "crop"],
        ["fused", "100.00", "100.00", "100.00", "6"],
    ]
    for name in ["fused.npz", "fused_per_class_accuracy.csv", "fused_confusion_matrix.png"]:
        assert f"wrote {tmp_path / 'fused' / name}" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == [
        ".fused.npz.lock",  # the lock of one writer (empty once the run ends)
        "fused.npz",
        "fused_confusion_matrix.png",
        "fused_misclassified.csv",
        "fused_per_class_accuracy.csv",
    ]
    fused = load_scores(out)
    assert (fused.stream, fused.split, fused.videos, fused.classes) == ("fused", 1, VIDEOS, CLASSES)
    np.testing.assert_allclose(fused.scores, (SPATIAL + MOTION) / 2)


def test_without_out_writes_nothing(pair, tmp_path, capsys):
    spatial, motion = pair
    before = sorted(tmp_path.rglob("*"))
    fusion.main(["--spatial", str(spatial), "--motion", str(motion)])
    assert sorted(tmp_path.rglob("*")) == before
    assert "wrote" not in capsys.readouterr().out


def test_weights_and_softmax(pair):
    spatial, motion = pair
    base = ["--spatial", str(spatial), "--motion", str(motion)]
    only_spatial = fusion.main([*base, "--weights", "1", "0"])
    assert only_spatial["fused"] == only_spatial["spatial"]
    only_motion = fusion.main([*base, "--weights", "0", "2"])
    assert only_motion["fused"] == only_motion["motion"]
    # v_B_g01: spatial's large scores [0, 10, 9] outweigh motion's wrong [3, 0, 0] when averaged
    # raw, but as probabilities spatial is unsure (0.73 B) and motion sure (0.91 A)
    big, sharp = SPATIAL.copy(), MOTION.copy()
    big[2], sharp[2] = [0, 10, 9], [3, 0, 0]
    write_npz(spatial, big)
    write_npz(motion, sharp, stream="motion")
    assert fusion.main(base)["fused"]["top1"] == 100.0
    assert fusion.main([*base, "--softmax"])["fused"]["top1"] == pytest.approx(100 * 5 / 6)
    fused = fuse([big, sharp], (1.0, 3.0), use_softmax=True)
    expected = (np.exp(big) / np.exp(big).sum(1, keepdims=True)) + 3 * (
        np.exp(sharp) / np.exp(sharp).sum(1, keepdims=True)
    )
    np.testing.assert_allclose(np.exp(fused), expected / 4, rtol=1e-6)
    with pytest.raises(UserError, match="--weights must be non-negative"):
        fusion.main([*base, "--weights", "1", "-1"])


def test_reference_pickle_with_npz(pair, tmp_path):
    """A reference pickle (no v_, 'Handstand') fuses with an npz named as the split files."""
    preds = reference_preds()
    pickled = tmp_path / "motion_video_preds.pickle"
    pickled.write_bytes(pickle.dumps(preds))
    splits = write_splits(tmp_path / "splits")
    reference = load_scores(pickled, splits_dir=splits, split=1)
    spatial = write_npz(
        tmp_path / "npz" / "video_scores.npz",
        scores=reference.scores[::-1].copy(),  # other order, same videos
        videos=reference.videos[::-1],
        labels=reference.labels[::-1],
        classes=reference.classes,
    )
    out = tmp_path / "out" / "fused.npz"
    argv = ["--spatial", str(spatial), "--motion", str(pickled), "--out", str(out)]
    results = fusion.main([*argv, "--splits-dir", str(splits), "--split", "1"])
    assert results["fused"] == results["motion"] == results["spatial"]
    assert results["fused"]["videos"] == 4
    assert load_scores(out).videos == reference.videos[::-1]  # the --spatial file's names
    with pytest.raises(UserError, match="pass --splits-dir DIR --split N"):
        fusion.main(argv)


def test_class_count_mismatch(pair, tmp_path):
    spatial, _ = pair
    other = write_npz(
        tmp_path / "m.npz", np.zeros((6, 4), np.float32), classes=[*CLASSES, "D"], stream="motion"
    )
    with pytest.raises(
        UserError, match=r"video_scores\.npz and .*m\.npz have different classes \(3 vs 4 classes\)"
    ):
        fusion.main(["--spatial", str(spatial), "--motion", str(other)])


def test_class_name_mismatch(pair, tmp_path):
    spatial, _ = pair
    other = write_npz(tmp_path / "m.npz", MOTION, classes=["A", "C", "B"], stream="motion")
    with pytest.raises(UserError, match=r"have different classes \(class 2: 'B' vs 'C'\)"):
        fusion.main(["--spatial", str(spatial), "--motion", str(other)])


def test_partial_overlap(pair, tmp_path, capsys):
    spatial, _ = pair
    videos = [*VIDEOS[:4], "v_D_g01_c01", "v_D_g02_c01"]  # C's two videos missing, two extra
    motion = write_npz(tmp_path / "m.npz", MOTION, videos=videos, stream="motion")
    argv = ["--spatial", str(spatial), "--motion", str(motion)]
    with pytest.raises(UserError) as err:
        fusion.main(argv)
    message = str(err.value)
    assert "video sets differ: 2 of " in message and "6 videos are missing from" in message
    assert "(e.g. v_C_g01_c01, v_C_g02_c01)" in message
    assert "2 of its 6 are missing from" in message and "v_D_g01_c01" in message
    assert "pass --allow-partial to fuse the 4 in both" in message

    results = fusion.main([*argv, "--allow-partial", "--out", str(tmp_path / "f.npz")])
    assert "note: --allow-partial: fusing the 4 videos in both files" in capsys.readouterr().out
    assert results["spatial"]["videos"] == results["fused"]["videos"] == 4
    assert load_scores(tmp_path / "f.npz").videos == VIDEOS[:4]


def test_no_shared_videos(pair, tmp_path):
    spatial, _ = pair
    motion = write_npz(
        tmp_path / "m.npz", MOTION, videos=[f"v_X_g0{i}_c01" for i in range(6)], stream="motion"
    )
    with pytest.raises(UserError, match="share no video"):
        fusion.main(["--spatial", str(spatial), "--motion", str(motion), "--allow-partial"])


def test_label_mismatch(pair, tmp_path):
    spatial, _ = pair
    motion = write_npz(tmp_path / "m.npz", MOTION, labels=[0, 0, 1, 1, 2, 1], stream="motion")
    with pytest.raises(UserError, match=r"labels differ for 1 videos \(e\.g\. v_C_g02_c01\)"):
        fusion.main(["--spatial", str(spatial), "--motion", str(motion)])


def test_nan_scores(pair, tmp_path):
    spatial, _ = pair
    bad = MOTION.copy()
    bad[3, 1] = np.nan
    motion = write_npz(tmp_path / "m.npz", bad, stream="motion")
    with pytest.raises(UserError, match=r"m\.npz: 1 videos have NaN or infinite scores"):
        fusion.main(["--spatial", str(spatial), "--motion", str(motion)])


def test_wrong_formats(pair, tmp_path):
    spatial, _ = pair
    text = tmp_path / "scores.txt"
    text.write_text("v_A_g01_c01 0.5 0.2 0.3\n")
    with pytest.raises(UserError, match=r"scores\.txt is neither a video_scores\.npz nor"):
        fusion.main(["--spatial", str(spatial), "--motion", str(text)])
    partial = tmp_path / "partial.npz"
    np.savez(partial, scores=MOTION, videos=np.array(VIDEOS))
    with pytest.raises(UserError, match=r"partial\.npz lacks the arrays labels, classes"):
        fusion.main(["--spatial", str(partial), "--motion", str(spatial)])


def test_cli_error_is_one_line(pair, tmp_path):
    spatial, _ = pair
    missing = tmp_path / "missing.npz"
    proc = subprocess.run(
        [sys.executable, "fusion.py", "--spatial", str(spatial), "--motion", str(missing)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"error: score file not found: {missing}\n"


def test_mixed_kinds_are_fused_as_log_probabilities_and_said_so(tmp_path, capsys):
    """Without --softmax, a probabilities file and a logits file are not averaged as numbers."""
    from scipy.special import log_softmax, softmax

    spatial = write_npz(tmp_path / "s.npz", SPATIAL * 10)  # sharp logits
    probs = softmax(MOTION.astype(np.float64), axis=1)
    motion = save_scores(
        tmp_path / "m.npz", videos=VIDEOS, labels=LABELS, classes=CLASSES, scores=probs,
        stream="motion", split=1, epoch=5, kind="probabilities",
    )  # fmt: skip
    out = tmp_path / "fused.npz"
    fusion.main(["--spatial", str(spatial), "--motion", str(motion), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "spatial holds logits, motion holds probabilities" in printed
    assert "converted to log-probabilities" in printed
    fused = load_scores(out)
    assert fused.kind == "log_probabilities"
    expected = (log_softmax(SPATIAL * 10.0, axis=1) + np.log(probs)) / 2
    np.testing.assert_allclose(fused.scores, expected, rtol=1e-5, atol=1e-5)
    # Files of one kind are averaged as they are, and keep their kind.
    both = tmp_path / "both.npz"
    fusion.main(["--spatial", str(motion), "--motion", str(motion), "--out", str(both), "--force"])
    assert load_scores(both).kind == "probabilities"
    np.testing.assert_allclose(load_scores(both).scores, probs, rtol=1e-6)
    assert "converted" not in capsys.readouterr().out


def test_reports_content(tmp_path):
    scores = np.array(
        [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.0, 0.8, 0.2]]
    )
    score = ScoreFile(
        ["v_a1", "v_b1", "v_b2", "v_c1", "v_c2"], np.array([0, 1, 1, 2, 2]), CLASSES,
        scores, "fused", 1, -1, kind="probabilities",
    )  # fmt: skip
    paths = write_reports(score, tmp_path / "r", prefix="x_")
    assert [p.name for p in paths] == [
        "x_per_class_accuracy.csv",
        "x_confusion_matrix.png",
        "x_misclassified.csv",
    ]
    with open(paths[0], newline="") as f:
        assert list(csv.reader(f)) == [
            ["class", "videos", "correct", "accuracy"],
            ["A", "1", "1", "100.00"],
            ["B", "2", "1", "50.00"],
            ["C", "2", "1", "50.00"],
        ]
    with open(paths[2], newline="") as f:
        rows = list(csv.DictReader(f))
    # most confident mistake first; the file says its rows are probabilities: kept as such
    assert [(r["video"], r["true_class"], r["predicted_class"]) for r in rows] == [
        ("v_c2", "C", "B"),
        ("v_b2", "B", "A"),
    ]
    assert (rows[0]["true_probability"], rows[0]["predicted_probability"]) == ("0.2000", "0.8000")
    assert Image.open(paths[1]).format == "PNG"


def test_confusion_png_is_readable_for_101_classes(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(101), 2)
    classes = [f"SomeLongClassName{i:03d}" for i in range(101)]
    scores = rng.normal(size=(202, 101)).astype(np.float32)
    score = ScoreFile([f"v_{i}" for i in range(202)], labels, classes, scores, "spatial", 1, 3)
    paths = write_reports(score, tmp_path)
    width, height = Image.open(paths[1]).size
    assert width >= 2000 and height >= 2000  # one class per ~20 px: names do not overlap
    with open(paths[0], newline="") as f:
        assert len(list(csv.reader(f))) == 102
    assert paths[3].name == "confused_pairs.png" and Image.open(paths[3]).format == "PNG"


def test_confusion_png_draws_only_the_classes_present(tmp_path):
    classes = [f"Class{i:03d}" for i in range(101)]
    labels = np.array([3, 3, 50, 50, 99, 99])
    scores = np.zeros((6, 101), np.float32)
    scores[np.arange(6), [3, 50, 50, 50, 99, 7]] = 1.0  # Class007 is predicted once, never true
    score = ScoreFile([f"v_{i}" for i in range(6)], labels, classes, scores, "spatial", 1, 3)
    paths = write_reports(score, tmp_path)
    width, height = Image.open(paths[1]).size
    assert width < 1200 and height < 1200  # 4 classes drawn, not 101
    assert len(paths) == 3  # no pairs view for a handful of classes


@pytest.fixture
def reference(shared_data):
    return (
        shared_data / "reference-scores" / "spatial_video_preds.pickle",
        shared_data / "ucf101" / "ucfTrainTestlist",
    )


@pytest.mark.parametrize("extra", [[], ["--softmax"]])
def test_real_reference_fused_with_itself(reference, tmp_path, extra):
    pickled, splits = reference
    argv = ["--spatial", str(pickled), "--motion", str(pickled), "--splits-dir", str(splits)]
    argv.append("--force")  # the spatial file given as motion too, on purpose
    results = fusion.main([*argv, "--split", "1", *extra, "--json", str(tmp_path / "r.json")])
    assert 65.0 < results["spatial"]["top1"] < 73.0
    assert results["spatial"]["videos"] == 3783
    assert results["fused"] == results["spatial"] == results["motion"]
    assert json.loads((tmp_path / "r.json").read_text()) == results


def test_real_reference_softmax_fusion_survives_float32(reference, tmp_path):
    """Softmax of these sharp scores underflows float32; the fused file stores log-probabilities."""
    pickled, splits = reference
    out = tmp_path / "fused.npz"
    argv = ["--spatial", str(pickled), "--motion", str(pickled), "--splits-dir", str(splits)]
    results = fusion.main([*argv, "--force", "--split", "1", "--softmax", "--out", str(out)])
    fused = load_scores(out)
    assert fused.videos[0] == "v_ApplyEyeMakeup_g01_c01"
    assert accuracy_report(fused.scores, fused.labels) == results["fused"]
    with open(tmp_path / "fused_per_class_accuracy.csv", newline="") as f:
        assert sum(int(row["videos"]) for row in csv.DictReader(f)) == 3783


def test_a_file_given_as_the_wrong_stream_is_refused(pair, tmp_path, capsys):
    spatial, motion = pair
    with pytest.raises(
        UserError, match=r"holds spatial-stream scores, not motion; give it as --spatial"
    ):
        fusion.main(["--spatial", str(spatial), "--motion", str(spatial)])  # the same file twice
    with pytest.raises(UserError, match=r"holds motion-stream scores, not spatial"):
        fusion.main(["--spatial", str(motion), "--motion", str(spatial)])  # swapped
    results = fusion.main(["--spatial", str(spatial), "--motion", str(spatial), "--force"])
    assert results["fused"] == results["spatial"]


def test_files_from_different_epochs_or_test_modes_are_flagged(pair, tmp_path, capsys):
    spatial, _ = pair
    motion = write_npz(
        tmp_path / "m.npz", MOTION, stream="motion", epoch=7, test_mode="19 snippets, 10 crops"
    )
    fusion.main(["--spatial", str(spatial), "--motion", str(motion)])
    printed = capsys.readouterr().out
    assert "differ in epoch" not in printed  # streams train for different epochs by design
    assert "differ in test crops: spatial centre crop, motion 10 crops" in printed
    assert "10 crops" in printed.splitlines()[-2]  # the motion row of the table


def test_fusion_warns_only_where_a_difference_signals_a_mistake(pair, tmp_path, capsys):
    """A three-stream run (other epochs, 10 clips vs 19 frames) fuses without a warning; two
    files of one stream from other epochs, or another split, are flagged."""
    spatial, _ = pair
    motion = write_npz(tmp_path / "m.npz", MOTION, stream="motion", epoch=340)
    clip = write_npz(
        tmp_path / "c.npz", MOTION, stream="clip", epoch=45, test_mode="10 snippets, centre crop"
    )
    fusion.main(["--spatial", str(spatial), "--motion", str(motion), "--stream", f"clip={clip}"])
    assert "warning" not in capsys.readouterr().out
    later = write_npz(tmp_path / "s80.npz", SPATIAL, epoch=80)
    fusion.main(["--spatial", str(spatial), "--stream", f"again={later}", "--force"])
    assert "differ in epoch (all spatial stream): spatial 5, again 80" in capsys.readouterr().out
    other = write_npz(tmp_path / "m2.npz", MOTION, stream="motion", split=2)
    fusion.main(["--spatial", str(spatial), "--motion", str(other)])
    assert "differ in split: spatial 1, motion 2" in capsys.readouterr().out


def test_three_streams_with_weights_equal_the_weighted_average_by_hand(pair, tmp_path, capsys):
    spatial, motion = pair
    third = np.array(
        [[1, 0, 0], [0, 0, 2], [0, 1, 0], [0, 2, 0], [0, 0, 1], [0, 0, 3]], dtype=np.float32
    )
    clip = write_npz(tmp_path / "clip.npz", third, stream="clip")
    out = tmp_path / "fused3.npz"
    argv = ["--spatial", str(spatial), "--motion", str(motion), "--stream", f"clip={clip}"]
    results = fusion.main([*argv, "--weights", "1", "2", "3", "--out", str(out)])
    assert list(results) == ["spatial", "motion", "clip", "fused"]
    expected = (SPATIAL + 2 * MOTION + 3 * third) / 6
    np.testing.assert_allclose(load_scores(out).scores, expected, rtol=1e-6)
    assert "clip" in capsys.readouterr().out.splitlines()[4]  # a row of the table
    with pytest.raises(UserError, match="--weights: 2 given for 3 streams"):
        fusion.main([*argv, "--weights", "1", "2"])
    with pytest.raises(UserError, match="give NAME=PATH"):
        fusion.main([*argv[:4], "--stream", str(clip)])
    with pytest.raises(UserError, match="at least two score files"):
        fusion.main(["--spatial", str(spatial)])


VAL_VIDEOS = [f"v_{c}_g0{i}_c02" for c in CLASSES for i in (3, 4)]  # other groups than the test's
# On validation, motion is right on 4 of 6 and spatial on 4 of 6, differently: only some mixes
# get all 6 right, which the brute force below finds independently.
VAL_SPATIAL = np.array(
    [[5, 0, 0], [0, 4, 0], [0, 6, 0], [0, 5, 0], [0, 0, 4], [3, 0, 0]], np.float32
)
VAL_MOTION = np.array(
    [[0, 2, 0], [3, 0, 0], [0, 2, 0], [0, 1, 0], [0, 0, 2], [0, 0, 2]], np.float32
)


def _val_pair(folder):
    spatial = write_npz(folder / "spatial" / "val_scores.npz", VAL_SPATIAL, VAL_VIDEOS)
    motion = write_npz(
        folder / "motion" / "val_scores.npz", VAL_MOTION, VAL_VIDEOS, stream="motion"
    )
    return spatial, motion


def _brute_force_best(softmax):
    labels = np.array(LABELS)
    best = None
    for ws in np.round(np.arange(0, 1.01, 0.1), 1):
        wm = round(1 - ws, 1)
        if softmax:
            p = [np.exp(s) / np.exp(s).sum(1, keepdims=True) for s in (VAL_SPATIAL, VAL_MOTION)]
            fused = ws * p[0] + wm * p[1]
        else:
            fused = ws * VAL_SPATIAL + wm * VAL_MOTION
        top1 = accuracy_report(fused, labels)["top1"]
        key = (top1, -abs(ws - 0.5))
        if best is None or key > best[0]:
            best = (key, [ws, wm])
    return best


def test_tuned_weights_are_the_validation_best_and_blind_to_test_scores(pair, tmp_path, capsys):
    spatial, motion = pair
    _val_pair(tmp_path)  # beside the test files: <stream>/val_scores.npz
    out = tmp_path / "fused" / "fused.npz"
    argv = ["--spatial", str(spatial), "--motion", str(motion), "--tune-weights", "--no-softmax"]
    fusion.main([*argv, "--out", str(out)])
    chosen = json.loads((out.parent / "fusion_weights.json").read_text())
    (top1, _), expected = _brute_force_best(softmax=False)
    assert chosen["weights"] == pytest.approx(expected) and chosen["softmax"] is False
    assert chosen["validation"]["top1"] == pytest.approx(top1)
    assert "tuned on 6 validation videos" in capsys.readouterr().out
    # Other test scores, same validation files: the same choice.
    write_npz(spatial, MOTION)
    write_npz(motion, SPATIAL[::-1].copy(), stream="motion")
    fusion.main([*argv, "--out", str(tmp_path / "again" / "fused.npz")])
    again = json.loads((tmp_path / "again" / "fusion_weights.json").read_text())
    assert again["weights"] == chosen["weights"] and again["softmax"] == chosen["softmax"]


def test_weight_tuning_refuses_missing_or_test_files(pair, tmp_path):
    spatial, motion = pair
    argv = ["--spatial", str(spatial), "--motion", str(motion), "--tune-weights"]
    with pytest.raises(UserError, match="needs validation scores; none for spatial"):
        fusion.main(argv)
    _val_pair(tmp_path)
    with pytest.raises(UserError, match="holds 6 test videos .* validation videos only"):
        fusion.main([*argv, "--val", f"spatial={spatial}", "--out", str(tmp_path / "f.npz")])
    with pytest.raises(UserError, match="leave --weights out"):
        fusion.main([*argv, "--weights", "1", "2"])
