"""Faults of tools/extract_frames_flow.py: a kill at each named stage (utils/faults.py), then a
rerun, gives what an uninterrupted run gives, byte for byte; the parent killed with workers
running takes them along; a full disk is one line; a second run, or one of the same shard, is
refused while the first holds the lock; a video whose name is no safe folder name is refused
and harms nothing.

One tiny set of videos and one uninterrupted extraction serve the whole file.
"""

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

import utils.faults
from extraction.decode import write_video
from extraction.locks import RootLocks
from extraction.root import STATE_DIR, check_video_name, extract_video
from extraction.settings import ExtractionSettings
from tools import extract_frames_flow as tool
from utils import locks
from utils.errors import UserError
from utils.faults import ENV

ROOT = Path(__file__).resolve().parents[1]
FRAMES, WIDTH, HEIGHT = 8, 64, 48
ARGS = ["--short-side", "0", "--preset", "fast", "--test-fraction", "0.5"]
TAG = "TWO_STREAM_FAULT_TEST"  # in the environment of a run's processes, to find them


def _clip(seed: int) -> list:
    """A smooth texture drifting by (2, 1) px a frame."""
    noise = np.random.default_rng(seed).random((HEIGHT + FRAMES, WIDTH + 2 * FRAMES))
    big = cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 2)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return [
        np.repeat(big[i : i + HEIGHT, 2 * i : 2 * i + WIDTH, None], 3, 2) for i in range(FRAMES)
    ]


def _snapshot(out: Path) -> dict:
    """Every file of ``out`` outside the tool's state (layout, index, split, failure lists,
    temporary files left beside them): relative path -> bytes."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and STATE_DIR not in p.relative_to(out).parts
    }


def _main(videos: Path, out: Path, *extra: str) -> int:
    return tool.main(["--videos", str(videos), "--out", str(out), "--workers", "1", *ARGS, *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(videos, the output of one uninterrupted run, its snapshot): 4 videos of 8 frames."""
    base = tmp_path_factory.mktemp("faults")
    videos = base / "videos"
    for i in range(4):
        write_video(videos / f"Class{i % 2}" / f"clip{i}.avi", _clip(i))
    out = base / "reference"
    assert _main(videos, out) == 0
    snapshot = _snapshot(out)
    assert sum(name.endswith(".jpg") for name in snapshot) == 4 * (FRAMES + 2 * (FRAMES - 1))
    assert {"index.json", "splits/classes.txt", "splits/train.txt"} <= set(snapshot)
    return videos, out, snapshot


def _leftovers(out: Path) -> list[Path]:
    """Temporary folders and files of runs: none once a run over ``out`` has ended."""
    tmp = out / STATE_DIR / "tmp"
    return (list(tmp.iterdir()) if tmp.exists() else []) + list(out.rglob("*.tmp"))


def _assert_like_reference(out: Path, reference) -> None:
    """``out`` holds what the uninterrupted run wrote, and nothing of a killed run is left."""
    assert _snapshot(out) == reference[2]
    assert not _leftovers(out)


def _cli(videos: Path, out: Path, fault: str, workers: int, tag: str = "") -> tuple:
    """Run the tool with ``fault``; (exit status, stdout, stderr) as soon as its process ends
    (the output goes to files: a pipe would wait for every process that holds it)."""
    cmd = [sys.executable, "tools/extract_frames_flow.py", "--videos", str(videos)]
    cmd += ["--out", str(out), "--workers", str(workers), *ARGS]
    env = {**os.environ, ENV: fault, TAG: tag}
    logs = out.parent / f"{out.name}.log"
    with (
        open(logs.with_suffix(".out"), "w+") as stdout,
        open(logs.with_suffix(".err"), "w+") as stderr,
    ):
        status = subprocess.run(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, timeout=120)
        return status.returncode, *(f.seek(0) or f.read() for f in (stdout, stderr))


# (fault, workers, exit status): one signal per stage; SIGKILL (-9) unless the stage says.
KILLS = [
    ("extract.frame:kill:11", 1, -9),  # the second video's third frame
    ("extract.flow:term:9", 1, -15),  # the first video's fifth flow pair
    ("extract.move:kill:2", 1, -9),  # RGB and x-flow of the first video in place, y-flow not
    ("extract.marker:kill:2", 1, -9),  # the second video in place, its done marker not
    ("write.index.json:kill", 1, -9),  # every video done, index.json half written
    ("extract.frame:kill:5", 2, 1),  # both workers killed mid-video; the parent says so
]


@pytest.mark.parametrize(("fault", "workers", "status"), KILLS, ids=[k[0] for k in KILLS])
def test_a_rerun_after_a_kill_gives_what_an_uninterrupted_run_gives(
    reference, tmp_path, fault, workers, status
):
    videos, out = reference[0], tmp_path / "out"
    returncode, stdout, stderr = _cli(videos, out, fault, workers)
    assert returncode == status, (stdout, stderr)
    assert "Traceback" not in stderr, stderr
    assert _snapshot(out) != reference[2]  # the fault struck before the end
    if status < 0:  # killed: its temporary folder or file is left for the next run to clear
        assert _leftovers(out), list(out.rglob("*"))
    assert _main(videos, out) == 0
    _assert_like_reference(out, reference)


def _alive_with(tag: str) -> list[int]:
    """Processes (not zombies) whose environment holds ``TAG=tag``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"{TAG}={tag}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(proc.name))
    return found


def _sizes(out: Path) -> dict:
    return {str(p): p.stat().st_size for p in out.rglob("*") if p.is_file()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_parent_ends_its_workers_and_a_rerun_completes(reference, tmp_path):
    videos, out = reference[0], tmp_path / "out"
    tag = uuid.uuid4().hex
    returncode, stdout, stderr = _cli(videos, out, "extract.done:kill:1", 2, tag)
    files = _sizes(out)  # as the parent ended (the other worker was busy then)
    assert returncode == -9, (stdout, stderr)
    deadline = time.monotonic() + 2
    while _alive_with(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive_with(tag)  # workers and the resource tracker alike
    time.sleep(0.3)
    assert _sizes(out) == files  # nothing was written after the parent's end
    assert len(list((out / STATE_DIR / "done").iterdir())) < 4
    assert _main(videos, out) == 0
    _assert_like_reference(out, reference)


def _assert_disk_full_line(message: str, kept: int) -> None:
    assert "\n" not in message
    assert message.startswith("the disk is full: could not write ")
    assert "/rgb/frame000004.jpg of Class" in message
    assert f"the videos finished so far ({kept}) are kept in" in message
    assert "free some space and run the same command again to continue" in message


def test_a_full_disk_is_one_line_keeps_finished_videos_and_a_rerun_completes(
    reference, tmp_path, monkeypatch
):
    videos, out = reference[0], tmp_path / "out"
    monkeypatch.setenv(ENV, "extract.frame:enospc:12")  # the second video's fourth frame
    monkeypatch.setattr(utils.faults, "_reached", {})
    with pytest.raises(UserError) as refused:
        _main(videos, out)
    _assert_disk_full_line(str(refused.value), kept=1)
    assert len(list((out / STATE_DIR / "done").iterdir())) == 1
    assert json.loads((out / "index.json").read_text())["videos"].keys() == {
        p.stem for p in (out / STATE_DIR / "done").iterdir()
    }
    monkeypatch.delenv(ENV)
    assert _main(videos, out) == 0
    _assert_like_reference(out, reference)


def test_a_full_disk_in_a_worker_stops_the_run_with_one_line(reference, tmp_path):
    videos, out = reference[0], tmp_path / "out"
    returncode, stdout, stderr = _cli(videos, out, "extract.frame:enospc:4", 2)
    assert returncode == 2, (stdout, stderr)
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    _assert_disk_full_line(stderr.strip().removeprefix("error: "), kept=0)
    assert _main(videos, out) == 0
    _assert_like_reference(out, reference)


def test_shared_locks_exclude_an_exclusive_one_which_can_wait_for_them(tmp_path):
    """The shards' run.lock: shared holders side by side, a run of the whole root refused
    (Busy) or, as the state lock, waiting until the last lets go; its name cleared after."""
    path = tmp_path / "run.lock"
    first = locks.acquire(path, "the root", "wait", shared=True)
    second = locks.acquire(path, "the root", "wait", shared=True)
    try:
        with pytest.raises(locks.Busy, match="^the root is being written by another process; wait"):
            locks.acquire(path, "the root", "wait")
    finally:
        locks.release(second)
    threading.Timer(0.3, locks.release, [first]).start()
    start = time.monotonic()
    fd = locks.acquire(path, "the root", "wait", wait=True)
    try:
        assert time.monotonic() - start >= 0.25
        with pytest.raises(locks.Busy, match=f"by process {os.getpid()} on "):
            locks.acquire(path, "the root", "wait", shared=True)
    finally:
        locks.release(fd)
    assert path.read_text() == ""


def _started_then_wait(started, go) -> None:
    started.set()
    go.wait(30)


def test_a_forked_child_keeps_no_copy_of_its_parents_locks(tmp_path):
    fd = locks.acquire(tmp_path / "run.lock", "the root", "")
    context = multiprocessing.get_context("fork")
    started, go = context.Event(), context.Event()
    child = context.Process(target=_started_then_wait, args=(started, go))
    child.start()
    try:
        assert started.wait(30)
        locks.release(fd)  # a copy in the child would keep the lock
        locks.release(locks.acquire(tmp_path / "run.lock", "the root", ""))
    finally:
        go.set()
        child.join(30)


def test_a_second_run_is_refused_while_the_first_holds_the_lock(reference, tmp_path):
    videos, out = reference[0], tmp_path / "out"
    shutil.copytree(reference[1], out)
    state = out / STATE_DIR
    fd = locks.acquire(state / "run.lock", "test", "test")
    try:
        with pytest.raises(UserError) as refused:
            _main(videos, out)
        with pytest.raises(UserError, match="by process .* \\(a run of all its videos\\)"):
            _main(videos, out, "--shard", "2/2")
    finally:
        locks.release(fd)
    message = str(refused.value)
    assert (
        "\n" not in message and f"--out {out} is being written by process {os.getpid()}" in message
    )
    # Shards: one lock each; a run of the whole root and a shard exclude each other.
    fd = locks.acquire(state / "shard-1-of-2.lock", "test", "test")
    try:
        with pytest.raises(
            UserError, match=f"shard 1/2 of --out {out} is being written by process"
        ):
            _main(videos, out, "--shard", "1/2")
        assert _main(videos, out, "--shard", "2/2") == 0  # another shard runs
    finally:
        locks.release(fd)
    with RootLocks(out, state, (1, 2)):
        with pytest.raises(UserError, match=f"--out {out} is being written by shard 1/2"):
            _main(videos, out)
        with pytest.raises(UserError, match="is being written by"):
            _main(videos, out, "--shard", "1/2")
        with pytest.raises(UserError, match="is being written by shard 1/2"):
            tool.main(["--out", str(out), "--index-only"])
        assert _main(videos, out, "--shard", "2/2") == 0
    assert _snapshot(out) == reference[2]


@pytest.mark.parametrize("bad", ["..avi", "...avi", ".avi", ".hidden.mp4", "a\\b.avi"])
def test_a_name_that_is_no_safe_folder_is_refused_and_harms_nothing(reference, tmp_path, bad):
    videos, out = tmp_path / "videos", tmp_path / "out"
    shutil.copytree(reference[0], videos)
    shutil.copytree(reference[1], out)
    shutil.copy(videos / "Class0" / "clip0.avi", videos / "Class1" / bad)
    with pytest.raises(UserError) as refused:
        _main(videos, out)
    message = str(refused.value)
    assert "\n" not in message
    assert f"cannot extract the video {videos / 'Class1' / bad}: " in message
    assert "; rename it, e.g. to '" in message
    assert _snapshot(out) == reference[2]  # the reported bug: `..avi` erased the layout


@pytest.mark.parametrize(
    ("file_name", "suggested"),
    [
        ("..avi", "video.avi"),
        ("...avi", "video.avi"),
        (".avi", "video.avi"),
        (".mp4", "video.mp4"),
        (".hidden.avi", "hidden.avi"),
        ("a/b.avi", "a_b.avi"),
        ("../up.avi", "_up.avi"),
        ("a\\b.mkv", "a_b.mkv"),
        ("/abs.avi", "_abs.avi"),
        ("tab\there.avi", "tab_here.avi"),
        ("x" * 251 + ".avi", "x" * 246 + ".avi"),
    ],
)
def test_unsafe_names_are_refused_with_a_new_name(file_name, suggested):
    with pytest.raises(UserError) as refused:
        check_video_name(file_name)
    assert f"rename it, e.g. to {suggested!r}" in str(refused.value)
    assert repr(file_name) in str(refused.value)
    with pytest.raises(UserError, match="'video_2.avi'"):
        check_video_name("..avi", taken={"video"})
    with pytest.raises(ValueError, match="its name"):  # no caller can write outside the layout
        extract_video(Path(file_name), "..", Path("out"), ExtractionSettings(), None, run_dir=".")


@pytest.mark.parametrize(
    ("file_name", "name"),
    [
        ("v_Biking_g01_c01.avi", "v_Biking_g01_c01"),
        ("my clip.AVI", "my clip"),
        ("a..b.mp4", "a..b"),
    ],
)
def test_safe_names_are_the_file_name_without_extension(file_name, name):
    assert check_video_name(file_name) == name
