"""The new video families through the toolkit's other paths (issue 34, point 4): tools/predict.py's
windows and timeline with a transformer, and a training step under DistributedDataParallel."""

import copy
import csv

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.special import softmax
from torch import nn

from engine import distributed
from engine.config import make_options
from engine.inference import StreamModel
from engine.loops import train_one_epoch
from engine.streams import CLIP, FLOW_CLIP
from extraction.decode import decode_video
from extraction.settings import ExtractionSettings
from network.recognizer import build_recognizer
from tests.helpers import free_port, sample_in_memory, save_stream_checkpoint, single_thread
from tools import predict
from tools.synthetic_actions import generate

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
SETTINGS = ExtractionSettings(short_side=48, bound=20.0, preset="fast", jpeg_quality=95)


def test_predict_scores_a_swin3d_clip_stream_in_windows_and_draws_its_timeline(tmp_path):
    """Swin3D-T (random weights, 2 x 16 x 16 clips, no gradients) in three windows: each timeline
    row is its window's frames sampled as evaluation samples a video, through the model; the
    result is the windows' mean logits' softmax."""
    data = generate(tmp_path / "data", 1, 1, (64, 48), (12, 12), seed=2)
    video = data.clips[0].path  # 12 frames at 25 fps: 0.48 s
    torch.manual_seed(0)
    model = build_recognizer("swin3d_t", 4, dropout=0.5, partial_bn=False).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 0.1)  # probabilities unlike each other's
    ckpt = save_stream_checkpoint(
        tmp_path / "swin3d.pth.tar", "clip", model, data.classes, SETTINGS.as_dict(),
        crop_size=16, clip_short_side=20, clip_length=2, test_snippets=2,
    )  # fmt: skip
    out = tmp_path / "timeline.csv"
    argv = [str(video), "--clip", str(ckpt), "--device", "cpu", "--top", "4"]
    result = predict.main([*argv, "--timeline", str(out), "--window", "0.24", "--stride", "0.12"])
    rows = list(csv.DictReader(out.open()))
    assert result["windows"] == len(rows) == 3
    assert [(r["start"], r["end"]) for r in rows] == [
        ("0.00", "0.24"), ("0.12", "0.36"), ("0.24", "0.48")
    ]  # fmt: skip
    classes = result["classes"]
    probs = np.array([[_shown(row, c) for c in classes] for row in rows])  # as written
    args = torch.load(ckpt, weights_only=True)["args"]
    stream = StreamModel("clip", ckpt, model, classes, "swin3d_t", 1, args)  # the one loaded
    frames = decode_video(video, None).frames
    for row, start in zip(probs, (0, 3, 6), strict=True):
        with torch.no_grad():
            sample = sample_in_memory(stream, frames[start : start + 6], SETTINGS)
            logits = model(sample).mean(dim=0).double().numpy()
        np.testing.assert_allclose(row, softmax(logits), atol=1e-4)
    assert np.ptp(probs, axis=0).max() > 1e-3  # the windows differ
    np.testing.assert_allclose(result["clip"], softmax(np.log(probs).mean(axis=0)), atol=1e-3)
    with Image.open(tmp_path / "timeline.png") as image:
        assert image.width > 600
    assert (tmp_path / "timeline_segments.csv").read_text().startswith("start,end")


def _shown(row: dict, name: str) -> float:
    """A class's probability in a timeline row (its top-k columns, k = all classes)."""
    k = next(k for k in range(1, 5) if row[f"clip_class{k}"] == name)
    return float(row[f"clip_prob{k}"])


def _two_steps(model, channels: int) -> dict:
    """Two SGD steps (batches of 2 clips of 2 x 16 x 16) through the engine's training loop."""
    generator = torch.Generator().manual_seed(1)
    shape = (2, 1, channels, 2, 16, 16)
    batches = [
        (torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator), torch.tensor([0, 3]))
        for _ in range(2)
    ]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    torch.manual_seed(2)  # Swin3D's stochastic depth draws the same in both runs
    return train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, schedule, batches,
                           torch.device("cpu"), 0, clip_grad=0.0)  # fmt: skip


@pytest.mark.parametrize(
    "spec, arch", [(CLIP, "swin3d_t"), (FLOW_CLIP, "mc3_18")], ids=["swin3d_t", "flow_clip"]
)
def test_a_video_model_trains_under_ddp_as_it_does_alone(spec, arch, tmp_path, monkeypatch):
    """torchrun's environment for one gloo process, joined and wrapped by engine.distributed as a
    run is: DistributedDataParallel takes the model's parameters and buffers, two steps give the
    plain model's weights, and every parameter gets its gradient each step (DDP of two or more
    processes stops at a parameter without one; one process does not check it)."""
    env = dict(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    for key, value in dict(env, MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    options = make_options(spec, data_root=str(tmp_path), arch=arch, device="cpu", dist_timeout=30)
    channels = spec.sample_builder(options).in_channels
    torch.manual_seed(0)
    plain = build_recognizer(arch, 4, in_channels=channels, dropout=0.0, partial_bn=False,
                             statistics=spec.statistics)  # fmt: skip
    start, twin = copy.deepcopy(plain.state_dict()), copy.deepcopy(plain)
    graded = []
    for name, parameter in twin.named_parameters():
        parameter.register_post_accumulate_grad_hook(lambda _, name=name: graded.append(name))
    d, device = distributed.setup(options)
    try:
        wrapped = distributed.wrap(twin, d, device)
        assert isinstance(wrapped, nn.parallel.DistributedDataParallel)
        stats = _two_steps(wrapped, channels)
    finally:
        distributed.cleanup()
    assert stats == pytest.approx(_two_steps(plain, channels) | {"seconds": stats["seconds"]})
    trained, alone = twin.state_dict(), plain.state_dict()
    for name, value in alone.items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6, msg=name)
    names = [name for name, parameter in twin.named_parameters() if parameter.requires_grad]
    assert sorted(graded) == sorted(names * 2)
    first = next(name for name in names if name.endswith("weight"))  # the input layer
    for name in (first, "head.fc.weight"):
        assert not torch.equal(alone[name], start[name]), f"{name} did not learn"
