import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._api import WeightsEnum

from engine.config import make_options
from engine.run import build_model, recognizer_config
from engine.streams import MOTION, SPATIAL
from network.recognizer import build_recognizer
from network.statistics import (
    flow_statistics,
    kinetics_statistics,
    rgb_statistics,
    weights_statistics,
)
from tests.helpers import SMALL_ARCH
from utils.errors import UserError


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision resnet18 state dict on disk, as a user's downloaded weights would be."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state


def test_output_shape_channels_and_new_classifier():
    model = build_recognizer(
        "resnet18", num_classes=7, in_channels=20, dropout=0.7, statistics=flow_statistics
    )
    assert model.backbone.conv1.weight.shape == (64, 20, 7, 7)
    assert model.head.fc.out_features == 7
    assert model.head.dropout.p == 0.7
    assert model(torch.randn(2, 3, 20, 32, 32)).shape == (2, 7)  # [videos, segments, C, H, W]


def test_local_weights_rgb_are_loaded_unchanged(resnet18_file):
    path, state = resnet18_file
    model = build_recognizer("resnet18", num_classes=5, in_channels=3, pretrained=str(path))
    loaded = model.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key


def test_cross_modality_averaging_for_flow(resnet18_file):
    path, state = resnet18_file
    model = build_recognizer(
        "resnet18", num_classes=5, in_channels=20, pretrained=str(path), statistics=flow_statistics
    )
    rgb = state["conv1.weight"]  # [64, 3, 7, 7]
    expected = rgb.mean(dim=1, keepdim=True).repeat(1, 20, 1, 1)
    assert torch.equal(model.backbone.conv1.weight.data, expected)
    assert torch.equal(model.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_imagenet_goes_through_torchvision_weights_api(monkeypatch, resnet18_file):
    path, state = resnet18_file
    asked = []

    def fake_get_state_dict(self, *args, **kwargs):
        asked.append(self)
        return state

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_get_state_dict)
    model = build_recognizer("resnet18", num_classes=4, in_channels=3, pretrained="imagenet")
    assert asked == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1]
    assert model.weights == "ResNet18_Weights.IMAGENET1K_V1"
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


def test_imagenet_means_v1_and_a_version_can_be_named(monkeypatch):
    """ResNet-50's DEFAULT is V2 (a later recipe); 'imagenet' keeps the V1 weights the
    two-stream and TSN figures were made with, and imagenet1k_v2 asks for V2."""
    asked = []
    state = torchvision.models.resnet50().state_dict()
    monkeypatch.setattr(
        WeightsEnum, "get_state_dict", lambda self, **kw: asked.append(self) or state
    )
    v1 = build_recognizer("resnet50", num_classes=3, pretrained="imagenet")
    v2 = build_recognizer("resnet50", num_classes=3, pretrained="IMAGENET1K_V2")
    weights = torchvision.models.ResNet50_Weights
    assert asked == [weights.IMAGENET1K_V1, weights.IMAGENET1K_V2]
    assert (v1.weights, v2.weights) == (
        "ResNet50_Weights.IMAGENET1K_V1",
        "ResNet50_Weights.IMAGENET1K_V2",
    )
    with pytest.raises(UserError, match="has no weights 'imagenet1k_v9'.*imagenet1k_v2"):
        build_recognizer("resnet50", pretrained="imagenet1k_v9")


def test_imagenet_download_failure_is_a_user_error(monkeypatch):
    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError, match="--pretrained PATH"):
        build_recognizer("resnet18", pretrained="imagenet")


def test_bad_weights_and_arch_are_user_errors(tmp_path, resnet18_file):
    path, _ = resnet18_file
    with pytest.raises(UserError, match="does not fit resnet50"):
        build_recognizer("resnet50", pretrained=str(path))
    with pytest.raises(UserError, match="not found"):
        build_recognizer("resnet18", pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="unknown --arch 'resnet9'; did you mean resnet"):
        build_recognizer("resnet9")
    with pytest.raises(UserError, match="cannot be a backbone here: its classifier is a conv"):
        build_recognizer("squeezenet1_0")
    with pytest.raises(UserError, match="is a 3D network"):
        build_recognizer("r3d_18", pretrained="imagenet1k_v1", in_channels=3)


def _bns(model):
    return [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]


def test_partial_bn_freezes_all_but_first_bn_and_survives_train():
    torch.manual_seed(0)
    model = build_recognizer("resnet18", num_classes=3, partial_bn=True)
    model.eval()
    model.train()
    bns = _bns(model)
    assert bns[0].training and bns[0].weight.requires_grad
    assert not any(bn.training for bn in bns[1:])
    assert not any(bn.weight.requires_grad or bn.bias.requires_grad for bn in bns[1:])
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(4, 1, 3, 32, 32) + 1.0)
    assert not torch.equal(bns[0].running_mean, before[0])
    assert all(torch.equal(bn.running_mean, b) for bn, b in zip(bns[1:], before[1:], strict=True))


def test_no_partial_bn_trains_every_bn():
    model = build_recognizer("resnet18", num_classes=3, partial_bn=False)
    model.train()
    assert all(bn.training and bn.weight.requires_grad for bn in _bns(model))


def test_avg_consensus_is_the_mean_of_the_snippets_logits_and_ignores_order():
    torch.manual_seed(0)
    model = build_recognizer("resnet18", num_classes=4, dropout=0.0, partial_bn=False).eval()
    x = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        video = model(x)
        snippets = model(x.flatten(0, 1)[:, None]).view(2, 3, 4)
        reversed_order = model(x.flip(1))
        chunked = model(x, chunk=2)
        soft = model(x, probabilities=True)
    torch.testing.assert_close(video, snippets.mean(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reversed_order, video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked, video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(soft, snippets.softmax(-1).mean(1), rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_an_earlier_format_is_refused_in_one_line(tmp_path):
    from utils.checkpoint import load_checkpoint

    model = build_recognizer("resnet18", num_classes=3, dropout=0.0)
    ckpt = {"format": 1, "stream": "motion", "arch": "resnet18", "classes": ["a", "b", "c"]}
    ckpt.update(in_channels=3, model=model.state_dict())  # StreamNet days: no model_config
    torch.save(ckpt, tmp_path / "old.pth.tar")
    with pytest.raises(UserError, match=r"old\.pth\.tar is a checkpoint of format 1 .*again"):
        load_checkpoint(tmp_path / "old.pth.tar")


def _scaled(transforms) -> list[float]:
    """A transform's mean then std, on the 0..255 scale of the model's input."""
    return [m * 255 for m in transforms.mean] + [s * 255 for s in transforms.std]


def _flat(statistics) -> list[float]:
    """(mean, std) -> mean then std; a model: its own."""
    if isinstance(statistics, nn.Module):
        return statistics.mean.tolist() + statistics.std.tolist()
    return list(statistics[0]) + list(statistics[1])


def test_a_model_from_python_takes_the_statistics_of_its_weights():
    """R(2+1)D-18 normalises as its Kinetics weights' transforms do, ResNet-18 as ImageNet's,
    even from scratch (the weights it would load); a flow model takes the flow statistics."""
    clip = build_recognizer("r2plus1d_18", num_classes=3, pretrained="none")
    kinetics = _scaled(torchvision.models.video.R2Plus1D_18_Weights.KINETICS400_V1.transforms())
    assert _flat(clip) == pytest.approx(kinetics)
    image = build_recognizer("resnet18", num_classes=3)
    imagenet = _scaled(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms())
    assert _flat(image) == pytest.approx(imagenet)
    assert image.mean.tolist() != pytest.approx(clip.mean.tolist())
    flow = build_recognizer("resnet18", 3, in_channels=4, statistics=flow_statistics)
    assert _flat(flow) == pytest.approx(_flat(flow_statistics(4)))
    with pytest.raises(ValueError, match="no stack of RGB frames.*flow_statistics"):
        build_recognizer("resnet18", 3, in_channels=20)  # a flow stack needs its statistics


def test_statistics_differ_by_family_and_follow_the_loaded_weights():
    video = torchvision.models.video
    for arch, weights in (("s3d", video.S3D_Weights), ("mvit_v1_b", video.MViT_V1_B_Weights),
                          ("swin3d_t", video.Swin3D_T_Weights)):  # fmt: skip
        assert _flat(weights_statistics(arch)) == pytest.approx(
            _scaled(weights.DEFAULT.transforms())
        )
    assert weights_statistics("mvit_v1_b")[1] == pytest.approx([0.225 * 255] * 3)
    assert _flat(weights_statistics("swin3d_t")) == pytest.approx(_flat(rgb_statistics(3)))
    # Weights whose transforms differ from their arch's default: the loaded ones count.
    features = torchvision.models.VGG16_Weights.IMAGENET1K_FEATURES
    mean, std = weights_statistics("vgg16", 6, features)  # two RGB frames stacked
    own = _scaled(features.transforms())
    assert mean + std == pytest.approx(own[:3] * 2 + own[3:] * 2)
    assert _flat(weights_statistics("c3d")) == pytest.approx(
        _flat(kinetics_statistics(3))
    )  # no torchvision's


def test_the_engine_builds_each_stream_with_its_statistics(tmp_path):
    cpu = torch.device("cpu")
    for spec, arch, channels, expected in (
        (MOTION, SMALL_ARCH, 20, flow_statistics(20)),
        (SPATIAL, SMALL_ARCH, 3, rgb_statistics(3)),
    ):
        options = make_options(spec, data_root=str(tmp_path), record_dir=str(tmp_path / "r"),
                               arch=arch, pretrained="none")  # fmt: skip
        model = build_model(spec, options, recognizer_config(options, 3, channels), None, cpu)
        assert _flat(model) == pytest.approx(_flat(expected))
