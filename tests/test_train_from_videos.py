"""Training from video files (--videos): a spatial stream trained, resumed, evaluated and used
for prediction straight from tiny videos, fused with a motion stream trained on frames
extracted from the same videos; the motion stream refuses --videos in one line."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fusion
from engine.cli import main
from engine.streams import CLIP, MOTION, SPATIAL
from tests.helpers import SMALL_ARCH, single_thread
from tests.video_files import moving_frames, write_test_video
from tools import predict
from utils.errors import UserError
from utils.scores import load_npz

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)

FAST = [
    "--arch", SMALL_ARCH, "--pretrained", "none", "--crop-size", "32", "--num-segments", "2",
    "--test-snippets", "3", "--batch-size", "2", "--workers", "0", "--seed", "1",
    "--dataset", "custom", "--accum-steps", "1", "--lr", "0.05",
]  # fmt: skip


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two classes of three 16-frame videos (two to train, one to test) in class folders, as
    UCF101 unpacks, and a custom split of them."""
    root = tmp_path_factory.mktemp("from_videos")
    folder, splits = root / "videos", root / "splits"
    lines = {"train": [], "test": []}
    for label, action in enumerate(("Left", "Right")):
        for k in range(3):
            name = f"{action}_{k}"
            frames = moving_frames(16, (56, 40), seed=3 * label + k, shade=100 * label)
            write_test_video(folder / action / f"{name}.avi", frames, gop=6)
            lines["test" if k == 2 else "train"].append(f"{name} {action}\n")
    splits.mkdir()
    (splits / "classes.txt").write_text("Left\nRight\n")
    for part, text in lines.items():
        (splits / f"{part}.txt").write_text("".join(text))
    return folder, splits


def test_spatial_trains_resumes_evaluates_and_predicts_from_videos(videos, tmp_path):
    folder, splits = videos
    record = tmp_path / "spatial"
    common = ["--videos", str(folder), "--splits-dir", str(splits), "--short-side", "48", *FAST]
    assert main(SPATIAL, [*common, "--epochs", "1", "--record-dir", str(record)]) == 0
    checkpoint = record / "checkpoint.pth.tar"
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["videos"] == {"folder": str(folder), "short_side": 48}
    assert (folder / ".frame_index.json").is_file()  # frame counts cached, as for frame folders

    # resumed to a second epoch: the same source and short side, taken from the checkpoint
    assert main(SPATIAL, ["--resume", str(checkpoint), "--epochs", "2", "--workers", "0"]) == 0
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["args"]["short_side"] == 48
    trained = load_npz(record / "video_scores.npz")
    assert trained.scores.shape == (2, 2) and trained.epoch == 2

    # --evaluate decodes the videos as training did: the same scores
    evaluated = tmp_path / "evaluated.npz"
    main(SPATIAL, ["--evaluate", "--resume", str(checkpoint), "--scores-out", str(evaluated),
                   "--workers", "0"])  # fmt: skip
    np.testing.assert_allclose(load_npz(evaluated).scores, trained.scores, rtol=1e-5, atol=1e-5)

    # prediction of a test video decodes it at the recorded short side, with no JPEG: the
    # probabilities of the evaluation's scores
    video = folder / "Left" / "Left_2.avi"
    result = predict.main([str(video), "--spatial", str(checkpoint), "--window", "0"])
    row = list(trained.videos).index("Left_2")
    expected = torch.softmax(torch.from_numpy(trained.scores[row]).double(), 0).numpy()
    assert abs(expected[0] - expected[1]) > 1e-3  # a trained model, not an even guess
    np.testing.assert_allclose(result["spatial"], expected, rtol=1e-4, atol=1e-5)

    # fused with a motion stream trained on the flow of the same videos
    frames = tmp_path / "frames"
    extraction = subprocess.run(
        [sys.executable, "tools/extract_frames_flow.py", "--videos", str(folder)]
        + ["--out", str(frames), "--short-side", "48", "--preset", "fast", "--workers", "1"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert extraction.returncode == 0, extraction.stderr[-2000:]
    motion = tmp_path / "motion"
    motion_args = ["--data-root", str(frames), "--splits-dir", str(splits), *FAST]
    main(
        MOTION, [*motion_args, "--epochs", "1", "--stack-length", "2", "--record-dir", str(motion)]
    )
    results = fusion.main(
        [
            "--spatial",
            str(record / "video_scores.npz"),
            "--motion",
            str(motion / "video_scores.npz"),
        ]
    )
    assert list(results) == ["spatial", "motion", "fused"]
    assert results["fused"]["videos"] == 2


def test_motion_stream_refuses_videos_in_one_line(videos, tmp_path):
    folder, splits = videos
    with pytest.raises(UserError, match="needs optical flow.*extract_frames_flow.py"):
        main(MOTION, ["--videos", str(folder), "--splits-dir", str(splits), *FAST,
                      "--record-dir", str(tmp_path / "m")])  # fmt: skip
    with pytest.raises(UserError, match="--data-root or --videos, not both"):
        main(SPATIAL, ["--videos", str(folder), "--data-root", str(folder), *FAST])


def test_clip_stream_trains_and_evaluates_from_videos(videos, tmp_path):
    """The clip stream reads consecutive frames straight from the videos (half-size reads
    included: short side 48 is over twice --clip-short-side 20), and records its source."""
    folder, splits = videos
    record = tmp_path / "clip"
    common = ["--videos", str(folder), "--splits-dir", str(splits), "--short-side", "48"]
    common += ["--arch", "mc3_18", "--pretrained", "none", "--crop-size", "16"]
    common += ["--clip-short-side", "20", "--clip-length", "4", "--test-snippets", "2"]
    common += ["--batch-size", "2", "--workers", "0", "--seed", "1", "--dataset", "custom"]
    common += ["--accum-steps", "1"]
    assert main(CLIP, [*common, "--epochs", "1", "--record-dir", str(record)]) == 0
    checkpoint = record / "checkpoint.pth.tar"
    assert torch.load(checkpoint, weights_only=True)["videos"]["short_side"] == 48
    trained = load_npz(record / "video_scores.npz")
    assert trained.scores.shape == (2, 2) and np.isfinite(trained.scores).all()
