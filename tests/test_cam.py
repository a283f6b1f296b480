"""Grad-CAM (engine/cam.py): a motion stream trained on videos whose only moving object is a ball
in one corner looks at that corner."""

import dataclasses
import os

import numpy as np
import pytest
import torch
from torch import nn

from engine.cam import feature_layer, grad_cam
from engine.config import options_from_dict
from engine.inference import load_stream, memory_reader
from engine.loops import train_one_epoch
from engine.streams import MOTION
from extraction.settings import ExtractionSettings
from network.recognizer import build_recognizer
from tests.helpers import sample_in_memory, save_stream_checkpoint, single_thread
from tools.synthetic_actions import make_scene, render_clip

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
SIZE, FRAMES, SPEED = 64, 8, 2.5  # square frames: the test crop keeps the quarters in place
CENTRES = [(16, 16), (48, 16), (16, 48), (48, 48)]  # (x, y) of each quarter's ball
# Up, down, nothing moves: with a class of no motion, both directions need motion to be seen,
# so each has evidence of its own where the ball is (with two classes one could be "not up").
MOTIONS = ((0.0, -1.0), (0.0, 1.0), None)
SETTINGS = ExtractionSettings(short_side=0, bound=5.0, preset="fast", jpeg_quality=0)
SEED = int(os.environ.get("CAM_TEST_SEED", 0))


def corner_video(rng, quarter: int, motion) -> np.ndarray:
    """A textured ball moving in one quarter of a still textured background (or no ball)."""
    scene = make_scene(rng, (SIZE, SIZE), FRAMES)
    ball = make_scene(rng, (48, 48), FRAMES)  # a smaller ball: it stays in its quarter
    scene = dataclasses.replace(
        scene,
        disk=ball.disk * (motion is not None),
        texture=ball.texture,
        centre=np.array(CENTRES[quarter], float) + rng.uniform(-2, 2, 2),
        velocity=SPEED * np.array(motion or (0.0, 0.0)),
    )
    return render_clip(scene, "red", 1, rng)


@pytest.fixture(scope="module")
def motion_stream(tmp_path_factory):
    """A motion stream trained for a few steps on corner videos, saved and loaded as a checkpoint."""
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    builder = MOTION.sample_builder(options_from_dict(MOTION, _args()))
    stacks, labels = [], []
    for i in range(40):
        label = 2 if i % 5 == 4 else i % 2
        video = corner_video(rng, int(rng.integers(4)), MOTIONS[label])
        read, count = memory_reader(video, "flow", SETTINGS)
        stacks.append(builder(read, count, train=False)[0, :1])  # first stack, centre crop
        labels.append(label)
    config = dict(
        arch="resnet18", num_classes=3, in_channels=6, dropout=0.0, partial_bn=False,
        consensus="avg",
    )  # fmt: skip
    model = build_recognizer(**config, statistics=MOTION.statistics)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    for epoch in range(6):
        order = torch.randperm(len(stacks)).tolist()
        batches = [
            (torch.stack([stacks[j] for j in part]), torch.tensor([labels[j] for j in part]))
            for part in (order[b : b + 8] for b in range(0, len(order), 8))
        ]
        train_one_epoch(
            model, nn.CrossEntropyLoss(), optimizer, schedule, batches, torch.device("cpu"),
            epoch, clip_grad=0.0,
        )  # fmt: skip
    path = tmp_path_factory.mktemp("cam") / "motion.pth.tar"
    save_stream_checkpoint(path, "motion", model, ["Up", "Down", "Still"], **_args())
    return load_stream(path, "motion", torch.device("cpu"))


def _args() -> dict:
    return dict(
        crop_size=SIZE, num_segments=1, test_snippets=3, test_sequences=0, ten_crop=False,
        stack_length=3,
    )  # fmt: skip


@pytest.mark.parametrize("quarter, label", [(0, 0), (3, 1), (1, 1)])
def test_the_motion_map_peaks_in_the_corner_where_the_ball_moves(motion_stream, quarter, label):
    video = corner_video(np.random.default_rng([SEED, 100, quarter]), quarter, MOTIONS[label])
    sample = sample_in_memory(motion_stream, video, SETTINGS)  # predict's path: flow in memory
    maps = grad_cam(motion_stream.model, sample, label)  # where the evidence of its motion is
    assert maps.shape == (3, SIZE, SIZE) and maps.min() >= 0
    y, x = np.unravel_index(maps.mean(0).argmax(), (SIZE, SIZE))
    assert (int(x >= SIZE / 2) + 2 * int(y >= SIZE / 2)) == quarter, (x, y)


def test_the_explained_layer_is_the_last_feature_map_of_any_backbone():
    resnet = build_recognizer("resnet18", 3, pretrained="none", partial_bn=False)
    snippet = torch.zeros(1, 3, 64, 64)
    assert feature_layer(resnet.backbone, snippet) is resnet.backbone.layer4
    clip = build_recognizer("r2plus1d_18", 3, pretrained="none", partial_bn=False)
    assert feature_layer(clip.backbone, torch.zeros(1, 3, 4, 32, 32)) is clip.backbone.layer4
    plain = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.AdaptiveAvgPool2d(1)
    )
    assert feature_layer(plain, snippet) is plain[2]
    with pytest.raises(ValueError, match="no convolutional feature map"):
        feature_layer(nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 2)), snippet)
