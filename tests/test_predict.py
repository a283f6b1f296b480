"""tools/predict.py on a generated video, with checkpoints of a tiny training run."""

import csv
import io
import json
import re
import shutil
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.special import softmax

from engine.cli import main as train_main
from engine.inference import extraction_settings, load_stream
from engine.streaming import score_video
from engine.streams import CLIP, MOTION, SPATIAL
from extraction.decode import decode_video, write_video
from tests.helpers import SMALL_ARCH, single_thread
from tools import extract_frames_flow, predict
from tools.synthetic_actions import generate
from utils import progress
from utils.errors import UserError
from utils.gif import GIF_SIDE

HEIGHT = 48
one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synthetic videos, their extracted frames and one epoch of each stream on them."""
    base = tmp_path_factory.mktemp("predict")
    data = generate(base / "data", 2, 1, (64, HEIGHT), (12, 12), seed=1)
    frames = base / "frames"
    extract_frames_flow.main(
        ["--videos", str(data.videos_dir), "--out", str(frames), "--short-side", str(HEIGHT)]
        + ["--workers", "1", "--preset", "fast"]
    )
    common = ["--data-root", str(frames), "--splits-dir", str(data.splits_dir)]
    common += ["--arch", SMALL_ARCH, "--pretrained", "none", "--no-partial-bn", "--epochs", "1"]
    common += ["--batch-size", "4", "--crop-size", "32", "--test-snippets", "3", "--workers", "0"]
    common += ["--device", "cpu", "--lr", "0.001"]
    train_main(SPATIAL, [*common, "--record-dir", str(base / "spatial")])
    train_main(MOTION, [*common, "--stack-length", "4", "--record-dir", str(base / "motion")])
    clip = ["--arch", "mc3_18", "--clip-length", "4", "--clip-short-side", "40"]
    common[common.index(SMALL_ARCH)] = "mc3_18"
    train_main(CLIP, [*common, *clip, "--record-dir", str(base / "clip")])
    test_clip = next(c for c in data.clips if not c.train)
    return {
        "base": base,
        "data": data,
        "video": test_clip.path,
        "name": test_clip.name,
        "spatial": base / "spatial" / "checkpoint.pth.tar",
        "motion": base / "motion" / "checkpoint.pth.tar",
        "clip": base / "clip" / "checkpoint.pth.tar",
    }


def _predict(trained, *extra):
    argv = [str(trained["video"]), "--device", "cpu", *map(str, extra)]
    return predict.main(argv)


def _evaluated_probabilities(trained, stream: str) -> np.ndarray:
    scores = np.load(trained["base"] / stream / "video_scores.npz")
    row = list(scores["videos"]).index(trained["name"])
    return softmax(scores["scores"][row].astype(np.float64))


def test_predict_matches_evaluation_and_fuses(trained, capsys):
    result = _predict(trained, "--spatial", trained["spatial"], "--motion", trained["motion"])
    classes = trained["data"].classes
    assert result["classes"] == classes
    # The video is decoded, extracted (with the settings in the data root's index.json) and
    # sampled in memory exactly as for evaluation.
    for stream in ("spatial", "motion"):
        probs = np.array(result[stream])
        assert probs.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(probs, _evaluated_probabilities(trained, stream), atol=1e-5)
    # Default fusion: softmax of the average of the two streams' mean logits.
    logits = [np.log(np.array(result[s])) for s in ("spatial", "motion")]
    np.testing.assert_allclose(result["fused"], softmax((logits[0] + logits[1]) / 2), atol=1e-5)
    assert result["top1"] == classes[int(np.argmax(result["fused"]))]

    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.lstrip().startswith("#"))
    assert header.split() == ["#", "spatial", "motion", "fused"]
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == len(classes)  # --top 5 capped at the 4 classes
    assert rows[0].split()[-2:] == [result["top1"], f"{100 * max(result['fused']):.1f}%"]


def test_predict_fuses_a_third_clip_stream(trained, capsys):
    streams = ("spatial", "motion", "clip")
    result = _predict(trained, *(x for s in streams for x in (f"--{s}", trained[s])))
    for stream in streams:
        probs = np.array(result[stream])
        np.testing.assert_allclose(probs, _evaluated_probabilities(trained, stream), atol=1e-5)
    logits = sum(np.log(np.array(result[s])) for s in streams) / 3
    np.testing.assert_allclose(result["fused"], softmax(logits), atol=1e-5)
    header = next(line for line in capsys.readouterr().out.splitlines() if "#" in line)
    assert header.split() == ["#", *streams, "fused"]


def test_predict_with_one_stream_writes_gif_and_json(trained, tmp_path, capsys):
    gif, out_json = tmp_path / "clip.gif", tmp_path / "clip.json"
    result = _predict(trained, "--motion", trained["motion"], "--top", 2, "--gif", gif)
    assert "spatial" not in result and "fused" not in result
    assert result["top1"] == result["classes"][int(np.argmax(result["motion"]))]
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 2

    assert re.search(rf"wrote {gif} \(4 frames at 8.3 a second, .* MB\) in [0-9.]+ s", out)
    with Image.open(gif) as image:
        assert image.n_frames == 4  # 12 frames at 25 a second: every third one
        assert image.info["loop"] == 0
        assert image.width == GIF_SIDE  # tiny clips are enlarged so the label is readable

    _predict(trained, "--spatial", trained["spatial"], "--json", out_json)
    saved = json.loads(out_json.read_text())
    assert set(saved) >= {"video", "classes", "top1", "spatial"}


def test_predict_refuses_bad_input(trained, tmp_path):
    with pytest.raises(
        UserError, match="one or more of --spatial, --motion, --clip and --flow-clip"
    ):
        _predict(trained)
    with pytest.raises(UserError, match="video not found"):
        predict.main([str(tmp_path / "missing.avi"), "--spatial", str(trained["spatial"])])
    garbage = tmp_path / "broken.avi"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(UserError, match="cannot decode"):
        predict.main([str(garbage), "--spatial", str(trained["spatial"])])
    with pytest.raises(UserError, match="motion-stream checkpoint; pass it as --motion"):
        _predict(trained, "--spatial", trained["motion"])
    with pytest.raises(UserError, match="checkpoint not found"):
        _predict(trained, "--spatial", tmp_path / "none.pth.tar")

    renamed = torch.load(trained["motion"], map_location="cpu", weights_only=True)
    renamed["classes"] = [*renamed["classes"][:-1], "SomethingElse"]
    other = tmp_path / "other.pth.tar"
    torch.save(renamed, other)
    with pytest.raises(UserError, match="different classes .*class 4"):
        _predict(trained, "--spatial", trained["spatial"], "--motion", other)


def test_extraction_settings_are_recorded_in_the_checkpoint(trained):
    """The data root's index.json is read at training start and kept in the checkpoint."""
    ckpt = torch.load(trained["spatial"], map_location="cpu", weights_only=True)
    assert ckpt["extraction"]["preset"] == "fast" and ckpt["extraction"]["short_side"] == HEIGHT
    stream = load_stream(trained["spatial"], "spatial", torch.device("cpu"))
    stream.args = {**stream.args, "data_root": str(trained["base"] / "moved")}
    settings, source = extraction_settings(stream, {})
    assert settings.short_side == HEIGHT and settings.preset == "fast"
    assert source == str(trained["spatial"])


def test_extraction_settings_come_from_the_training_data_root(trained):
    stream = load_stream(trained["spatial"], "spatial", torch.device("cpu"))
    stream.extraction = None  # a checkpoint from before they were recorded
    index = trained["base"] / "frames" / "index.json"
    settings, source = extraction_settings(stream, {})
    assert settings.short_side == HEIGHT and settings.preset == "fast"
    assert source == str(index)

    given = {"short_side": 64, "bound": 5.0, "preset": None}
    settings, source = extraction_settings(stream, given, override=True)
    assert (settings.short_side, settings.bound) == (64, 5.0)
    assert source == f"{index} and command line"
    same = {"short_side": HEIGHT, "preset": "fast"}  # agreeing with the record is fine
    assert extraction_settings(stream, same)[0].short_side == HEIGHT


def test_predict_refuses_settings_that_contradict_the_checkpoint(trained):
    """The checkpoint records --short-side 48 --preset fast: 256 / quality are refused, naming
    both, unless --override-extraction."""
    argv = ["--spatial", trained["spatial"], "--short-side", 256, "--preset", "quality"]
    message = (
        r"trained on frames extracted with --short-side 48 --preset fast \(recorded in .*"
        r"checkpoint.pth.tar\), not --short-side 256 --preset quality: .*--override-extraction"
    )
    with pytest.raises(UserError, match=message):
        _predict(trained, *argv)
    result = _predict(trained, *argv[:2], "--short-side", 40, "--override-extraction")
    assert result["top1"] in trained["data"].classes


def test_unknown_extraction_settings_are_refused_unless_given(trained, capsys):
    stream = load_stream(trained["spatial"], "spatial", torch.device("cpu"))
    stream.extraction = None
    stream.args = {**stream.args, "data_root": str(trained["base"] / "moved")}
    with pytest.raises(UserError, match=r"were extracted .*pass --short-side \.\.\. --preset"):
        extraction_settings(stream, {"bound": 5.0})
    given = {"short_side": 64, "bound": 5.0, "preset": "fast"}
    settings, source = extraction_settings(stream, given)
    assert settings.short_side == 64 and settings.jpeg_quality == 95
    assert source == "extraction defaults and command line"


def test_predict_many_videos_writes_one_csv_and_json(trained, tmp_path, capsys):
    test_clips = sorted(c.path for c in trained["data"].clips if not c.train)
    folder = test_clips[0].parent  # a folder of videos, plus one file named directly
    csv_path, json_path = tmp_path / "many.csv", tmp_path / "many.json"
    argv = [str(folder), str(test_clips[-1]), "--device", "cpu", "--top", "2"]
    argv += ["--spatial", str(trained["spatial"]), "--motion", str(trained["motion"])]
    results = predict.main([*argv, "--csv", str(csv_path), "--json", str(json_path)])
    in_folder = sorted(p for p in folder.iterdir() if p.suffix == ".avi")
    assert [r["video"] for r in results] == [str(p) for p in [*in_folder, test_clips[-1]]]
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("video,spatial_class1,spatial_prob1,spatial_class2")
    assert rows[0].endswith("fused_class2,fused_prob2,error") and len(rows) == len(results) + 1
    assert json.loads(json_path.read_text())[0]["top1"] == results[0]["top1"]
    single = predict.main([str(test_clips[-1]), *argv[2:]])
    assert single["fused"] == pytest.approx(results[-1]["fused"])  # the same, one by one
    with pytest.raises(UserError, match="--gif draws one video"):
        predict.main([*argv, "--gif", str(tmp_path / "x.gif")])


def test_predict_draws_where_each_stream_looks(trained, tmp_path, capsys):
    streams = [x for s in ("spatial", "motion", "clip") for x in (f"--{s}", trained[s])]
    gif, png = tmp_path / "cam.gif", tmp_path / "cam.png"
    result = _predict(trained, *streams, "--cam", gif)
    assert f"wrote {gif}" in capsys.readouterr().out
    with Image.open(gif) as image:
        assert image.n_frames == 3  # one frame per test snippet (--test-snippets 3)
        panels = image.width
    _predict(trained, *streams, "--cam", png)
    with Image.open(png) as image:
        rows, width = image.height, image.width
    assert width == panels and rows > 2 * 160  # three streams, one line of 3 snippets each
    assert result["top1"] in result["classes"]
    with pytest.raises(UserError, match=r"--cam .*\.gif \(animated\) or \.png"):
        _predict(trained, "--spatial", trained["spatial"], "--cam", tmp_path / "x.jpg")


def _lossless(path, frames, fps: int = 25):
    """A video that decodes to exactly ``frames`` (FFV1 in RGB): a long video made of clips."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _evaluated_scores(trained, stream: str, names) -> np.ndarray:
    scores = np.load(trained["base"] / stream / "video_scores.npz")
    rows = [list(scores["videos"]).index(name) for name in names]
    return scores["scores"][rows].astype(np.float64)


def test_a_long_video_is_scored_window_by_window_as_evaluation_scores_each_clip(
    trained, tmp_path, capsys
):
    """Four test clips end to end, windows of one clip: each window is sampled and scored as
    evaluation scores its clip; the video's result is the streams' mean scores, fused."""
    clips = sorted((c for c in trained["data"].clips if not c.train), key=lambda c: c.name)
    frames = np.concatenate([decode_video(c.path, None).frames for c in clips])
    video = _lossless(tmp_path / "long.mkv", frames)
    out = tmp_path / "timeline.csv"
    argv = [str(video), "--device", "cpu", "--top", 4, "--timeline", out, "--window", 0.48]
    argv += ["--stride", 0.48, "--spatial", trained["spatial"], "--motion", trained["motion"]]
    result = predict.main(list(map(str, argv)))
    assert result["windows"] == 4 and result["seconds"] == pytest.approx(1.92)
    rows = list(csv.DictReader(out.open()))
    assert [(r["start"], r["end"]) for r in rows] == [
        ("0.00", "0.48"), ("0.48", "0.96"), ("0.96", "1.44"), ("1.44", "1.92")
    ]  # fmt: skip
    names = [c.name for c in clips]
    logits = {s: _evaluated_scores(trained, s, names) for s in ("spatial", "motion")}
    for stream, scores in logits.items():
        for row, clip_scores in zip(rows, scores, strict=True):
            shown = {
                row[f"{stream}_class{k}"]: float(row[f"{stream}_prob{k}"]) for k in (1, 2, 3, 4)
            }
            expected = dict(zip(result["classes"], softmax(clip_scores), strict=True))
            assert shown == pytest.approx(expected, abs=1e-4)
        np.testing.assert_allclose(result[stream], softmax(scores.mean(axis=0)), atol=1e-5)
    fused = softmax((logits["spatial"].mean(axis=0) + logits["motion"].mean(axis=0)) / 2)
    np.testing.assert_allclose(result["fused"], fused, atol=1e-5)

    segments = list(csv.DictReader((tmp_path / "timeline_segments.csv").open()))
    assert segments[0]["start"] == "0.00" and segments[-1]["end"] == "1.92"
    assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:], strict=False))
    assert all(s["class"] in result["classes"] for s in segments)
    with Image.open(tmp_path / "timeline.png") as image:
        assert image.width > 600
    assert "real-time factor" in capsys.readouterr().out


def test_streaming_holds_only_the_frames_a_window_needs(trained, tmp_path):
    """Frames are decoded once and held only while a window needs them: a video twice as long
    holds no more (3 frames, 3 stacks of 4 flow frames per window, two windows open)."""
    device = torch.device("cpu")
    streams = {s: load_stream(trained[s], s, device) for s in ("spatial", "motion")}
    settings = {s: extraction_settings(stream, {}) for s, stream in streams.items()}
    clip = decode_video(trained["video"], None).frames
    held, seen, decoded = [], [], []
    for repeats in (6, 12):
        path = write_video(tmp_path / f"long{repeats}.avi", np.concatenate([clip] * repeats))
        decoded.clear()
        video = score_video(path, streams, settings, device, 0.96, 0.48,
                            on_frame=lambda i, frame: decoded.append(i))  # fmt: skip
        assert decoded == list(range(12 * repeats))  # one pass
        assert len(video.windows) == 12 * repeats // 12 - 1
        held.append(video.max_held)
        seen.append(video.scores["motion"].shape)
    assert held[0] == held[1] <= 2 * (3 + 3 * (4 + 1))
    assert seen == [(5, 4), (11, 4)]


def test_a_batch_keeps_finished_rows_records_failures_and_resumes(trained, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    clips = sorted(c.path for c in trained["data"].clips if not c.train)[:2]
    for clip in clips:
        shutil.copy(clip, folder / clip.name)
    (folder / "broken.avi").write_bytes(b"not a video" * 100)
    (folder / "empty.mp4").write_bytes(b"")
    csv_path, json_path = tmp_path / "out.csv", tmp_path / "out.json"
    argv = [str(folder), "--device", "cpu", "--spatial", str(trained["spatial"])]
    argv += ["--csv", str(csv_path), "--json", str(json_path)]
    with pytest.raises(UserError, match="2 of 4 videos failed .*broken.avi: cannot decode"):
        predict.main(argv)
    rows = {r["video"]: r for r in csv.DictReader(csv_path.open())}
    assert len(rows) == 4
    assert rows[str(folder / "broken.avi")]["error"].startswith("cannot decode")
    assert rows[str(folder / "broken.avi")]["spatial_class1"] == ""
    assert all(rows[str(folder / c.name)]["error"] == "" for c in clips)
    assert len(json.loads(json_path.read_text())) == 4
    capsys.readouterr()

    (folder / "broken.avi").unlink()
    (folder / "empty.mp4").unlink()
    assert predict.main(argv) == []  # everything left is done already
    assert "0 videos in" in capsys.readouterr().out
    assert len(list(csv.DictReader(csv_path.open()))) == 2  # the failed rows are dropped
    assert [r["video"] for r in json.loads(json_path.read_text())] == [
        str(folder / c.name) for c in clips
    ]


def test_a_score_file_given_as_a_checkpoint_is_one_line(trained):
    scores = trained["base"] / "spatial" / "video_scores.npz"
    with pytest.raises(UserError, match=r"^\S+video_scores.npz is a score file, not a checkpoint"):
        _predict(trained, "--spatial", scores)


def _cut(trained, path, repeats: int = 3):
    """A clip written ``repeats`` times over, then cut to half its bytes: a container that
    declares 12 * repeats frames and holds about half of them (tests/test_extraction.py)."""
    clip = decode_video(trained["video"], None).frames
    whole = write_video(path.with_name("whole.avi"), np.concatenate([clip] * repeats))
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def test_a_truncated_video_is_refused_or_scored_with_a_warning(trained, tmp_path, capsys):
    cut = _cut(trained, tmp_path / "videos" / "cut.avi")
    message = (
        rf"{cut}: truncated: (\d+) of the 36 frames its container declares decoded \(the file "
        r"is cut short or damaged; download or copy it again\); or pass --allow-truncated to "
        "score the frames it has"
    )
    with pytest.raises(UserError, match=f"^{message}$") as refused:
        predict.main([str(cut), "--spatial", str(trained["spatial"]), "--device", "cpu"])
    decoded = int(re.match(message, str(refused.value)).group(1))
    assert decoded < 30
    argv = [str(cut.parent), "--spatial", str(trained["spatial"]), "--device", "cpu"]
    with pytest.raises(UserError, match="1 of 2 videos failed .*cut.avi: .*truncated: "):
        predict.main([*argv, "--csv", str(tmp_path / "out.csv")])
    rows = {r["video"]: r for r in csv.DictReader((tmp_path / "out.csv").open())}
    assert re.fullmatch(message, rows[str(cut)]["error"])  # the batch's row says why
    assert rows[str(cut.with_name("whole.avi"))]["error"] == ""
    capsys.readouterr()

    scored = {r["video"]: r for r in predict.main([*argv, "--allow-truncated"])}
    assert scored[str(cut)]["seconds"] == pytest.approx(decoded / 25)
    warning = (
        f"{cut}: truncated: {decoded} of the 36 frames its container declares decoded (the "
        f"file is cut short or damaged; download or copy it again); scored the {decoded} "
        "frames it has"
    )
    assert scored[str(cut)]["warning"] == warning
    assert f"warning: {warning}\n" in capsys.readouterr().err
    assert "warning" not in scored[str(cut.with_name("whole.avi"))]


def test_a_long_video_shows_its_windows_on_a_terminal_and_in_a_log(trained, tmp_path, monkeypatch):
    clip = decode_video(trained["video"], None).frames
    video = write_video(tmp_path / "long.avi", np.concatenate([clip] * 3))
    argv = [str(video), "--spatial", str(trained["spatial"]), "--device", "cpu"]
    argv += ["--window", "0.48", "--stride", "0.48"]  # a clip each: 3 windows
    terminal = io.StringIO()
    terminal.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", terminal)
    predict.main(argv)
    assert re.match(r"\rlong.avi: +0%\|.*\| 0/3 \[.*window/s", terminal.getvalue())

    log = io.StringIO()  # not a terminal: a line a minute; here every window
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    predict.main(argv)
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        f"long.avi: {n} of 3 windows done" for n in (1, 2, 3)
    ]
    assert re.fullmatch(r"long.avi: 1 of 3 windows done, 00:\d\d so far, about 00:\d\d left",
                        lines[0])  # fmt: skip
