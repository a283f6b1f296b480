"""tools/live.py with a video file as the source: the windows scored as frames arrive are
predict's windows, a slow scorer drops frames instead of lagging, and Ctrl-C leaves a whole
--out."""

import csv
import json
import threading
import time

import av
import pytest

from engine.inference import StreamModel
from tests.helpers import single_thread
from tests.tiny_streams import noise_video, tiny_checkpoints
from tools import live, predict
from utils import faults
from utils.errors import UserError

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
WINDOWS = ["--window", "0.4", "--stride", "0.2"]  # 10 frames every 5 at 25 fps


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("live")
    return {**tiny_checkpoints(base), "video": noise_video(base / "noise.avi", frames=30)}


def _argv(tiny, *extra) -> list[str]:
    streams = ["--spatial", tiny["spatial"], "--motion", tiny["motion"], "--device", "cpu"]
    return [str(a) for a in [tiny["video"], *streams, *WINDOWS, *extra]]


def _decoded(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_live_windows_are_predicts_windows_and_out_has_every_frame(tiny, tmp_path, capsys):
    out = tmp_path / "labelled.mp4"
    summary = live.main([*_argv(tiny), "--out", str(out), "--top", "4"])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert summary["windows"] == len(records) == 5 and summary["dropped"] == 0
    times = [(r["start"], r["end"]) for r in records]
    assert times == [(round(0.2 * k, 3), round(0.2 * k + 0.4, 3)) for k in range(5)]
    predict.main([*_argv(tiny)[:-4], *WINDOWS, "--timeline", str(tmp_path / "t.csv")])
    for record, row in zip(records, csv.DictReader((tmp_path / "t.csv").open()), strict=True):
        for name in ("spatial", "motion", "fused"):
            shown = {c: p for c, p in record["top"][name]}
            expected = {
                row[f"{name}_class{k}"]: float(row[f"{name}_prob{k}"]) for k in (1, 2, 3, 4)
            }
            assert shown == pytest.approx(expected, abs=1e-4)
        assert record["label"] == row["fused_class1"] and record["latency"] >= 0
    assert _decoded(out) == 30  # every frame, labelled
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    assert "end: " in captured.err and "0 dropped (0.0%)" in captured.err


def test_a_slow_scorer_drops_frames_instead_of_lagging(tiny, monkeypatch, capsys):
    scores, took = StreamModel.scores, []

    def slow(self, clips, device):
        start = time.monotonic()
        threading.Event().wait(0.15)
        try:
            return scores(self, clips, device)
        finally:
            took.append(time.monotonic() - start)

    monkeypatch.setattr(StreamModel, "scores", slow)
    argv = _argv(tiny, "--realtime", "--queue", "0.2", "--stats-every", "0.4")
    summary = live.main(argv)
    assert summary["frames"] == 30 and summary["dropped"] > 0
    assert 1 <= summary["windows"] < 5  # the frames dropped make fewer windows
    # A few frames' wait and one window's scoring, which a busy machine makes longer: the bound
    # is 1.5 s or three times the slowest scoring, not a lag that grows with the video.
    assert summary["latency_max"] < max(1.5, 3 * max(took)), (summary, took)
    err = capsys.readouterr().err
    assert f"{summary['dropped']} dropped" in err.splitlines()[-1]


def test_ctrl_c_ends_with_a_whole_out(tiny, tmp_path, monkeypatch, capsys):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are set in the main thread only")
    # Ctrl-C as the first window is labelled, the clip played at its rate: 16 s, far longer than
    # that first window takes even on a busy machine (5.5 s seen at a load of 8 on 2 cores).
    monkeypatch.setenv(faults.ENV, "live.window:int:1")
    monkeypatch.setattr(faults, "_reached", {})
    long = noise_video(tmp_path / "long.avi", frames=400)
    out = tmp_path / "stopped.avi"
    argv = [*_argv(tiny, "--realtime", "--out", out)]
    summary = live.main([str(long), *argv[1:]])
    captured = capsys.readouterr()
    assert "stopping" in captured.err and summary["frames"] < 400, (summary, captured.err)
    lines = captured.out.splitlines()
    assert len(lines) == summary["windows"] and all(json.loads(line) for line in lines)
    assert _decoded(out) == summary["frames_scored"] >= 1  # each frame that reached the scorer
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_a_capture_that_crashes_is_said_not_taken_for_the_sources_end(
    tiny, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(faults.ENV, "live.frame:enospc:5")  # an OSError as the 5th frame is read
    monkeypatch.setattr(faults, "_reached", {})
    summary = live.main([*_argv(tiny), "--out", str(tmp_path / "cut.avi")])
    assert summary["frames"] == 5  # counted as read, then the error
    assert "reading stopped after 5 frames" in capsys.readouterr().err


def test_live_refuses_bad_input_in_one_line(tiny, tmp_path):
    with pytest.raises(UserError, match="this OpenCV has no GUI .*pip install opencv-contrib"):
        live.main(_argv(tiny, "--show"))
    with pytest.raises(UserError, match="cannot open .*missing.avi"):
        live.main([str(tmp_path / "missing.avi"), *_argv(tiny)[1:]])
    with pytest.raises(UserError, match="--out x.gif: give a .mp4 .mkv .avi .mov file"):
        live.main(_argv(tiny, "--out", "x.gif"))
