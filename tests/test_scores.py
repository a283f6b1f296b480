"""Score files: the npz round trip, the reference pickle and its labels, refusing crafted pickles."""

import pickle

import numpy as np
import pytest

from engine.late_fusion import load_score_file as load_scores
from utils.errors import UserError
from utils.metrics import accuracy_report
from utils.scores import save_scores

CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
TEST_VIDEOS = [  # (split-file name, label) as testlist01 spells them
    ("v_ApplyEyeMakeup_g01_c01", 0),
    ("v_HandStandPushups_g01_c01", 1),
    ("v_HandStandPushups_g02_c03", 1),
    ("v_YoYo_g03_c02", 2),
]


def write_splits(root):
    """UCF101-style split files with the real HandStand/Handstand quirk and Windows line endings."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classInd.txt").write_bytes(
        "".join(f"{i + 1} {c}\r\n" for i, c in enumerate(CLASSES)).encode()
    )
    train = "".join(f"{CLASSES[c]}/v_{CLASSES[c]}_g09_c01.avi {c + 1}\r\n" for c in range(3))
    (root / "trainlist01.txt").write_bytes(train.encode())
    test = "".join(f"{CLASSES[label]}/{name}.avi\r\n" for name, label in TEST_VIDEOS)
    (root / "testlist01.txt").write_bytes(test.encode())
    return root


def reference_preds():
    """A dict as the reference implementation pickles it: no v_, 'Handstand', float32 raw scores."""
    rng = np.random.default_rng(0)
    preds = {}
    for name, label in reversed(TEST_VIDEOS):  # not in test-list order on purpose
        key = name[2:].replace("HandStand", "Handstand")
        row = rng.normal(size=len(CLASSES)).astype(np.float32)
        row[label] += 10.0 if name != "v_YoYo_g03_c02" else -10.0  # YoYo is misclassified
        preds[key] = row
    return preds


def test_save_load_roundtrip(tmp_path):
    scores = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]], dtype=np.float64)
    path = save_scores(
        tmp_path / "sub" / "video_scores.npz",
        videos=["v_A_g01_c01", "v_B_g01_c02"],
        labels=[1, 0],
        classes=["A", "B", "C"],
        scores=scores,
        stream="spatial",
        split=2,
        epoch=7,
    )
    assert path == tmp_path / "sub" / "video_scores.npz"
    assert [p.name for p in path.parent.iterdir()] == ["video_scores.npz"]  # no temp file left
    with np.load(path, allow_pickle=False) as raw:  # plain arrays, as the conventions promise
        assert raw["scores"].dtype == np.float32 and raw["labels"].dtype == np.int64
    score = load_scores(path)
    assert score.videos == ["v_A_g01_c01", "v_B_g01_c02"]
    assert score.classes == ["A", "B", "C"]
    np.testing.assert_array_equal(score.labels, [1, 0])
    np.testing.assert_allclose(score.scores, scores.astype(np.float32))
    assert (score.stream, score.split, score.epoch, score.path) == ("spatial", 2, 7, path)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "video_scores.npz"
    kwargs = dict(videos=["a"], labels=[0], classes=["A", "B"], stream="motion", split=1)
    save_scores(path, scores=[[1.0, 0.0]], epoch=1, **kwargs)

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_scores(path, scores=[[0.0, 1.0]], epoch=2, **kwargs)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["video_scores.npz"]
    assert load_scores(path).epoch == 1  # the old file is intact


def test_save_rejects_wrong_shapes(tmp_path):
    with pytest.raises(ValueError, match="must be"):
        save_scores(
            tmp_path / "s.npz",
            videos=["a", "b"],
            labels=[0, 1],
            classes=["A", "B", "C"],
            scores=np.zeros((2, 2)),
            stream="spatial",
            split=1,
            epoch=0,
        )


def test_reference_pickle_labels_from_split_files(tmp_path):
    path = tmp_path / "spatial_video_preds.pickle"
    preds = reference_preds()
    path.write_bytes(pickle.dumps(preds, protocol=3))  # as the reference implementation wrote it
    score = load_scores(path, splits_dir=write_splits(tmp_path / "splits"), split=1)
    # names and order of the test list, labels from it, scores from the matching key
    assert score.videos == [name for name, _ in TEST_VIDEOS]
    np.testing.assert_array_equal(score.labels, [label for _, label in TEST_VIDEOS])
    np.testing.assert_array_equal(score.scores[1], preds["HandstandPushups_g01_c01"])
    assert score.classes == CLASSES
    assert (score.stream, score.split, score.epoch) == ("spatial", 1, -1)
    assert score.scores.dtype == np.float32
    assert accuracy_report(score.scores, score.labels)["top1"] == 75.0


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_reference_pickle_any_protocol(tmp_path, protocol):
    """Protocol 2 stores array bytes through _codecs.encode, protocol 5 through _frombuffer."""
    path = tmp_path / "motion_video_preds.pickle"
    preds = reference_preds()
    path.write_bytes(pickle.dumps(preds, protocol=protocol))
    score = load_scores(path, splits_dir=write_splits(tmp_path / "splits"), split=1)
    assert score.stream == "motion"
    np.testing.assert_array_equal(score.scores[0], preds["ApplyEyeMakeup_g01_c01"])


def test_reference_pickle_needs_split_files(tmp_path):
    path = tmp_path / "spatial_video_preds.pickle"
    path.write_bytes(pickle.dumps(reference_preds()))
    with pytest.raises(UserError, match=r"without labels: pass --splits-dir DIR --split N"):
        load_scores(path)


def test_reference_pickle_unknown_video(tmp_path):
    preds = reference_preds()
    preds["Surfing_g01_c01"] = np.zeros(len(CLASSES), dtype=np.float32)
    path = tmp_path / "p.pickle"
    path.write_bytes(pickle.dumps(preds))
    with pytest.raises(UserError, match=r"1 of its 5 videos are not in the test list.*Surfing_g01"):
        load_scores(path, splits_dir=write_splits(tmp_path / "splits"), split=1)


def test_reference_pickle_wrong_class_count(tmp_path):
    preds = {k: np.zeros(101, dtype=np.float32) for k in reference_preds()}
    path = tmp_path / "p.pickle"
    path.write_bytes(pickle.dumps(preds))
    with pytest.raises(UserError, match="has 101 scores per video but ucf101 split 1 .* 3 classes"):
        load_scores(path, splits_dir=write_splits(tmp_path / "splits"), split=1)


class _CreatesFile:
    """Unpickling this calls open(target, 'w'): the kind of payload a crafted score file carries."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_crafted_pickle_runs_no_code(tmp_path):
    canary = tmp_path / "canary.txt"
    payload = pickle.dumps({"ApplyEyeMakeup_g01_c01": _CreatesFile(canary)}, protocol=2)
    pickle.loads(payload)  # the payload is real: a plain unpickler creates the file
    assert canary.exists()
    canary.unlink()

    path = tmp_path / "evil.pickle"
    path.write_bytes(payload)
    with pytest.raises(UserError, match=r"evil\.pickle: refused to load the pickled global .*open"):
        load_scores(path, splits_dir=write_splits(tmp_path / "splits"), split=1)
    assert not canary.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (
            b"video,score\nv_a,1\n",
            "neither a video_scores.npz nor a reference-implementation pickle",
        ),
        (b"", "neither a video_scores.npz nor a reference-implementation pickle"),
        (pickle.dumps([1.0, 2.0]), "holds a list, not a dict from video name to class scores"),
    ],
)
def test_other_formats_are_refused(tmp_path, content, message):
    path = tmp_path / "scores.bin"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_scores(path)


def test_npz_missing_keys(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, scores=np.zeros((2, 3), dtype=np.float32), videos=np.array(["a", "b"]))
    with pytest.raises(UserError, match=r"lacks the arrays labels, classes, stream, split, epoch"):
        load_scores(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="score file not found"):
        load_scores(tmp_path / "nope.npz")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores_are_refused(tmp_path, bad):
    scores = np.zeros((3, 2), dtype=np.float32)
    scores[1, 0] = bad
    path = save_scores(
        tmp_path / "s.npz",
        videos=["v_a", "v_b", "v_c"],
        labels=[0, 1, 0],
        classes=["A", "B"],
        scores=scores,
        stream="spatial",
        split=1,
        epoch=3,
    )
    with pytest.raises(UserError, match=r"1 videos have NaN or infinite scores \(e\.g\. v_b\)"):
        load_scores(path)


def test_real_reference_pickle(shared_data):
    score = load_scores(
        shared_data / "reference-scores" / "spatial_video_preds.pickle",
        splits_dir=shared_data / "ucf101" / "ucfTrainTestlist",
        split=1,
    )
    assert score.scores.shape == (3783, 101) and len(score.classes) == 101
    assert "v_HandStandPushups_g01_c01" in score.videos  # test-list spelling, not the pickle's
    assert 65.0 < accuracy_report(score.scores, score.labels)["top1"] < 73.0


def test_a_score_file_of_a_development_version_is_refused_saying_what_to_do(tmp_path):
    path = save_scores(
        tmp_path / "new.npz",
        videos=["a", "b"],
        labels=[0, 1],
        classes=["x", "y"],
        scores=np.zeros((2, 2)),
        stream="spatial",
        split=1,
        epoch=1,
    )
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k not in ("kind", "test_mode")}
    np.savez(tmp_path / "old.npz", **arrays)  # as written before score kinds
    with pytest.raises(UserError, match=r"old\.npz is a score file of a development version.*"):
        load_scores(tmp_path / "old.npz")
    assert load_scores(path).kind == "logits"


@pytest.mark.parametrize("num_classes", [3, 10, 101])
def test_top5_and_confusion_counts_agree_with_scikit_learn(num_classes):
    """The reports count without importing scikit-learn (seconds at every run's end)."""
    from sklearn.metrics import confusion_matrix, top_k_accuracy_score

    from utils.reports import confusion_counts

    rng = np.random.default_rng(num_classes)
    scores = rng.normal(size=(300, num_classes))
    labels = rng.integers(0, num_classes, 300)
    predicted = scores.argmax(1)
    classes = np.arange(num_classes)
    expected = confusion_matrix(labels, predicted, labels=classes)
    assert np.array_equal(confusion_counts(labels, predicted, num_classes), expected)
    top5 = (
        100 * top_k_accuracy_score(labels, scores, k=5, labels=classes) if num_classes > 5 else 100
    )
    assert accuracy_report(scores, labels)["top5"] == pytest.approx(top5)
