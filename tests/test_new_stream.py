"""A stream defined here, in the test, runs through the shared command line, trainer and fusion.

The toy stream feeds the network RGB frame differences (frame i+1 minus frame i, centred on 128):
a spec and a sample builder are all it takes, with no change anywhere else.
"""

import numpy as np
import pytest
import torch

import fusion
from dataloader.samples import SampleBuilder
from dataloader.transforms import rgb_clip
from engine.cli import main
from engine.streams import SPATIAL, StreamSpec, sample_options
from tests.helpers import SMALL_ARCH, single_thread
from utils.scores import load_npz


class DifferenceSampleBuilder(SampleBuilder):
    """|frame i+1 - frame i| style motion from RGB alone: 128 + (next - this) / 2, per channel."""

    modality = "rgb"
    in_channels = 3

    def build(self, read, num_frames, train):
        idx = self.positions(max(num_frames - 1, 1), train)
        frames = {}
        for i in np.unique(idx).tolist():
            this = read(i).astype(np.int16)
            nxt = read(min(i + 1, num_frames - 1)).astype(np.int16)
            frames[i] = (128 + (nxt - this) // 2).clip(0, 255).astype(np.uint8)
        height, width = frames[int(idx[0])].shape[:2]
        crops = self.crops(width, height, train)
        return rgb_clip(frames, idx, crops, self.crop_size), len(crops)


DIFFERENCE = StreamSpec(
    name="difference",
    description="a ResNet on RGB frame differences",
    sample_builder=lambda args: DifferenceSampleBuilder(**sample_options(args)),
    statistics=lambda channels: ([128.0] * channels, [64.0] * channels),
    defaults=dict(dropout=0.5, lr=0.01, epochs=1, lr_steps=[]),
)

FAST = [
    "--arch", SMALL_ARCH, "--pretrained", "none", "--crop-size", "32", "--num-segments", "2",
    "--test-snippets", "3", "--batch-size", "3", "--workers", "0", "--seed", "1",
]  # fmt: skip


one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def test_a_stream_defined_in_a_test_trains_evaluates_and_fuses(frame_root, tmp_path, capsys):
    record = tmp_path / "difference"
    common = ["--data-root", str(frame_root)] + FAST
    assert main(DIFFERENCE, [*common, "--record-dir", str(record)]) == 0
    ckpt = torch.load(record / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["stream"] == "difference" and ckpt["epoch"] == 1
    assert ckpt["args"]["dropout"] == 0.5 and ckpt["args"]["lr"] == 0.01  # the spec's defaults
    assert ckpt["model"]["mean"].tolist() == [128.0] * 3  # the spec's statistics, saved
    scores = load_npz(record / "video_scores.npz")
    assert scores.stream == "difference" and scores.scores.shape == (6, 3)
    assert (record / "confusion_matrix.png").is_file()

    # --evaluate through the same command line gives the same scores
    again = tmp_path / "again"
    main(DIFFERENCE, ["--evaluate", "--resume", str(record / "checkpoint.pth.tar"),
                      "--record-dir", str(again), "--workers", "0"])  # fmt: skip
    evaluated = load_npz(again / "eval_checkpoint_e1_n3_scores.npz")  # 3 test snippets, not 19
    np.testing.assert_allclose(evaluated.scores, scores.scores, 1e-5)

    # and its scores fuse with a spatial stream's
    spatial = tmp_path / "spatial"
    main(SPATIAL, [*common, "--epochs", "1", "--record-dir", str(spatial)])
    results = fusion.main(
        ["--spatial", str(spatial / "video_scores.npz")]
        + ["--stream", f"difference={record / 'video_scores.npz'}", "--weights", "1", "2"]
    )
    assert list(results) == ["spatial", "difference", "fused"]
    assert results["fused"]["videos"] == 6
