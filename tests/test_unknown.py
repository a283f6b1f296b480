"""--threshold P: a window or video whose fused top probability is below P is 'unknown' in
predict's JSON, CSV, timeline, segments and GIF, its probabilities kept; tools/threshold.py
prints what each P keeps of a validation set's videos."""

import csv
import json

import numpy as np
import pytest
from scipy.special import softmax

from tests.helpers import single_thread
from tests.tiny_streams import CLASSES, noise_video, tiny_checkpoints
from tools import predict, threshold
from utils.errors import UserError
from utils.gif import GifFrames, gif_labels
from utils.scores import save_scores

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("unknown")
    return {**tiny_checkpoints(base), "video": noise_video(base / "videos" / "noise.avi")}


def _predict(tiny, *extra):
    argv = [tiny["video"], "--spatial", tiny["spatial"], "--motion", tiny["motion"]]
    return predict.main([str(a) for a in [*argv, "--device", "cpu", "--top", 1, *extra]])


def test_windows_below_the_threshold_are_unknown_with_their_probabilities_kept(tiny, tmp_path):
    windows = ["--window", 0.4, "--stride", 0.2]
    first = _predict(tiny, *windows, "--timeline", tmp_path / "all.csv")
    before = list(csv.DictReader((tmp_path / "all.csv").open()))
    tops = sorted({float(r["fused_prob1"]) for r in before})
    assert len(tops) >= 2  # windows differ, so a threshold between them splits them
    p = (tops[len(tops) // 2 - 1] + tops[len(tops) // 2]) / 2
    out = tmp_path / "p.csv"
    result = _predict(tiny, *windows, "--threshold", p, "--timeline", out, "--json",
                      tmp_path / "p.json", "--gif", tmp_path / "p.gif")  # fmt: skip
    rows = list(csv.DictReader(out.open()))
    assert [r["label"] for r in rows] == [
        "unknown" if float(r["fused_prob1"]) < p else r["fused_class1"] for r in before
    ]
    assert {"unknown"} < {r["label"] for r in rows}  # some of each
    kept = [{k: v for k, v in r.items() if k != "label"} for r in rows]
    assert kept == before  # the classes and probabilities are all still there
    runs = [r["label"] for i, r in enumerate(rows) if i == 0 or r["label"] != rows[i - 1]["label"]]
    segments = list(csv.DictReader((tmp_path / "p_segments.csv").open()))
    assert [s["class"] for s in segments] == runs

    fused = np.array(first["fused"])
    expected = "unknown" if fused.max() < p else CLASSES[int(fused.argmax())]
    assert result["top1"] == expected and result["threshold"] == p
    assert json.loads((tmp_path / "p.json").read_text())["fused"] == pytest.approx(first["fused"])
    assert (tmp_path / "p.gif").stat().st_size > 0


def test_a_batch_csv_has_a_label_column(tiny, tmp_path, capsys):
    out = tmp_path / "batch.csv"
    argv = [str(tiny["video"].parent), "--spatial", str(tiny["spatial"]), "--device", "cpu"]
    (result,) = predict.main([*argv, "--threshold", "1", "--csv", str(out), "--window", "0"])
    (row,) = csv.DictReader(out.open())
    assert row["label"] == result["top1"] == "unknown"
    assert row["spatial_class1"] in CLASSES and float(row["spatial_prob1"]) > 0
    assert "noise.avi: unknown (" in capsys.readouterr().out
    with pytest.raises(UserError, match="--threshold must be a probability from 0 to 1"):
        predict.main([*argv, "--threshold", "1.5"])


def test_gif_frames_say_unknown_below_the_threshold():
    gif = GifFrames(25.0, 10)
    gif.frames = [(0, None), (8, None)]
    probs = np.array([[0.3, 0.7], [0.6, 0.4]])
    times = [(0.0, 0.2), (0.2, 0.4)]
    texts = gif_labels(gif, times, {"fused": probs}, ["A", "B"], threshold=0.65)
    assert texts == ["  0.0 s  B 70%", "  0.3 s  unknown (A 60%)"]


def test_the_threshold_tool_prints_the_videos_kept_and_their_accuracy(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    files, logits = [], []
    for stream in ("spatial", "motion"):
        logits.append(rng.normal(0, 2, (40, 3)) + 2 * np.eye(3)[labels])
        files.append(tmp_path / f"{stream}.npz")
        save_scores(files[-1], videos=[f"v{i}" for i in range(40)], labels=labels,
                    classes=["a", "b", "c"], scores=logits[-1], stream=stream, split=1, epoch=1)  # fmt: skip
    rows = threshold.main([*map(str, files), "--thresholds", "0", "0.6", "0.9"])
    probs = softmax((logits[0].astype(np.float32) + logits[1].astype(np.float32)) / 2, axis=1)
    for p, n, share, accuracy in rows:
        kept = probs.max(axis=1) >= p
        assert n == kept.sum() and share == pytest.approx(100 * kept.mean())
        right = (probs.argmax(axis=1) == labels)[kept]
        assert accuracy == (pytest.approx(100 * right.mean()) if n else None)
    assert rows[0][1] == 40 and rows[-1][1] < rows[1][1] < 40
    out = capsys.readouterr().out
    assert "40 videos; kept: fused top probability at least P" in out
    (single,) = threshold.main([str(files[0]), "--thresholds", "0"])
    assert single[1] == 40
    (tmp_path / "scores.txt").write_text("not scores")
    with pytest.raises(UserError, match="scores.txt is not a video_scores.npz"):
        threshold.main([str(tmp_path / "scores.txt")])
