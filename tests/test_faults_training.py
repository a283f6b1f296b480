"""Training and its final test under faults: killed (SIGKILL, SIGTERM, Ctrl-C) at named points
(utils.faults), a full disk, a run copied to another folder, another --workers on resume, two
runs into one folder. After each, the command the toolkit prints continues the run to exactly
the weights, scores and records of an uninterrupted run.

Runs are forked from this process (torch is imported once): a child that kills itself takes
nothing of the test with it.
"""

import os
import shutil
import signal
import sys
import time

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.streams import SPATIAL
from tests.helpers import SMALL_ARCH, single_thread
from utils.errors import UserError, run_cli
from utils.faults import ENV
from utils.locks import LOCK_NAME, acquire, release

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)

# 6 training videos (one group of 3 held out for validation, so model_best is kept), 2 epochs of
# 2 batches, one optimizer step each; 6 test videos.
FAST = [
    "--arch", SMALL_ARCH, "--pretrained", "none", "--crop-size", "32", "--num-segments", "2",
    "--test-snippets", "2", "--batch-size", "3", "--accum-steps", "2", "--lr", "0.01",
    "--lr-steps", "1", "--seed", "3", "--val-groups", "1", "--epochs", "2",
]  # fmt: skip
OUTPUTS = ("checkpoint.pth.tar", "model_best.pth.tar", "video_scores.npz")


def _new_run(frame_root, record, workers=0) -> list[str]:
    return ["--data-root", str(frame_root), "--record-dir", str(record), "--workers", str(workers)]


def forked(argv, fault: str | None = None, err_file=None) -> tuple[int, str]:
    """spatial_cnn.py ``argv`` in a forked child with TWO_STREAM_FAULT=``fault``: its exit code
    (negative: the signal that ended it) and what it printed on stderr."""
    err_file = err_file or f"/tmp/fault-{os.getpid()}.err"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            sys.stderr = open(err_file, "w", buffering=1)  # noqa: SIM115 (closed by _exit)
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            os.environ.pop(ENV, None)
            if fault:
                os.environ[ENV] = fault
            run_cli(lambda a: main(SPATIAL, a), argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException as err:  # a bug: say it in the test's failure
            print(f"child raised {err!r}", file=sys.stderr)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 300
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:  # hung: fail, never block the suite
        os.kill(pid, signal.SIGKILL)
        done = os.waitpid(pid, 0)
    status = done[1]
    with open(err_file) as f:
        return os.waitstatus_to_exitcode(status), f.read()


def _state(record) -> dict:
    """What a finished run left: weights, best model, test scores and the train/val rows."""
    ckpt = torch.load(record / "checkpoint.pth.tar", weights_only=True)
    best = torch.load(record / "model_best.pth.tar", weights_only=True)
    with np.load(record / "video_scores.npz") as f:
        scores = f["scores"].copy()
    rows = {
        phase: [r.rsplit(",", 1)[0] for r in (record / f"{phase}.csv").read_text().splitlines()]
        for phase in ("train", "val", "test")
    }
    return {
        "model": ckpt["model"],
        "best": (best["epoch"], best["model"]),
        "scores": scores,
        **rows,
    }


def assert_same_run(record, reference) -> None:
    got, want = _state(record), _state(reference)
    for key in want["model"]:
        assert torch.equal(got["model"][key], want["model"][key]), key
    assert got["best"][0] == want["best"][0]
    for key in want["best"][1]:
        assert torch.equal(got["best"][1][key], want["best"][1][key]), key
    np.testing.assert_array_equal(got["scores"], want["scores"])
    assert [got[p] for p in ("train", "val", "test")] == [want[p] for p in ("train", "val", "test")]
    assert not list(record.glob(".*.tmp"))  # what killed runs left is gone
    for report in ("per_class_accuracy.csv", "confusion_matrix.png", "misclassified.csv"):
        assert (record / report).is_file()


@pytest.fixture(scope="module")
def reference(frame_root, tmp_path_factory):
    """The uninterrupted run."""
    record = tmp_path_factory.mktemp("reference")
    main(SPATIAL, _new_run(frame_root, record) + FAST)
    return record


# (fault, exit code, what stderr says): every stage of training and its final test, each of
# the three signals, and a full disk. train.step: 2 per epoch; evaluate.video: 3 validation
# videos per epoch, then the 6 test videos.
STOPS = [
    ("train.step:kill:3", -9, ""),
    ("write.model_best.pth.tar:kill:1", -9, ""),
    ("write.checkpoint.pth.tar:term:2", 130, "interrupted: SIGTERM; the checkpoint of epoch 1"),
    ("evaluate.video:int:9", 130, "interrupted: Ctrl-C; the checkpoint of epoch 2 is kept"),
    ("write.misclassified.csv:kill:1", -9, ""),  # the final test's reports, half written
    ("write.checkpoint.pth.tar:enospc:2", 2, "error: the disk is full: could not write"),
]


@pytest.mark.parametrize("fault, code, says", STOPS, ids=[s[0] for s in STOPS])
def test_a_stopped_run_continues_to_the_uninterrupted_result(
    fault, code, says, reference, frame_root, tmp_path
):
    status, err = forked(_new_run(frame_root, tmp_path) + FAST, fault, tmp_path / "err")
    assert status == code, err
    assert says in err
    ckpt = tmp_path / "checkpoint.pth.tar"
    if code != -9:  # one line naming what was kept and the command that continues
        assert err.strip().splitlines()[-1].startswith(("interrupted: ", "error: "))
        assert f"continue with --resume {ckpt}" in err
    again = ["--resume", str(ckpt), "--workers", "0"]
    if not ckpt.exists():  # stopped before its first checkpoint: the same command again
        again = _new_run(frame_root, tmp_path) + FAST
    status, err = forked(again, err_file=tmp_path / "err")
    assert status == 0, err
    assert_same_run(tmp_path, reference)


def test_a_copied_run_resumed_with_other_workers_continues_in_the_copy_bit_for_bit(
    reference, frame_root, tmp_path
):
    first, copy = tmp_path / "first", tmp_path / "copy"
    status, err = forked(_new_run(frame_root, first, workers=2) + FAST, "train.checkpoint_saved")
    assert status == -9, err
    shutil.copytree(first, copy)
    # A checkpoint that names another record dir (edited, or from another machine) decides
    # nothing about where the run writes.
    ckpt = torch.load(copy / "checkpoint.pth.tar", weights_only=True)
    ckpt["args"]["record_dir"] = str(tmp_path / "elsewhere")
    torch.save(ckpt, copy / "checkpoint.pth.tar")
    before = {p: p.read_bytes() for p in first.iterdir()}

    main(SPATIAL, ["--resume", str(copy / "checkpoint.pth.tar"), "--workers", "0"])
    assert_same_run(copy, reference)  # --workers 2, then 0: the uninterrupted run's result
    assert {p: p.read_bytes() for p in first.iterdir()} == before
    assert not (tmp_path / "elsewhere").exists()

    main(SPATIAL, ["--evaluate", "--resume", str(copy / "model_best.pth.tar"), "--workers", "0"])
    assert (copy / "eval_model_best_e1_n2_scores.npz").is_file()  # beside the checkpoint
    assert not (tmp_path / "elsewhere").exists()


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_running_one(
    reference, frame_root, tmp_path, capsys
):
    record = tmp_path / "record"
    fd = acquire(record / LOCK_NAME, "test", "test")
    try:
        with pytest.raises(UserError, match=rf"{record} is being written by process {os.getpid()}"):
            main(SPATIAL, _new_run(frame_root, record) + FAST)
        evaluate = ["--evaluate", "--resume", str(reference / "checkpoint.pth.tar")]
        with pytest.raises(UserError, match="--scores-out"):
            main(SPATIAL, [*evaluate, "--scores-out", str(record / "scores.npz")])
    finally:
        release(fd)
    assert sorted(p.name for p in record.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing
