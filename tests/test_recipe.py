"""The training recipe's defaults and switches (issue 11): what a real UCF101 run starts with."""

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from dataloader.samples import FlowSampleBuilder, RgbSampleBuilder
from dataloader.transforms import multiscale_crop
from engine.cli import parse_args
from engine.config import default_options, recipe_batch
from engine.optim import make_optimizer
from engine.streams import CLIP, MOTION, SPATIAL
from engine.trainer import accumulation_steps, batch_warning, describe_batch
from network.heads import SegmentConsensus
from network.recognizer import build_recognizer
from network.statistics import flow_statistics
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _args(frame_root, *argv, stream=SPATIAL):
    return parse_args(stream, ["--data-root", str(frame_root), *argv])[0]


# 1. Partial BN only with pretrained weights.
def test_partial_bn_defaults_to_on_only_with_pretrained_weights(frame_root, capsys):
    assert _args(frame_root).partial_bn is True  # --pretrained imagenet
    assert _args(frame_root, "--pretrained", "weights.pth").partial_bn is True
    assert _args(frame_root, "--pretrained", "none").partial_bn is False
    assert capsys.readouterr().err == ""
    assert _args(frame_root, "--pretrained", "none", "--partial-bn").partial_bn is True
    assert "warning: --partial-bn with --pretrained none" in capsys.readouterr().err
    assert _args(frame_root, "--no-partial-bn").partial_bn is False


# 2. TSN's flow statistics.
def test_flow_is_normalised_as_tsn():
    mean, std = flow_statistics(4)
    assert mean == pytest.approx([127.5] * 4) and std == pytest.approx([0.226 * 255] * 4)
    model = build_recognizer(
        "resnet18",
        num_classes=3,
        in_channels=4,
        dropout=0.0,
        partial_bn=False,
        statistics=flow_statistics,
    )
    x = torch.tensor([0, 128, 255, 64], dtype=torch.uint8).view(1, 4, 1, 1)
    expected = (x.float() / 255 - 0.5) / 0.226
    torch.testing.assert_close(model.normalise(x), expected, rtol=1e-5, atol=1e-5)


# 3. Per-stream learning-rate multipliers and decay.
def _groups(spec, in_channels):
    model = build_recognizer(
        "resnet18",
        num_classes=3,
        in_channels=in_channels,
        partial_bn=False,
        statistics=spec.statistics,
    )
    args = dataclasses.replace(default_options(spec), lr=0.01)
    optimizer = make_optimizer(model, args, spec.lr_mults)
    return model, {g["name"]: g for g in optimizer.param_groups}


def test_motion_first_conv_learns_5x_and_biases_2x_without_decay():
    model, groups = _groups(MOTION, 20)
    assert groups["first_conv"]["params"] == [model.backbone.conv1.weight]
    assert groups["first_conv"]["lr"] == pytest.approx(0.05)
    assert groups["weight"]["lr"] == pytest.approx(0.01)
    assert groups["weight"]["weight_decay"] == pytest.approx(5e-4)
    assert groups["head_bias"]["params"] == [model.head.fc.bias]  # the head's: --head-lr-mult
    assert groups["head_bias"]["lr"] == pytest.approx(0.02)
    assert groups["head_bias"]["weight_decay"] == 0 and groups["head_weight"]["lr"] == 0.01
    assert groups["norm"]["lr"] == pytest.approx(0.01) and groups["norm"]["weight_decay"] == 0
    every = [p for g in groups.values() for p in g["params"]]
    assert len(every) == len(set(map(id, every))) == len(list(model.parameters()))
    _, spatial = _groups(SPATIAL, 3)
    assert spatial["first_conv"]["lr"] == pytest.approx(0.01)
    assert spatial["head_bias"]["lr"] == pytest.approx(0.02)


# 4. Effective batch = processes x batch x accumulation steps; the recipe's 128 is what is kept.
def test_defaults_reach_tsns_effective_batch_and_accum_steps_is_checked(frame_root):
    for stream in (SPATIAL, MOTION):
        args = parse_args(stream, ["--data-root", str(frame_root)])[0]
        assert args.accum_steps is None and recipe_batch(stream) == 128 and args.lr == 0.001
        assert accumulation_steps(args.accum_steps, 128, 1, args.batch_size) == 4  # 32 x 4
    assert recipe_batch(CLIP) == 32  # the clip spec's 8 x 4
    with pytest.raises(UserError, match="--accum-steps must be at least 1"):
        _args(frame_root, "--accum-steps", "0")
    assert _args(frame_root, "--accum-steps", "2").accum_steps == 2


def test_accumulation_keeps_the_recipe_batch_under_torchrun_unless_given():
    # 8 GPUs x 32 = 256 already: no accumulation (it was 4: 1,024 videos per step).
    assert accumulation_steps(None, 128, 8, 32) == 1
    assert accumulation_steps(None, 128, 2, 16) == 4  # 2 x 16 x 4 = 128
    assert accumulation_steps(None, 128, 4, 32) == 1
    assert accumulation_steps(None, 128, 3, 32) == 1  # 96: the nearest
    assert accumulation_steps(None, 128, 1, 48) == 3  # 2.67 -> 3: 144
    assert accumulation_steps(None, 32, 1, 8) == 4  # the clip stream's 8 x 4
    assert accumulation_steps(2, 128, 8, 32) == 2  # an explicit --accum-steps wins
    line = describe_batch(8, 32, 1, 128, given=False)
    assert line.startswith("effective batch 8 process(es) x 32 videos x 1 accumulation steps = 256")
    assert "follows processes x batch" in line and "for 128" in line
    assert "--accum-steps given" in describe_batch(1, 32, 2, 128, given=True)


def test_an_effective_batch_larger_than_the_training_set_is_warned_with_the_recipes_batch():
    assert batch_warning(128, 9537, 1) is None
    # A few dozen videos: the small-data recipe's batch, the one docs/recipe.md's command passes.
    recipe = re.search(r"--batch-size (\d+) --accum-steps 1", (ROOT / "docs/recipe.md").read_text())
    warning = batch_warning(128, 20, 1)
    assert "larger than the 20 training videos" in warning and "one optimizer step" in warning
    assert f"--batch-size {recipe.group(1)} --accum-steps 1 (3 steps per epoch)" in warning
    assert "the small-data recipe does (docs/recipe.md" in warning
    # Fewer than two such batches: smaller, for two steps; two processes share the batch of 8.
    assert "--batch-size 6 --accum-steps 1 (2 steps per epoch)" in batch_warning(128, 12, 1)
    assert "--batch-size 3 --accum-steps 1 (2 steps per epoch)" in batch_warning(32, 12, 2)
    assert "--batch-size 4 --accum-steps 1 (5 steps per epoch)" in batch_warning(64, 40, 2)


# 5. Crop scales per stream, gradient clipping of tsn-pytorch, the classifier's initialisation.
def test_flow_crops_leave_out_the_066_scale_and_rgb_keeps_it():
    assert FlowSampleBuilder().scales == (1.0, 0.875, 0.75)
    assert RgbSampleBuilder().scales == (1.0, 0.875, 0.75, 0.66)
    g = torch.Generator().manual_seed(0)
    flow_sizes = {
        multiscale_crop(340, 256, g, scales=FlowSampleBuilder.scales).w for _ in range(300)
    }
    assert int(256 * 0.66) not in flow_sizes and flow_sizes <= {256, 224, 192}
    rgb_sizes = {multiscale_crop(340, 256, g, scales=RgbSampleBuilder.scales).w for _ in range(300)}
    assert int(256 * 0.66) in rgb_sizes


def test_gradient_clipping_defaults_to_tsn_pytorchs_20(frame_root):
    assert _args(frame_root).clip_grad == 20.0
    assert _args(frame_root, stream=MOTION).clip_grad == 20.0


def test_new_classifier_starts_as_tsn_normal_0_001_and_zero_bias():
    torch.manual_seed(0)
    head = SegmentConsensus(2048, 101, 0.8)
    assert head.fc.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert abs(head.fc.weight.mean().item()) < 1e-4
    assert torch.equal(head.fc.bias, torch.zeros(101))


# 8. Every switch can be turned off again, e.g. over a checkpoint's on resume or --evaluate.
def test_every_boolean_option_has_a_no_form(frame_root, tmp_path):
    from engine.cli import build_parser

    parser = build_parser(SPATIAL)
    switches = [a for a in parser._actions if a.nargs == 0 and a.dest != "help"]
    assert switches and all(any(o.startswith("--no-") for o in a.option_strings) for a in switches)
    ckpt = {"format": 2, "stream": "spatial", "epoch": 1, "model": {}}
    ckpt["args"] = dict(ten_crop=True, softmax_average=True, data_root=str(frame_root))
    torch.save(ckpt, tmp_path / "c.pth.tar")
    argv = ["--resume", str(tmp_path / "c.pth.tar"), "--evaluate"]
    args, _ = parse_args(SPATIAL, argv)
    assert args.ten_crop and args.softmax_average
    args, _ = parse_args(SPATIAL, [*argv, "--no-ten-crop", "--no-softmax-average"])
    assert not args.ten_crop and not args.softmax_average


# 10. OpenCV: requirements' floor, and no API newer than it in the code.
def test_opencv_floor_and_no_api_newer_than_it():
    floor = re.search(
        r"opencv-contrib-python-headless>=(\d+)\.(\d+)", (ROOT / "requirements.txt").read_text()
    )
    assert floor and (int(floor[1]), int(floor[2])) >= (4, 8)
    newer = {"IMREAD_COLOR_RGB", "IMREAD_COLOR_BGR"}  # OpenCV 4.11
    code = [p for p in ROOT.rglob("*.py") if "tests" not in p.parts and ".git" not in p.parts]
    for path in code:
        uses = re.findall(r"cv2\.(\w+)", path.read_text())
        assert not set(uses) & newer, path


def test_defaults_are_written_once_and_help_options_loop_and_models_agree(tmp_path):
    import inspect

    from dataloader.samples import SampleBuilder
    from engine.cli import build_parser
    from engine.config import RECIPE_ACCUM_STEPS, make_options
    from engine.loops import train_one_epoch
    from network.heads import RecurrentHead

    parser = build_parser(SPATIAL)  # what --help shows
    options = make_options(SPATIAL, data_root=str(tmp_path), pretrained="none")
    loop = inspect.signature(train_one_epoch).parameters
    builder = inspect.signature(SampleBuilder.__init__).parameters
    head = inspect.signature(RecurrentHead.__init__).parameters
    assert parser.get_default("clip_grad") == options.clip_grad == loop["clip_grad"].default == 20
    for key, value in (("num_segments", 3), ("test_snippets", 19), ("crop_size", 224)):
        assert parser.get_default(key) == getattr(options, key) == builder[key].default == value
    for key in ("rnn_hidden", "rnn_layers", "rnn_dropout", "bidirectional"):
        assert parser.get_default(key) == getattr(options, key) == head[key].default, key
    assert recipe_batch(SPATIAL) == parser.get_default("batch_size") * RECIPE_ACCUM_STEPS == 128
