"""Any torchvision video model in the clip stream: built, sized, weighted and explained (issue 34)."""

import pytest
import torch
from torchvision.models import get_model, get_model_weights

from engine.cam import grad_cam
from engine.cli import build_parser, main, parse_args
from engine.device import autocast
from engine.streams import CLIP
from network.archs import clip_archs
from network.backbones3d import build_backbone3d
from network.recognizer import build_recognizer
from network.statistics import IMAGENET_MEAN, KINETICS_STD, weights_statistics
from network.weights import weights_member
from tests.helpers import single_thread
from utils.errors import UserError

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def _clips(batch, clips, length, size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, clips, 3, length, size, size)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def _model(arch, **options):
    torch.manual_seed(0)
    return build_recognizer(arch, 4, dropout=0.5, partial_bn=False, **options).eval()


# Each family at the smallest input it takes: its classifier found and replaced, whatever its
# name or kind, and the features the head reads pooled to [N, D].
FAMILIES = {
    "r3d_18": ("fc", 512, (1, 16)),  # Linear fc
    "s3d": ("classifier", 1024, (14, 224)),  # Sequential(Dropout, 1x1x1 Conv3d)
    "swin3d_t": ("head", 768, (1, 8)),  # Linear head; it pads any input to its patches
}


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_each_family_classifies_through_the_streams_head(arch):
    name, size, (length, crop) = FAMILIES[arch]
    model = _model(arch)
    assert isinstance(getattr(model.backbone, name), torch.nn.Identity)
    assert model.head.fc.in_features == size
    clips = _clips(1, 1, length, crop)
    with torch.no_grad():
        assert model.features(clips[0]).shape == (1, size)
        assert model(clips).shape == (1, 4)


def test_mvit_at_its_fixed_size_in_chunks():
    """MViT (Sequential head of Dropout and Linear) at exactly 16 x 224 x 224, --eval-chunk's
    path: one no-grad forward (a training step takes ~9 s a core; bf16 on a CPU ten times that:
    autocast is held on Swin3D below)."""
    model = _model("mvit_v2_s")
    assert isinstance(model.backbone.head, torch.nn.Identity)
    with torch.no_grad():
        out = model(_clips(1, 1, 16, 224), chunk=1)
        assert out.shape == (1, 4) and torch.isfinite(out).all()
        with pytest.raises(RuntimeError):
            model(_clips(1, 1, 8, 224))  # why the stream refuses other sizes (below)


def test_swin3d_chunks_amp_and_grad_cam_on_its_token_maps():
    model = _model("swin3d_t")
    clips = _clips(1, 3, 2, 32)
    with torch.no_grad():
        whole, chunked = model(clips), model(clips, chunk=1)
        with autocast(torch.device("cpu"), "bf16"):
            half = model(clips).float()
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=1e-4)
    assert (half - whole).abs().max() < 0.1 * whole.abs().max() + 0.05
    maps = grad_cam(model, clips, 2)  # tokens of the last stage laid out as T x H x W maps
    assert maps.shape == (3, 32, 32) and (maps >= 0).all() and maps.max() > 0


def test_swin3d_compiles_as_the_engine_compiles_it():
    """--compile calls ``backbone.compile()``: torch.compile's tracer (the eager backend here;
    inductor would take minutes on a CPU) gives Swin3D-T's logits and gradients unchanged."""
    model = _model("swin3d_t").train()
    compiled = _model("swin3d_t").train()
    compiled.backbone.compile(backend="eager")
    clips = _clips(2, 1, 2, 16)
    for net in (model, compiled):  # the same stochastic depth and dropout draws in both
        torch.manual_seed(1)
        net(clips).logsumexp(1).sum().backward()
    for (name, a), b in zip(model.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_weights_from_torchvisions_constructor_and_the_kinetics_enum(tmp_path, monkeypatch):
    torch.manual_seed(3)
    state = get_model("swin3d_t").state_dict()  # as torchvision's own constructor saves it
    path = tmp_path / "swin3d_t.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match="does not fit r3d_18"):
        build_backbone3d("r3d_18", pretrained=str(path))
    # Kinetics: the V1 weights, or a version by name in any case; nothing fetched.
    enum = get_model_weights("swin3d_t")
    monkeypatch.setattr(enum, "get_state_dict", lambda self, **kwargs: state)
    model = build_recognizer("swin3d_t", 4, pretrained="kinetics")
    assert model.weights == "Swin3D_T_Weights.KINETICS400_V1"
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("head."))
    assert model.mean.tolist() == pytest.approx([m * 255 for m in IMAGENET_MEAN])  # Swin3D's
    named = weights_member("swin3d_b", "KINETICS400_imagenet22k_V1", "kinetics")
    assert named.name == "KINETICS400_IMAGENET22K_V1"
    assert weights_member("swin3d_b", "kinetics", "kinetics").name == "KINETICS400_V1"
    with pytest.raises(UserError, match="kinetics400_imagenet22k_v1"):
        weights_member("swin3d_b", "kinetics400_v2", "kinetics")
    assert weights_statistics("mvit_v1_b")[0] == pytest.approx([0.45 * 255] * 3)
    assert weights_statistics("s3d")[1] == pytest.approx([s * 255 for s in KINETICS_STD])


def test_the_command_line_names_sizes_and_refuses(frame_root):
    help_text = " ".join(build_parser(CLIP).format_help().split())
    for arch in clip_archs():  # every one of torchvision's video models, by name or family
        assert arch in help_text or arch.rsplit("_", 1)[0] in help_text, arch
    root = ["--data-root", str(frame_root)]
    mvit, _ = parse_args(CLIP, [*root, "--arch", "mvit_v2_s"])
    assert (mvit.crop_size, mvit.stream["clip_length"], mvit.stream["clip_short_side"]) == (
        224, 16, 256)  # fmt: skip
    with pytest.raises(UserError, match="exactly 16 x 224 x 224.*--clip-length 16 --crop-size 224"):
        parse_args(CLIP, [*root, "--arch", "mvit_v1_b", "--crop-size", "112"])
    with pytest.raises(UserError, match="at least 14 frames.*--clip-length 14 or more"):
        parse_args(CLIP, [*root, "--arch", "s3d", "--clip-length", "8"])
    with pytest.raises(UserError, match="did you mean swin3d_t"):
        parse_args(CLIP, [*root, "--arch", "swin3d_tt"])
    with pytest.raises(UserError, match="2-D network"):
        parse_args(CLIP, [*root, "--arch", "resnet18"])
    given, _ = parse_args(CLIP, [*root, "--arch", "s3d", "--crop-size", "256"])
    assert (given.crop_size, given.stream["clip_length"]) == (256, 16)


def test_a_swin3d_stream_trains_from_a_file_and_resumes(frame_root, tmp_path, capsys):
    path = tmp_path / "swin3d_t.pth"
    torch.manual_seed(4)
    torch.save(get_model("swin3d_t").state_dict(), path)
    record = tmp_path / "clip"
    options = [
        "--data-root", str(frame_root), "--record-dir", str(record), "--arch", "swin3d_t",
        "--pretrained", str(path), "--crop-size", "16", "--clip-short-side", "20",
        "--clip-length", "2", "--test-clips", "1", "--batch-size", "8", "--epochs", "1",
        "--workers", "0", "--eval-chunk", "1",
    ]  # fmt: skip
    assert main(CLIP, options) == 0
    out = capsys.readouterr().out
    assert f"swin3d_t, initialised from file {path}" in out
    assert "swin3d_t takes clips of any length and size" in out
    checkpoint = str(record / "checkpoint.pth.tar")
    assert main(CLIP, ["--resume", checkpoint, "--evaluate", "--workers", "0"]) == 0
