"""tools/app.py, the web page: served on a free localhost port, driven in headless Chromium and
through gradio_client, it shows predict's result for the same video and checkpoints, predict's
one-line message for a video predict refuses, and ``unknown`` below --threshold."""

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from engine.predict_video import VideoOptions
from tests.helpers import free_port, single_thread
from tests.tiny_streams import CLASSES, noise_video, tiny_checkpoints
from tools import app, app_screenshot, predict
from utils.errors import UserError

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
FAVOURED = "Walk"  # the class both tiny streams are biased towards
THRESHOLD = 0.9  # above the biased streams' top probability: the label is unknown
OPTIONS = ["--threshold", str(THRESHOLD), "--window", "0.4", "--stride", "0.2"]  # 5 windows


def favour(path, name: str) -> None:
    """Bias a tiny checkpoint's classifier so that class ``name`` wins, but not by far."""
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["head.fc.bias"][CLASSES.index(name)] += 1.0
    torch.save(ckpt, path)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One app on a free port, and predict's JSON, CSV and timeline for the same video,
    checkpoints and options."""
    base = tmp_path_factory.mktemp("app")
    paths = tiny_checkpoints(base)
    for path in paths.values():
        favour(path, FAVOURED)
    video = noise_video(base / "noise.avi")
    streams = ["--spatial", str(paths["spatial"]), "--motion", str(paths["motion"])]
    streams += ["--device", "cpu", *OPTIONS]
    outputs = ["--csv", str(base / "predict.csv"), "--timeline", str(base / "timeline.csv")]
    expected = predict.main([str(video), *streams, *outputs])
    page = app.start([*streams, "--port", str(free_port())], block=False)
    bad = base / "bad.mp4"
    bad.write_text("not a video\n")
    yield SimpleNamespace(url=page.local_url, video=video, bad=bad, streams=streams,
                          expected=expected, base=base)  # fmt: skip
    page.close()


@pytest.fixture(scope="module")
def answer(served):
    """What gradio_client gets from the page's endpoint for the video."""
    from gradio_client import Client, handle_file

    client = Client(served.url, verbose=False)
    out = client.predict(handle_file(str(served.video)), api_name="/predict")
    names = ("headline", "fused", "table", "timeline", "cam", "files", "record")
    return SimpleNamespace(client=client, **dict(zip(names, out, strict=True)))


def predict_message(path, spatial) -> str:
    """predict's one-line message for ``path``, as the page names the upload: by file name."""
    with pytest.raises(UserError) as err:
        predict.main([str(path), "--spatial", str(spatial), "--device", "cpu"])
    return str(err.value).replace(str(path), path.name)


def read(path, mode="r"):
    with open(path, mode) as file:
        return file.read()


def test_the_page_in_a_browser_shows_predicts_label_and_error(served, tmp_path):
    why = app_screenshot.missing()
    if why:
        pytest.skip(why)
    driver = app_screenshot.open_browser(1000, 1100)
    try:
        headline = app_screenshot.upload(driver, served.url, served.video, timeout=60)
        assert served.expected["top"]["fused"][0][0] == FAVOURED
        assert headline.startswith(f"fused: unknown ({FAVOURED} ")  # below --threshold
        assert "noise.avi: 30 frames, 1.2 s, 5 window(s)" in headline
        shot = app_screenshot.screenshot(driver, tmp_path / "page.png")
        with pytest.raises(UserError) as err:
            app_screenshot.upload(driver, served.url, served.bad, timeout=60)
    finally:
        driver.quit()
    assert str(err.value) == predict_message(served.bad, served.streams[1])
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 20_000 < len(data) < 2_000_000
    assert int.from_bytes(data[16:20], "big") == 1000  # the window's width, in the PNG's header


def test_the_client_gets_predicts_result_and_files(served, answer):
    expected, record = served.expected, answer.record
    assert record["classes"] == CLASSES
    for name in ("spatial", "motion", "fused"):
        assert record[name] == pytest.approx(expected[name], abs=1e-6)
        assert dict(record["top"][name]) == pytest.approx(dict(expected["top"][name]), abs=1e-6)
    shown = {c["label"]: c["confidence"] for c in answer.fused["confidences"]}
    assert shown == pytest.approx(dict(expected["top"]["fused"]), abs=1e-6)
    assert answer.table["headers"] == ["#", "spatial", "motion", "fused"]
    best, prob = expected["top"]["fused"][0]
    assert answer.table["data"][0][3] == f"{best} {100 * prob:.1f}%"
    names = [f.rsplit("/", 1)[1] for f in answer.files]
    assert names == ["predictions.csv", "timeline.csv", "timeline_segments.csv"]
    (row,) = csv.reader(read(answer.files[0]).splitlines()[1:])
    (mine,) = csv.reader((served.base / "predict.csv").read_text().splitlines()[1:])
    assert row[0] == "noise.avi" and row[1:] == mine[1:]  # predict's CSV, the video by name
    assert read(answer.files[1]) == (served.base / "timeline.csv").read_text()
    assert read(answer.files[2]) == (served.base / "timeline_segments.csv").read_text()
    for picture in (answer.timeline, answer.cam):
        assert read(picture, "rb")[:4] == b"\x89PNG"


def test_a_video_predict_refuses_is_its_one_line_message(served, answer):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        answer.client.predict(handle_file(str(served.bad)), api_name="/predict")
    assert str(err.value) == predict_message(served.bad, served.streams[1])


def test_below_the_threshold_the_label_is_unknown(served, answer):
    assert max(served.expected["fused"]) < THRESHOLD  # the video's top probability is below it
    assert answer.record["top1"] == served.expected["top1"] == "unknown"
    assert answer.headline.startswith(f"**fused: unknown ({FAVOURED} ")
    (row,) = csv.DictReader(read(answer.files[0]).splitlines())
    assert row["label"] == "unknown" and row["fused_class1"] == FAVOURED
    labels = {r["label"] for r in csv.DictReader(read(answer.files[1]).splitlines())}
    assert labels == {"unknown"}  # every window's too


def test_a_bad_start_is_one_line_before_serving(served, tmp_path):
    (tmp_path / "bad.pth.tar").write_text("no")
    with pytest.raises(UserError, match="bad.pth.tar is not a readable checkpoint"):
        app.start(["--spatial", str(tmp_path / "bad.pth.tar"), "--device", "cpu"], block=False)
    with pytest.raises(UserError, match="give one or more of --spatial"):
        app.start(["--device", "cpu"], block=False)
    port = served.url.rstrip("/").rsplit(":", 1)[1]
    with pytest.raises(UserError, match=f"cannot serve on 127.0.0.1:{port} .* another --port"):
        app.start([*served.streams, "--port", port], block=False)


def test_a_results_files_go_when_the_next_result_comes():
    """Gradio has copied a result's files into its cache by then: a long-running page does not
    fill the disk with every upload's CSV and pictures."""
    streams = {"spatial": SimpleNamespace(classes=CLASSES)}
    classifier = app.Classifier(VideoOptions(top=3), streams, {}, "cpu")
    first = classifier.new_folder()
    (first / "predictions.csv").write_text("video\n")
    second = classifier.new_folder()
    assert not first.exists() and list(Path(classifier.folder.name).iterdir()) == [second]
    classifier.folder.cleanup()
