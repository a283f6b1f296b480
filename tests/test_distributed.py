"""torchrun training and evaluation on the CPU (gloo): N processes must give what one gives.

The processes are forked by the test (torch.multiprocessing, start method fork) with torchrun's
environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so they share the test's
imports instead of paying seconds of start-up each; every wait is bounded. Training runs the
model of tests/frozen_bn_main.py (all BN layers frozen, no dropout), so a batch's split between
processes cannot change the forward pass.
"""

import json
import os
import shutil
import signal
import sys
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dataloader.checks import find_problems
from dataloader.datasets import FrameDataset
from engine.cli import main
from engine.config import make_options
from engine.data import load_run_split
from engine.streams import SPATIAL
from tests import frozen_bn_main
from tests.helpers import free_port, single_thread, write_frame_dataset
from utils.errors import run_cli

FAST = [
    "--arch", "resnet18", "--pretrained", "none", "--crop-size", "32", "--num-segments", "2",
    "--test-snippets", "3", "--workers", "0", "--lr", "0.01", "--lr-steps", "1", "--seed", "3",
    "--dropout", "0", "--dist-timeout", "60", "--partial-bn",  # frozen BN: see frozen_bn_main
]  # fmt: skip
LIMIT = 120  # seconds any group of processes may take

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def _env(rank: int, world: int, port: int) -> dict:
    return dict(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


def _process(env: dict, argv: list, stderr_path) -> None:
    """One process of the run, as torchrun would start it (quiet, errors to ``stderr_path``)."""
    os.environ.update(env)
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 2)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    frozen_bn_main.freeze_all_bn()
    run_cli(lambda a: main(SPATIAL, a), argv)


def _start(argv, tmp_path, world=2, ranks=None, port=None):
    port = port or free_port()
    ctx = mp.get_context("fork")
    procs = []
    for rank in range(world) if ranks is None else ranks:
        err = tmp_path / f"stderr{rank}.txt"
        procs.append(ctx.Process(target=_process, args=(_env(rank, world, port), argv, err)))
        procs[-1].start()
    return procs


def _wait(procs, limit=LIMIT) -> list[int]:
    deadline = time.monotonic() + limit
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert time.monotonic() < deadline, "the processes did not finish in time"
    return [p.exitcode for p in procs]


def _run(tmp_path, argv, world=2) -> None:
    codes = _wait(_start(argv, tmp_path, world))
    errors = "".join(f.read_text() for f in sorted(tmp_path.glob("stderr*.txt")))
    assert codes == [0] * world, errors[-2000:]


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 training videos and an odd number (3) of test videos."""
    return write_frame_dataset(
        tmp_path_factory.mktemp("data"), num_classes=3, train_per_class=4, test_per_class=1
    )


def _args(data, record, *extra) -> list:
    return ["--data-root", str(data), "--record-dir", str(record), *FAST, *extra]


@pytest.fixture(scope="module")
def two(data, tmp_path_factory):
    """An uninterrupted 2-epoch run of 2 processes x batch 3."""
    record = tmp_path_factory.mktemp("two")
    _run(record, _args(data, record, "--epochs", "2", "--batch-size", "3"))
    return record


def test_two_processes_train_as_one_with_the_double_batch(two, data, tmp_path):
    _run(tmp_path, _args(data, tmp_path, "--epochs", "2", "--batch-size", "6"), world=1)
    one, both = _weights(tmp_path / "checkpoint.pth.tar"), _weights(two / "checkpoint.pth.tar")
    assert one.keys() == both.keys()
    assert not any(key.startswith("module.") for key in both)  # the plain model
    for key in one:
        torch.testing.assert_close(both[key], one[key], rtol=1e-5, atol=1e-6, msg=key)
    moved = (one["head.fc.weight"] - _initial_fc(data, tmp_path)).abs().max()
    assert moved > 1e-3  # trained: the equality is not that of two untouched models
    a = (tmp_path / "train.csv").read_text().splitlines()[1:]
    b = (two / "train.csv").read_text().splitlines()[1:]
    for row_a, row_b in zip(a, b, strict=True):  # the same global loss and accuracy
        np.testing.assert_allclose(
            [float(x) for x in row_a.split(",")[:5]], [float(x) for x in row_b.split(",")[:5]],
            rtol=1e-4,
        )  # fmt: skip
    # Accumulation follows processes x batch: 2 x 3 and 1 x 6 both accumulate 21 (128 / 6).
    for record in (two, tmp_path):
        assert json.loads((record / "args.json").read_text())["accum_steps_resolved"] == 21
    assert json.loads((two / "args.json").read_text())["batch_size"] == 3
    saved = torch.load(two / "checkpoint.pth.tar", weights_only=True)["args"]
    assert saved["accum_steps"] is None  # not given: a resume re-derives it for its world


def _initial_fc(data, tmp_path):
    """The classifier weights both runs started from (rank 0's seed)."""
    from engine.run import seed_everything
    from network.recognizer import build_recognizer

    seed_everything(3)
    model = build_recognizer("resnet18", num_classes=3, dropout=0.0, partial_bn=True)
    return model.head.fc.weight.detach()


def test_two_process_checkpoint_and_scores_match_one_plain_process(two, tmp_path):
    ckpt = torch.load(two / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["rng_ranks"]) == 2
    record = tmp_path / "eval"
    main(SPATIAL, ["--evaluate", "--resume", str(two / "checkpoint.pth.tar")]
         + ["--scores-out", str(record / "video_scores.npz"), "--workers", "0"])  # fmt: skip
    with np.load(record / "video_scores.npz") as one, np.load(two / "video_scores.npz") as both:
        assert len(both["videos"]) == 3  # odd: rank 0 scored 2 videos, rank 1 one
        assert list(one["videos"]) == list(both["videos"])
        assert list(one["labels"]) == list(both["labels"])
        np.testing.assert_allclose(both["scores"], one["scores"], rtol=1e-5, atol=1e-5)
    from engine.inference import load_stream  # what tools/predict.py loads

    assert load_stream(two / "checkpoint.pth.tar", "spatial", torch.device("cpu")).epoch == 2


def test_killed_two_process_run_resumes_to_the_same_weights(two, data, tmp_path):
    record = tmp_path / "killed"
    procs = _start(_args(data, record, "--epochs", "2", "--batch-size", "3"), tmp_path)
    ckpt = record / "checkpoint.pth.tar"
    deadline = time.monotonic() + LIMIT
    while not ckpt.exists() and all(p.is_alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.02)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
    assert _wait(procs) == [-signal.SIGKILL] * 2  # killed, not finished
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    _run(tmp_path, ["--resume", str(ckpt), "--workers", "0", "--dist-timeout", "60"])
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    resumed, unbroken = _weights(ckpt), _weights(two / "checkpoint.pth.tar")
    for key in unbroken:
        assert torch.equal(resumed[key], unbroken[key]), key


def test_a_process_that_cannot_join_stops_with_one_line(data, tmp_path):
    """Rank 1 finds nobody at the address; rank 0 alone waits for a second process that never
    comes (as with a wrong --nproc-per-node): both stop after --dist-timeout, naming why."""
    argv = _args(data, tmp_path / "r", "--dist-timeout", "1")
    lonely = _start(argv, tmp_path, world=2, ranks=[0], port=free_port())
    nobody = _start(argv, tmp_path, world=2, ranks=[1], port=free_port())
    assert _wait(lonely + nobody, limit=60) == [2, 2]
    for rank in (0, 1):
        last = (tmp_path / f"stderr{rank}.txt").read_text().strip().splitlines()[-1]
        assert last.startswith(f"error: process rank {rank} of 2 could not join the run at "
                               "127.0.0.1:"), last  # fmt: skip
        assert "--dist-timeout" in last


def test_two_processes_share_the_data_scan_and_find_what_one_finds(data, tmp_path):
    """Each process scans half the videos (rank r: r, r + 2, ...); together, and so in every
    process after the gather, they find what one process scanning all finds."""
    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    for video in ("v_Class0_g02_c01", "v_Class2_g05_c01"):  # a training and a test video
        (broken / "jpegs_256" / video / "frame000003.jpg").unlink()
    options = make_options(SPATIAL, data_root=str(broken), skip_bad_videos=True, workers=0)
    split = load_run_split(options)
    found = {}
    for videos in (split.train, split.test):
        dataset = FrameDataset(broken, videos, False, SPATIAL.sample_builder(options), strict=False)
        halves = [find_problems(dataset, shard=(rank, 2)) for rank in (0, 1)]
        assert not halves[0].keys() & halves[1].keys()
        assert {**halves[0], **halves[1]} == find_problems(dataset)
        found.update(halves[0] | halves[1])
    assert sorted(found) == ["v_Class0_g02_c01", "v_Class2_g05_c01"]
    codes = _wait(_start(["--data-root", str(broken), "--check-data", *FAST], tmp_path))
    assert codes == [2, 2]
    for rank in (0, 1):
        assert "error: 2 of 15 videos have problems" in (tmp_path / f"stderr{rank}.txt").read_text()
