"""bench/gpu_check.py must not rot while no GPU is at hand: its dry run (every check, CPU, tiny
sizes) passes, writes its JSON, and needs no PyAV (the GPU machine has none)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_passes_without_pyav(tmp_path):
    blocked = tmp_path / "no_av" / "av"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('PyAV blocked by the test')\n")
    out = tmp_path / "check.json"
    env = dict(os.environ, PYTHONPATH=str(blocked.parent), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--dry-run", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert report["dry_run"] and not [r for r in rows if r["ok"] is False]
    ran = {r["check"] for r in rows if r["ok"]}
    assert ran == {"train", "evaluate", "tvl1", "torchrun"}, ran
    extract = [r for r in rows if r["check"] == "extract"]
    assert len(extract) == 1 and extract[0]["ok"] is None  # skipped, saying why
    assert "PyAV" in extract[0]["note"] or "--prepare" in extract[0]["note"]
    # A 2-process training's test scores = its checkpoint evaluated by one plain process: every
    # rank scores with rank 0's BatchNorm statistics (engine.distributed.broadcast_buffers).
    torchrun = [r["setting"] for r in rows if r["check"] == "torchrun" and r["ok"]]
    assert torchrun == [
        "gloo, 2 processes: train 1 epoch + test",
        "gloo: the checkpoint's --evaluate in one plain process",
    ]
    compiled = [r for r in rows if r["setting"].endswith("compiled") and r["ok"]]
    assert [r["setting"] for r in compiled] == ["spatial resnet18 batch 2 none compiled"]
    assert "| check | setting | status | result | note |" in done.stdout
