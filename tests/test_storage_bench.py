"""bench/storage_bench.py --dry-run: the storage benchmark runs end to end on tiny generated
videos (extraction, packing, every stream and source, the decoder settings, the stages) and
writes its figures, so that it does not rot."""

import json

import pytest

from bench import storage_bench
from tests.helpers import single_thread

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def test_the_storage_bench_dry_run_measures_every_source(tmp_path, capsys):
    out = tmp_path / "figures.json"
    argv = ["--dry-run", "--work", str(tmp_path / "work"), "--json", str(out)]
    assert storage_bench.main(argv) == 0
    figures = json.loads(out.read_text())
    assert {s: sorted(v) for s, v in figures["speeds"].items()} == {
        "spatial": ["folders", "packs", "videos"],
        "motion": ["folders", "packs"],  # flow has no video source
        "clip": ["folders", "packs", "videos"],
    }
    assert all(cpu > 0 for by in figures["speeds"].values() for cpu, _ in by.values())
    disk = figures["disk"]
    assert disk["packs"]["files"] == 2 * figures["videos"]  # one file per video and modality
    assert disk["videos"]["files"] == figures["videos"] == 3
    assert disk["folders"]["files"] == 3 * disk["folders"]["rgb_frames"] - 2 * 3
    assert 0 < figures["extraction_saved_by_videos"] < 1
    assert "goal spatial: videos >= 0.25x folders" in capsys.readouterr().out
