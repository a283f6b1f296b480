"""Extraction on several machines: tools/extract_frames_flow.py --shard I/N and --index-only."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from extraction.decode import write_video
from extraction.locks import RunFolder, clear_dead_runs
from extraction.root import shard_of
from tools import extract_frames_flow as tool
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

NAMES = [
    f"v_Class{c:03d}_g{g:02d}_c{k:02d}" for c in range(101) for g in range(1, 8) for k in (1, 2)
]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_shards_cover_every_video_once_and_stay_balanced(count):
    owners = {name: shard_of(name, count) for name in NAMES}
    assert set(owners.values()) == set(range(1, count + 1))  # 1..N, each video exactly one
    sizes = np.bincount(list(owners.values()))[1:]
    assert sizes.sum() == len(NAMES) and sizes.min() > 0.9 * len(NAMES) / count
    # A machine that lists the files in another order picks the same videos.
    assert {n: shard_of(n, count) for n in reversed(NAMES)} == owners


def _frames(seed, n=4):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(n)]


def test_two_machines_cover_every_video_and_the_index_is_rebuilt(tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "out"
    names = ["a", "b", "c", "d", "e"]
    for i, name in enumerate(names):
        write_video(videos / f"{name}.avi", _frames(i))
    base = ["--videos", str(videos), "--out", str(out), "--workers", "1", "--short-side", "32"]
    done = []
    for shard in ("1/2", "2/2"):
        before = set(p.name for p in (out / "jpegs_256").glob("*")) if out.exists() else set()
        assert tool.main(base + ["--shard", shard]) == 0
        new = {p.name for p in (out / "jpegs_256").glob("*")} - before
        assert new == {n for n in names if shard_of(n, 2) == int(shard[0])}
        done += sorted(new)
    assert sorted(done) == names  # every video, each once
    (out / "index.json").unlink()
    assert tool.main(["--out", str(out), "--index-only"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert sorted(index["videos"]) == names and index["settings"]["short_side"] == 32
    assert index["videos"]["a"]["frames"] == 4
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("shard", ["0/2", "3/2", "1-2", "x/y"])
def test_bad_shard_is_a_user_error(shard, tmp_path):
    with pytest.raises(UserError, match="--shard"):
        tool.main(["--videos", str(tmp_path), "--out", str(tmp_path), "--shard", shard])


def test_index_only_needs_an_extracted_folder(tmp_path):
    with pytest.raises(UserError, match="no extraction"):
        tool.main(["--out", str(tmp_path), "--index-only"])


def test_two_shards_at_once_share_one_out_and_the_last_index_lists_all(tmp_path):
    """Shards run side by side (each its own lock); index.json is written one shard at a time,
    so the one that ends last lists every video."""
    videos, out = tmp_path / "videos", tmp_path / "out"
    names = ["a", "b", "c", "d", "e"]
    for i, name in enumerate(names):
        write_video(videos / f"{name}.avi", _frames(i))
    cmd = [sys.executable, "tools/extract_frames_flow.py", "--videos", str(videos), "--out"]
    cmd += [str(out), "--workers", "1", "--short-side", "32", "--preset", "fast"]
    runs = [
        subprocess.Popen(cmd + ["--shard", s], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for s in ("1/2", "2/2")
    ]
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stdout.read()
        run.stdout.close()
    assert sorted(json.loads((out / "index.json").read_text())["videos"]) == names
    assert not list((out / ".extract" / "tmp").iterdir())


def test_a_run_clears_the_folders_of_dead_runs_only(tmp_path):
    tmp = tmp_path / "tmp"
    live = RunFolder(tmp)  # as a shard still running: its lock is held
    (live.path / "clip" / "rgb").mkdir(parents=True)
    (tmp / "run-host-1-abcd" / "clip").mkdir(parents=True)  # a killed run's: its lock is free
    (tmp / "run-host-1-abcd.lock").touch()
    (tmp / "run-host-2-ef.lock").touch()  # killed before it made its folder
    (tmp / "b" / "rgb").mkdir(parents=True)  # of an older version: no lock at all
    assert clear_dead_runs(tmp) == ["b", "run-host-1-abcd", "run-host-2-ef"]
    assert sorted(p.name for p in tmp.iterdir()) == sorted([live.path.name, live.lock.name])
    live.close()
    assert not list(tmp.iterdir())
