"""The flow-clip stream: its first convolution by cross-modality averaging for every 3D family,
its samples (flow clips at the clip stream's protocol, x inverted by a flip), and a run through
the engine that evaluation, fusion and prediction read."""

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import get_model

import fusion
from dataloader.samples import ClipSampleBuilder, FlowClipSampleBuilder
from engine.cli import main
from engine.streams import FLOW_CLIP
from network.backbones3d import C3D
from network.first_conv import cross_modality_state, input_conv, widen_input
from network.recognizer import build_recognizer
from network.statistics import FLOW_MEAN, flow_statistics
from tests.helpers import single_thread
from tools import extract_frames_flow, predict
from tools.synthetic_actions import generate
from utils.scores import load_npz, save_scores

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)

# Each family's first convolution, as torchvision (and network.backbones3d.C3D) name it.
FIRST_CONVS = {
    "c3d": "conv1",
    "r3d_18": "stem.0",
    "mc3_18": "stem.0",
    "r2plus1d_18": "stem.0",
    "s3d": "features.0.0.0",
    "mvit_v2_s": "conv_proj",
    "swin3d_t": "patch_embed.proj",
}


@pytest.mark.parametrize("arch", FIRST_CONVS)
def test_first_conv_is_the_rgb_mean_and_every_other_tensor_is_the_sources(arch):
    """Random weights of torchvision's own constructor (no download) stand for the chosen ones."""
    torch.manual_seed(0)
    source = C3D() if arch == "c3d" else get_model(arch)
    rgb = source.state_dict()
    net = copy.deepcopy(source)
    name = widen_input(net, 2, nn.Conv3d)
    assert name == FIRST_CONVS[arch] == input_conv(source, nn.Conv3d)[0]
    net.load_state_dict(cross_modality_state(rgb, name, 2))
    conv = net.get_submodule(name)
    assert conv.in_channels == 2 and isinstance(conv, nn.Conv3d)
    loaded = net.state_dict()
    assert loaded.keys() == rgb.keys()
    for key, value in loaded.items():
        if key == f"{name}.weight":  # [out, 3, t, h, w] -> the mean over RGB, twice
            mean = rgb[key].mean(dim=1, keepdim=True)
            assert value.shape == (rgb[key].shape[0], 2, *rgb[key].shape[2:])
            assert torch.equal(value, mean.expand_as(value))
        else:  # the bias too, where there is one (C3D, MViT, Swin3D)
            assert torch.equal(value, rgb[key]), key


def test_flow_recognizer_from_a_kinetics_style_state_file(tmp_path):
    """--pretrained PATH: a state dict of torchvision's constructor, classifier included, makes
    a flow network whose first convolution is its average and the rest itself."""
    torch.manual_seed(1)
    source = get_model("mc3_18")
    path = tmp_path / "mc3.pth"
    torch.save(source.state_dict(), path)
    model = build_recognizer(
        "mc3_18", 5, in_channels=2, pretrained=str(path), statistics=flow_statistics
    )
    state = source.state_dict()
    loaded = model.backbone.state_dict()
    stem = state["stem.0.weight"]
    assert torch.equal(
        loaded["stem.0.weight"], stem.mean(1, keepdim=True).expand(-1, 2, -1, -1, -1)
    )
    assert all(torch.equal(loaded[k], state[k]) for k in loaded if k != "stem.0.weight")
    assert model.mean.tolist() == [FLOW_MEAN] * 2
    with torch.no_grad():
        clips = torch.randint(0, 256, (1, 2, 2, 4, 32, 32), dtype=torch.uint8)
        assert model.eval()(clips).shape == (1, 5)


def _flow_reader(width=40, height=32):
    """Flow frame i: x = 100 + i everywhere, y = a left-to-right ramp plus i."""
    ramp = np.tile(np.arange(0, 4 * width, 4, dtype=np.uint8), (height, 1))

    def read(i, half=False):
        assert not half  # flow is read at full size
        return np.full((height, width), 100 + i, np.uint8), ramp + np.uint8(i)

    return read


def test_flow_clips_follow_the_clip_protocol_and_a_flip_reverses_x():
    options = dict(
        clip_length=4, frame_stride=2, short_side=40, crop_size=32, test_snippets=3, num_segments=1
    )
    builder = FlowClipSampleBuilder(**options)
    assert (builder.modality, builder.in_channels) == ("flow", 2)
    rgb = ClipSampleBuilder(**options)
    np.testing.assert_array_equal(builder.indices(30, False), rgb.indices(30, False))
    clips = builder(_flow_reader(), 30, train=False)  # [crops, N, 2, T, S, S]
    assert clips.shape == (1, 3, 2, 4, 32, 32) and clips.dtype == torch.uint8
    for clip, ids in zip(clips[0], builder.indices(30, False).tolist(), strict=True):
        assert clip[0].float().mean(dim=(1, 2)).tolist() == [100 + i for i in ids]  # x
        assert (clip[1, :, :, -1] > clip[1, :, :, 0]).all()  # y: the ramp, not mirrored
    assert builder(_flow_reader(), 30, train=False).equal(clips)

    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        (clip,) = builder(_flow_reader(), 30, train=True)  # [2, T, S, S]
        ids = [int(v) - 100 for v in clip[0, :, 0, 0].tolist()]
        flipped = bool((clip[1, :, :, -1] < clip[1, :, :, 0]).all())  # the ramp runs backwards
        if flipped:  # x-flow reflected around 128: 128 + d becomes 128 - d
            ids = [156 - i for i in (int(v) for v in clip[0, :, 0, 0].tolist())]
        seen.add(flipped)
        assert ids == [ids[0] + 2 * t for t in range(4)] and 0 <= ids[0] <= 30 - 7
    assert seen == {False, True}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synthetic videos (tools/synthetic_actions.py), their frames and flow, one epoch of the
    flow-clip stream on them."""
    base = tmp_path_factory.mktemp("flow_clip")
    data = generate(base / "data", 2, 1, (64, 48), (12, 12), seed=1)
    frames = base / "frames"
    extract_frames_flow.main(
        ["--videos", str(data.videos_dir), "--out", str(frames), "--short-side", "48"]
        + ["--workers", "1", "--preset", "fast"]
    )
    argv = ["--data-root", str(frames), "--splits-dir", str(data.splits_dir)]
    argv += ["--arch", "mc3_18", "--pretrained", "none", "--crop-size", "16"]
    argv += ["--clip-short-side", "24", "--clip-length", "4", "--test-clips", "2"]
    argv += ["--batch-size", "4", "--epochs", "1", "--workers", "0", "--seed", "1"]
    assert main(FLOW_CLIP, [*argv, "--record-dir", str(base / "flow_clip")]) == 0
    return base, data


def test_flow_clip_trains_evaluates_predicts_and_fuses_with_the_other_streams(trained, capsys):
    base, data = trained
    record = base / "flow_clip"
    ckpt = torch.load(record / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["stream"] == "flow_clip" and ckpt["model_config"]["in_channels"] == 2
    scores = load_npz(record / "video_scores.npz")
    assert scores.stream == "flow_clip" and scores.scores.shape == (4, 4)

    main(FLOW_CLIP, ["--evaluate", "--resume", str(record / "checkpoint.pth.tar"),
                     "--record-dir", str(base / "again"), "--workers", "0"])  # fmt: skip
    (evaluated,) = (base / "again").glob("eval_*_scores.npz")
    np.testing.assert_allclose(load_npz(evaluated).scores, scores.scores, rtol=1e-4, atol=1e-5)

    # predict computes the flow of the video file in memory: what evaluation scored
    test = next(c for c in data.clips if not c.train)
    result = predict.main([str(test.path), "--flow-clip", str(record / "checkpoint.pth.tar")])
    row = list(scores.videos).index(test.name)
    expected = torch.softmax(torch.from_numpy(scores.scores[row]).double(), 0).numpy()
    np.testing.assert_allclose(result["flow_clip"], expected, atol=1e-5)

    # spatial, motion, clip and flow-clip in one fusion.py call, weights tuned on validation
    rng = np.random.default_rng(0)
    val_videos = [f"v_{scores.classes[c]}_g09_c0{i}" for i, c in enumerate(scores.labels)]
    given = {}
    for name in ("spatial", "motion", "clip", "flow_clip"):
        for split, videos in (("test", scores.videos), ("val", val_videos)):
            path = given[name, split] = base / f"{name}_{split}.npz"
            drawn = rng.normal(size=scores.scores.shape).astype(np.float32)
            own = scores.scores if (name, split) == ("flow_clip", "test") else drawn
            save_scores(path, videos=videos, labels=scores.labels, classes=scores.classes,
                        scores=own, stream=name, split=1, epoch=1)  # fmt: skip
    argv = ["--spatial", str(given["spatial", "test"]), "--motion", str(given["motion", "test"])]
    argv += ["--stream", f"clip={given['clip', 'test']}"]
    argv += ["--stream", f"flow_clip={given['flow_clip', 'test']}", "--tune-weights"]
    for name in ("spatial", "motion", "clip", "flow_clip"):
        argv += ["--val", f"{name}={given[name, 'val']}"]
    results = fusion.main([*argv, "--json", str(base / "fusion.json")])
    assert list(results) == ["spatial", "motion", "clip", "flow_clip", "fused"]
    chosen = json.loads((base / "fusion_weights.json").read_text())
    assert len(chosen["weights"]) == 4 and sum(chosen["weights"]) == pytest.approx(1.0)
