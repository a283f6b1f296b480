"""Faults in prediction and fusion: a kill at each named point (utils.faults) then a rerun gives
what an uninterrupted run gives, a full disk is one line that keeps what is done, and a second
run into the same output is refused, naming the first."""

import json
import multiprocessing
import os
import signal

import numpy as np
import pytest
import torch

import fusion
import utils.reports  # noqa: F401  (imported here, not in every forked run: matplotlib is slow)
from extraction.decode import write_video
from network.recognizer import build_recognizer
from tests.helpers import SMALL_ARCH, save_stream_checkpoint, single_thread
from tools import predict
from utils import faults
from utils.errors import UserError
from utils.locks import acquire, release
from utils.scores import load_npz, save_scores

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
CLASSES = ["Jump", "Run", "Swim"]
EXTRACTION = {"short_side": 32, "bound": 15.0, "preset": "fast", "max_frames": None}
TIMINGS = ("work_seconds", "work_cpu_seconds")  # the only fields that differ between runs


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Three tiny videos, an untrained spatial checkpoint and an uninterrupted run's files."""
    base = tmp_path_factory.mktemp("faults_predict")
    torch.manual_seed(0)
    config = dict(arch=SMALL_ARCH, in_channels=3, consensus="avg", num_classes=len(CLASSES),
                  dropout=0.5, partial_bn=False)  # fmt: skip
    model = build_recognizer(**config)
    checkpoint = base / "spatial.pth.tar"
    save_stream_checkpoint(checkpoint, "spatial", model, CLASSES, EXTRACTION, crop_size=32,
                           test_snippets=3)  # fmt: skip
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(
            base / "videos" / f"clip{i}.avi", rng.integers(0, 256, (6, 32, 40, 3), np.uint8)
        )
    argv = [str(base / "videos"), "--spatial", str(checkpoint), "--device", "cpu"]
    expected = base / "expected"
    predict.main([*argv, "--csv", str(expected / "out.csv"), "--json", str(expected / "out.json")])
    return {"argv": argv, "expected": expected}


def _in_child(fault: str, main, argv: list[str]) -> int:
    """``main(argv)`` in a forked process with TWO_STREAM_FAULT=fault: its exit code."""

    def run():
        os.environ[faults.ENV] = fault
        faults._reached.clear()
        main(argv)

    child = multiprocessing.get_context("fork").Process(target=run)
    child.start()
    child.join(120)
    return child.exitcode


def _outputs(folder):
    return ["--csv", str(folder / "out.csv"), "--json", str(folder / "out.json")]


def _records(path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in json.loads(path.read_text())]


def _same_as_uninterrupted(batch, folder) -> None:
    expected = batch["expected"]
    assert (folder / "out.csv").read_text() == (expected / "out.csv").read_text()
    assert _records(folder / "out.json") == _records(expected / "out.json")
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("point", ["predict.csv_row", "write.out.json"])
def test_predict_killed_at_a_point_then_rerun_gives_each_row_once(batch, tmp_path, point):
    """Killed in the second video's CSV row (half of it written), or between its CSV row and
    the JSON's rewrite: the rerun drops what is half done and scores that video again, once."""
    argv = [*batch["argv"], *_outputs(tmp_path)]
    assert _in_child(f"{point}:kill:2", predict.main, argv) == -signal.SIGKILL
    rows = (tmp_path / "out.csv").read_text()
    if point == "predict.csv_row":
        assert not rows.endswith("\n") and rows.count("\n") == 2  # header, a row, half a row
    else:
        assert rows.count("\n") == 3 and len(json.loads((tmp_path / "out.json").read_text())) == 1
        assert list(tmp_path.glob(".out.json.*.tmp"))  # the JSON's temp file, left by the kill
    predict.main(argv)
    _same_as_uninterrupted(batch, tmp_path)


@pytest.mark.parametrize("point", ["predict.csv_row", "write.out.json"])
def test_predict_on_a_full_disk_is_one_line_and_keeps_the_rows_done(
    batch, tmp_path, monkeypatch, point
):
    argv = [*batch["argv"], *_outputs(tmp_path)]
    monkeypatch.setenv(faults.ENV, f"{point}:enospc:2")
    monkeypatch.setattr(faults, "_reached", {})
    with pytest.raises(UserError) as refused:
        predict.main(argv)
    csv_full = point == "predict.csv_row"
    written = (
        tmp_path / "out.csv"
        if csv_full
        else f"{tmp_path / 'out.json'} (the previous file is intact)"
    )
    assert str(refused.value) == (
        f"the disk is full: could not write {written}; the 1 video done before is kept: free "
        "some space and run the same command again"
    )
    rows = (tmp_path / "out.csv").read_text()
    assert rows.endswith("\n") and rows.count("\n") == (2 if csv_full else 3)
    monkeypatch.delenv(faults.ENV)
    predict.main(argv)
    _same_as_uninterrupted(batch, tmp_path)


def test_a_second_predict_into_the_same_file_is_refused_naming_the_first(batch, tmp_path):
    csv_path = tmp_path / "out.csv"
    held = acquire(tmp_path / ".out.csv.lock", "the test's run", "")  # as a running predict does
    try:
        with pytest.raises(UserError, match=(
            rf"^{csv_path} is being written by process {os.getpid()} on \S+ since \S+: .*; "
            "wait for it to end, or give another --csv$"
        )):  # fmt: skip
            predict.main([*batch["argv"], "--csv", str(csv_path)])
        assert not csv_path.exists()
        # Another file in the same folder is another output: it is written.
        predict.main([*batch["argv"], "--csv", str(tmp_path / "other.csv")])
        assert (tmp_path / "other.csv").read_text() == (batch["expected"] / "out.csv").read_text()
    finally:
        release(held)


LABELS = [0, 0, 1, 1, 2, 2]
SCORES = {
    "spatial": [[3, 1, 0], [1, 2, 0], [0, 4, 1], [0, 3, 1], [0, 2, 1], [0, 0, 5]],
    "motion": [[4, 0, 0], [5, 1, 0], [2, 1, 0], [0, 3, 0], [0, 0, 6], [0, 1, 2]],
    "old": [[0, 4, 0], [5, 1, 0], [2, 1, 0], [3, 0, 0], [0, 0, 6], [0, 1, 2]],
}
REPORTS = ["fused_per_class_accuracy.csv", "fused_misclassified.csv"]


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    """Score files, and the files of an uninterrupted fusion of spatial and motion."""
    base = tmp_path_factory.mktemp("faults_fusion")
    videos = [f"v_{c}_g0{i}_c01" for c in "ABC" for i in (1, 2)]
    for name, rows in SCORES.items():
        save_scores(base / f"{name}.npz", videos=videos, labels=LABELS, classes=list("ABC"),
                    scores=np.array(rows, np.float32), stream=name.replace("old", "motion"),
                    split=1, epoch=1)  # fmt: skip
    fusion.main(_fusion_argv(base, base / "expected"))
    return base


def _fusion_argv(base, out, motion="motion") -> list[str]:
    argv = ["--spatial", str(base / "spatial.npz"), "--motion", f"{base / motion}.npz"]
    return [*argv, "--out", str(out / "fused.npz"), "--json", str(out / "fused.json")]


def _fused_files(folder) -> dict:
    files = {name: (folder / name).read_text() for name in ["fused.json", *REPORTS]
             if (folder / name).exists()}  # fmt: skip
    if (folder / "fused.npz").exists():
        files["fused.npz"] = load_npz(folder / "fused.npz").scores.tolist()
    return files


@pytest.mark.parametrize("point", ["fusion.reports", "write.fused.json"])
def test_fusion_killed_at_a_point_leaves_no_mix_of_two_runs(scores, tmp_path, capsys, point):
    """Over an earlier fusion's files: a kill while the reports or the JSON are written leaves
    files of one run only (the JSON, written last, absent), and the rerun's are an
    uninterrupted run's, with no temp file or folder left."""
    fusion.main(_fusion_argv(scores, tmp_path, motion="old"))
    old, new = _fused_files(tmp_path), _fused_files(scores / "expected")
    assert all(old[name] != new[name] for name in new)
    assert _in_child(f"{point}:kill", fusion.main, _fusion_argv(scores, tmp_path)) == -9
    left = _fused_files(tmp_path)
    assert "fused.json" not in left
    assert "fused.npz" in left and all(left[name] == new[name] for name in left)
    target = "fused.json" if "json" in point else "fused.npz"  # its temp file, or folder
    assert [p for p in tmp_path.iterdir() if p.name.startswith(f".{target}.") and ".tmp" in p.name]
    fusion.main(_fusion_argv(scores, tmp_path))
    assert _fused_files(tmp_path) == new
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize(
    "point, written", [("fusion.reports", "the reports of {out}/fused.npz"),
                       ("write.fused.json", "{out}/fused.json")]
)  # fmt: skip
def test_fusion_on_a_full_disk_is_one_line(scores, tmp_path, monkeypatch, point, written):
    monkeypatch.setenv(faults.ENV, f"{point}:enospc")
    monkeypatch.setattr(faults, "_reached", {})
    with pytest.raises(UserError) as refused:
        fusion.main(_fusion_argv(scores, tmp_path))
    assert str(refused.value) == (
        f"the disk is full: could not write {written.format(out=tmp_path)}; the score files "
        "fused are untouched: free some space and run the same command again"
    )
    assert not (tmp_path / "fused.json").exists()


def test_a_second_fusion_into_the_same_file_is_refused_naming_the_first(scores, tmp_path):
    held = acquire(tmp_path / ".fused.json.lock", "the test's run", "")
    try:
        with pytest.raises(UserError, match=(
            rf"^{tmp_path}/fused.json is being written by process {os.getpid()} on .*; wait "
            "for it to end, or give another --json$"
        )):  # fmt: skip
            fusion.main(_fusion_argv(scores, tmp_path))
        assert not (tmp_path / "fused.npz").exists()
    finally:
        release(held)
