"""bench/gpu_check.py must not rot while no GPU is at hand: its dry run (every check, CPU, tiny
sizes) passes, writes its JSON, trains through the engine's own step within its sync budget,
and needs no PyAV (the GPU machine has none).

It runs in this process (a subprocess would spend most of its time importing torch), with PyAV
blocked and the toolkit's modules imported afresh, so that one importing PyAV fails here as it
would there."""

import json
import sys

import pytest
import torch  # noqa: F401  (imported with the module: the test times the checks, not torch)
import torchvision  # noqa: F401

from tests.helpers import single_thread

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
PACKAGES = {"bench", "dataloader", "engine", "network", "tools", "utils"}


@pytest.fixture
def without_pyav(monkeypatch):
    """``import av`` fails, and the toolkit's modules are imported afresh until the test ends
    (then this process's own are given back)."""

    def ours() -> dict:
        return {n: m for n, m in sys.modules.items() if n.split(".")[0] in PACKAGES}

    saved = ours()
    for name in saved:
        del sys.modules[name]
    monkeypatch.setitem(sys.modules, "av", None)
    yield
    for name in ours():
        del sys.modules[name]
    sys.modules.update(saved)


def test_gpu_check_dry_run_passes_without_pyav(tmp_path, without_pyav, capsys):
    from bench import gpu_check

    out = tmp_path / "check.json"
    status = gpu_check.main(["--dry-run", "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed[-3000:]
    assert "| check | setting | status | result | note |" in printed
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert report["dry_run"] and not [r for r in rows if r["ok"] is False]
    ran = {r["check"] for r in rows if r["ok"]}
    assert ran == {"train", "syncs", "turnover", "evaluate", "tvl1", "torchrun"}, ran
    extract = [r for r in rows if r["check"] == "extract"]
    assert len(extract) == 1 and extract[0]["ok"] is None  # skipped, saying why
    assert "PyAV" in extract[0]["note"] or "--prepare" in extract[0]["note"]
    # Each stream trains 2 accumulated batches per step through engine.loops.train_one_epoch,
    # which reads the device once per optimizer step.
    trained = [r["setting"] for r in rows if r["check"] == "train" and r["ok"]]
    streams = ["spatial", "spatial", "motion", "clip", "flow_clip", "spatial"]
    assert [s.split()[0] for s in trained] == streams
    assert all(" x 2 " in s for s in trained), trained
    syncs = [r for r in rows if r["check"] == "syncs"]
    assert [r["setting"] for r in syncs] == trained[:-1]  # not the compiled one
    assert {r["result"] for r in syncs} == {"1 per optimizer step"}
    assert trained[-1] == "spatial resnet18 batch 2 x 2 none compiled"
    # A 2-process training's test scores = its checkpoint evaluated by one plain process: every
    # rank scores with rank 0's BatchNorm statistics (engine.distributed.broadcast_buffers).
    torchrun = [r["setting"] for r in rows if r["check"] == "torchrun" and r["ok"]]
    assert torchrun == [
        "gloo, 2 processes: train 1 epoch + test",
        "gloo: the checkpoint's --evaluate in one plain process",
    ]
    turnover = [r["setting"].split(",")[0] for r in rows if r["check"] == "turnover"]
    assert turnover == ["workers restarted", "workers persistent"]
