"""Worker and solver processes of tools/extract_frames_flow.py: the solver-process path (the
one CUDA devices take, run here on the CPU) writes what the workers write when they solve
themselves; Ctrl-C; progress in frames."""

import io
import json
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from tqdm import tqdm

import utils.progress
from extraction.decode import write_video
from extraction.pool import worker_threads
from extraction.tvl1 import make_flow, to_gray
from extraction.workers import answer
from tools import extract_frames_flow as tool
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _clip(seed: int, frames: int, size=(48, 36)) -> list:
    """A smooth texture drifting by (2, 1) px a frame."""
    width, height = size
    noise = np.random.default_rng(seed).random((height + 2 * frames, width + 2 * frames))
    big = cv2.normalize(
        cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 2), None, 0, 255, cv2.NORM_MINMAX
    ).astype(np.uint8)
    crops = [big[i : i + height, 2 * i : 2 * i + width] for i in range(frames)]
    return [np.repeat(c[..., None], 3, axis=2) for c in crops]


def _videos(folder: Path, counts, size=(48, 36)) -> Path:
    for i, frames in enumerate(counts):
        write_video(folder / f"Class{i % 2}" / f"clip {i}.avi", _clip(i, frames, size))
    return folder


def _files(root: Path) -> dict:
    """Every frame of ``root``'s layout: relative path -> decoded image."""
    return {
        str(p.relative_to(root)): cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        for folder in ("jpegs_256", "tvl1_flow")
        for p in sorted((root / folder).rglob("*.jpg"))
    }


def test_solver_process_writes_what_workers_solving_themselves_write(tmp_path):
    """Two workers feed one solver process (the path of CUDA devices, here on the CPU); the
    files and index equal those of one worker solving its own pairs."""
    videos = _videos(tmp_path / "videos", (5, 4))
    write_video(videos / "Class1" / "small.avi", _clip(7, 3, size=(32, 24)))
    base = ["--videos", str(videos), "--short-side", "0", "--preset", "fast"]
    assert tool.main(base + ["--out", str(tmp_path / "here"), "--workers", "1"]) == 0
    solver = ["--flow-solver", "process", "--flow-batch", "4", "--workers", "2"]
    assert tool.main(base + ["--out", str(tmp_path / "solver")] + solver) == 0
    here, solved = _files(tmp_path / "here"), _files(tmp_path / "solver")
    assert sorted(here) == sorted(solved) and len(here) == (5 + 4 + 3) + 2 * (4 + 3 + 2)
    for name, image in here.items():
        assert np.abs(image.astype(int) - solved[name]).max() <= 1, name
    index = [json.loads((tmp_path / d / "index.json").read_text()) for d in ("here", "solver")]
    assert index[0]["videos"] == index[1]["videos"]


def test_a_solver_batch_of_several_videos_gives_each_its_own_flow():
    """The torch solver's batch mixes requests of several workers and frame sizes; each gets
    the flow of its pairs alone."""
    flows = make_flow("fast", "torch", "cpu", 8)
    grays = [
        np.stack([to_gray(f) for f in _clip(i, n, size)])
        for i, (n, size) in enumerate([(4, (48, 36)), (3, (32, 24)), (3, (48, 36))])
    ]
    replies = {0: queue.Queue(), 1: queue.Queue()}
    answer(flows, [(0, 1, grays[0]), (1, 1, grays[1]), (1, 2, grays[2])], replies)
    got = {(0, 1): replies[0].get_nowait()}  # answers come by frame size: a worker sorts
    got.update({(1, t): (t, f, e) for t, f, e in (replies[1].get_nowait() for _ in "ab")})
    for key, frames in zip([(0, 1), (1, 1), (1, 2)], grays, strict=True):
        ticket, flow, error = got[key]
        alone = flows(frames[:-1], frames[1:])
        assert error is None and flow.shape == alone.shape
        assert np.abs(flow - alone).max() < 0.01  # pixels


def test_progress_counts_frames_toward_the_frames_containers_declare(tmp_path, monkeypatch):
    videos = _videos(tmp_path / "videos", (6, 4, 5))
    bars = []

    def recording(**kwargs):
        bars.append(tqdm(total=kwargs["total"], unit=kwargs["unit"], file=io.StringIO()))
        return bars[-1]

    monkeypatch.setattr(utils.progress, "progress", recording)
    argv = ["--videos", str(videos), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert tool.main(argv + ["--short-side", "0", "--preset", "fast"]) == 0
    (bar,) = bars
    assert (bar.n, bar.total, bar.unit) == (15, 15, "frame")
    assert "videos 3/3, 0 failed" in bar.postfix


def test_first_ctrl_c_stops_within_seconds_cleans_up_and_a_rerun_resumes(tmp_path):
    # Quality TV-L1 at 112x84: about a second a video, so the Ctrl-C finds them still running.
    videos = _videos(tmp_path / "videos", (20, 20, 20, 20), size=(112, 84))
    out = tmp_path / "out"
    cmd = [sys.executable, "tools/extract_frames_flow.py", "--videos", str(videos)]
    cmd += ["--out", str(out), "--workers", "2", "--short-side", "0"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    # As from a terminal: Ctrl-C not ignored (pytest-xdist's workers ignore SIGINT, and a child
    # inherits that), the tool alone in its process group.
    as_terminal = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    run = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, preexec_fn=as_terminal, **pipes)
    tmp = out / ".extract" / "tmp"
    deadline = time.monotonic() + 60
    while not list(tmp.glob("*/*/rgb/*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.02)  # until a worker is writing a video
    assert run.poll() is None, run.communicate()
    os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the workers too
    sent = time.monotonic()
    stdout, stderr = run.communicate(timeout=30)
    took = time.monotonic() - sent
    assert took < 10, took
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted:" in stdout and "run the same command again to continue" in stdout
    assert not list(tmp.iterdir())  # no half-written video left
    done = (
        {p.name for p in (out / "jpegs_256").iterdir()} if (out / "jpegs_256").exists() else set()
    )
    assert len(done) < 4
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} already done, {4 - len(done)} to extract" in rerun.stdout
    assert len(json.loads((out / "index.json").read_text())["videos"]) == 4


def test_devices_get_a_solver_process_each_and_their_default_batch(tmp_path):
    base = ["--videos", str(tmp_path), "--out", str(tmp_path), "--workers", "6"]
    args = tool.parse_args(base + ["--method", "torch", "--device", "cuda:0,cuda:1"])
    plan = tool._plan(args, todo=100)
    assert (plan.devices, plan.batch, plan.workers) == (["cuda:0", "cuda:1"], 32, 6)
    args = tool.parse_args(base + ["--method", "torch"])
    plan = tool._plan(args, todo=100)
    assert (plan.devices, plan.device, plan.batch) == ([], "cpu", 1)  # workers solve
    args = tool.parse_args(base + ["--flow-solver", "process", "--flow-batch", "4"])
    assert tool._plan(args, todo=3).devices == ["cpu"] and tool._plan(args, 3).workers == 3
    for device in ("gpu", "cpu,cuda:0"):
        with pytest.raises(UserError, match="--device"):
            tool.parse_args(base + ["--method", "torch", "--device", device])


@pytest.mark.parametrize(
    ("workers", "cores", "threads"), [(1, 8, 8), (2, 2, 1), (3, 8, 2), (16, 4, 1)]
)
def test_workers_share_the_cores(workers, cores, threads):
    assert worker_threads(workers, "opencv", cores) == threads
    assert worker_threads(workers, "torch", cores) == 1
