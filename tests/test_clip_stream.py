"""The clip stream: 3D backbones, clip sampling, and a run through the engine that fusion reads."""

import numpy as np
import pytest
import torch
from torchvision.models import get_model_weights

import fusion
from dataloader.datasets import FrameDataset
from dataloader.samples import ClipSampleBuilder
from engine.cli import main, parse_args
from engine.streams import CLIP, SPATIAL
from network.backbones3d import C3D, build_backbone3d
from network.recognizer import build_recognizer
from network.statistics import kinetics_statistics
from tests.helpers import extract_real_clips, single_thread, write_coded_video
from utils.errors import UserError
from utils.scores import load_npz, save_scores

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def _config(arch, classes=3):
    return dict(
        arch=arch, num_classes=classes, in_channels=3, dropout=0.5, partial_bn=False,
        consensus="avg",
    )  # fmt: skip


@pytest.mark.parametrize("arch", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_video_resnets_train_on_a_tiny_clip(arch):
    torch.manual_seed(0)
    model = build_recognizer(**_config(arch))
    clips = torch.randint(0, 256, (2, 2, 3, 4, 32, 32), dtype=torch.uint8)  # [B, K, 3, T, S, S]
    out = model(clips)
    assert out.shape == (2, 3)
    out.sum().backward()
    first = model.backbone.stem[0].weight
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_c3d_is_the_papers_network():
    net = C3D(num_classes=101)
    convs = [(name, m) for name, m in net.named_children() if isinstance(m, torch.nn.Conv3d)]
    assert [m.out_channels for _, m in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all(m.kernel_size == (3, 3, 3) for _, m in convs)
    pools = [m for m in net.children() if isinstance(m, torch.nn.MaxPool3d)]
    assert [p.kernel_size for p in pools] == [(1, 2, 2), 2, 2, 2, 2]
    assert pools[-1].padding == (0, 1, 1)
    assert (net.fc6.in_features, net.fc6.out_features, net.fc7.out_features) == (8192, 4096, 4096)
    count = sum(p.numel() for p in net.parameters())
    assert 78.0e6 < count < 78.6e6  # "about 78 M" with 101 classes: 78,409,573
    built = build_backbone3d("c3d")
    backbone, features = built.net, built.features
    backbone.eval()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 16, 112, 112)).shape == (1, features) == (1, 4096)
    with pytest.raises(ValueError, match="16 x 112 x 112"):
        backbone(torch.zeros(1, 3, 8, 112, 112))


def test_c3d_stream_drops_fc6_and_fc7_once_each():
    """Tran et al. 2015: dropout after fc6 and after fc7, once; the head's --dropout is fc7's."""
    model = build_recognizer("c3d", 5, dropout=0.5, partial_bn=False)
    calls = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout):
            module.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    model.train()
    with torch.no_grad():
        model(torch.zeros(1, 1, 3, 16, 112, 112, dtype=torch.uint8))
    assert calls == ["backbone.net.dropout", "head.dropout"], calls  # after fc6, after fc7


def test_pretrained_file_kinetics_and_their_errors(tmp_path, monkeypatch):
    torch.manual_seed(1)
    source = build_backbone3d("mc3_18").net
    path = tmp_path / "mc3.pth"
    torch.save({"state_dict": {**source.state_dict(), "fc.weight": torch.zeros(400, 512)}}, path)
    loaded = build_backbone3d("mc3_18", pretrained=str(path)).net
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(UserError, match="does not fit r3d_18"):
        build_backbone3d("r3d_18", pretrained=str(path))

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(get_model_weights("mc3_18"), "get_state_dict", offline)
    with pytest.raises(UserError, match="KINETICS400_V1 weights of mc3_18.*--pretrained PATH"):
        build_backbone3d("mc3_18", pretrained="kinetics")
    with pytest.raises(UserError, match="no C3D weights"):
        build_backbone3d("c3d", pretrained="kinetics")


def frame_ids(clip: torch.Tensor) -> list[int]:
    """[3, T, S, S] frames of value 8*i -> their indices i."""
    return [round(v / 8) for v in clip.float().mean(dim=(0, 2, 3)).tolist()]


def test_clips_are_the_exact_frames(tmp_path):
    video = write_coded_video(tmp_path, "v_A_g01_c01", 30)
    options = dict(clip_length=4, frame_stride=2, short_side=40, crop_size=16)
    test = FrameDataset(tmp_path, [video], False, ClipSampleBuilder(test_snippets=3, **options))
    clips, _ = test[0]
    assert clips.shape == (1, 3, 3, 4, 16, 16) and clips.dtype == torch.uint8
    # 30 - 3 * 2 = 24 starts; uniform centres 4, 12, 20; every 2nd frame
    assert [frame_ids(c) for c in clips[0]] == [[4, 6, 8, 10], [12, 14, 16, 18], [20, 22, 24, 26]]
    ten = FrameDataset(tmp_path, [video], False, ClipSampleBuilder(ten_crop=True, **options))
    assert ten[0][0].shape == (10, 19, 3, 4, 16, 16)

    train = FrameDataset(tmp_path, [video], True, ClipSampleBuilder(num_segments=2, **options))
    torch.manual_seed(0)
    for _ in range(20):
        clips, _ = train[0]
        assert clips.shape == (2, 3, 4, 16, 16)
        first, second = (frame_ids(c) for c in clips)
        assert first[0] < 12 <= second[0] < 24  # one start in each half of the 24 starts
        for ids in (first, second):
            assert ids == [ids[0] + 2 * t for t in range(4)]

    short = write_coded_video(tmp_path, "v_B_g01_c01", 3)  # shorter than a clip
    clips, _ = FrameDataset(
        tmp_path, [short], False, ClipSampleBuilder(test_snippets=2, **options)
    )[0]
    assert [frame_ids(c) for c in clips[0]] == [[0, 2, 2, 2]] * 2


def test_clip_options(frame_root):
    args, _ = parse_args(CLIP, ["--data-root", str(frame_root)])
    assert (args.arch, args.pretrained, args.crop_size) == ("r2plus1d_18", "kinetics", 112)
    assert (args.num_segments, args.test_snippets, args.stream["clip_length"]) == (1, 10, 16)
    given, _ = parse_args(CLIP, ["--data-root", str(frame_root), "--test-clips", "4"])
    assert given.test_snippets == 4
    with pytest.raises(UserError, match="c3d takes clips of exactly 16 x 112 x 112"):
        parse_args(CLIP, ["--data-root", str(frame_root), "--arch", "c3d", "--clip-length", "8"])
    with pytest.raises(UserError, match="is a 3D network"):  # 3D networks: the clip stream only
        parse_args(SPATIAL, ["--data-root", str(frame_root), "--arch", "r3d_18"])


FAST = [
    "--arch", "mc3_18", "--pretrained", "none", "--crop-size", "32", "--clip-short-side", "40",
    "--clip-length", "4", "--test-clips", "2", "--batch-size", "3", "--epochs", "1",
    "--workers", "0", "--seed", "1",
]  # fmt: skip


def test_clip_stream_trains_evaluates_and_fuses(frame_root, tmp_path):
    record = tmp_path / "clip"
    assert main(CLIP, ["--data-root", str(frame_root), "--record-dir", str(record), *FAST]) == 0
    ckpt = torch.load(record / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["stream"] == "clip" and ckpt["model_config"]["arch"] == "mc3_18"
    assert ckpt["model"]["mean"].tolist() == pytest.approx(kinetics_statistics(3)[0])
    scores = load_npz(record / "video_scores.npz")
    assert scores.stream == "clip" and scores.scores.shape == (6, 3)

    again = tmp_path / "again"
    main(CLIP, ["--evaluate", "--resume", str(record / "checkpoint.pth.tar"),
                "--record-dir", str(again), "--workers", "0"])  # fmt: skip
    (evaluated,) = again.glob("eval_*_scores.npz")
    np.testing.assert_allclose(load_npz(evaluated).scores, scores.scores, rtol=1e-4, atol=1e-5)

    # a spatial score file on the same videos; the fusion is the weighted average by hand
    rng = np.random.default_rng(0)
    spatial = rng.normal(size=scores.scores.shape).astype(np.float32)
    save_scores(
        tmp_path / "spatial.npz", videos=scores.videos, labels=scores.labels,
        classes=scores.classes, scores=spatial, stream="spatial", split=1, epoch=1,
    )  # fmt: skip
    clip = record / "video_scores.npz"
    results = fusion.main(
        ["--spatial", str(tmp_path / "spatial.npz"), "--stream", f"clip={clip}"]
        + ["--weights", "1", "3"]
    )
    assert list(results) == ["spatial", "clip", "fused"] and results["fused"]["videos"] == 6
    by_hand = ((spatial + 3 * scores.scores) / 4).argmax(1)
    assert results["fused"]["top1"] == pytest.approx(100 * np.mean(by_hand == scores.labels))


def test_clip_checkpoint_resumes_bit_identically(frame_root, tmp_path):
    common = ["--data-root", str(frame_root), *FAST, "--accum-steps", "1"]
    main(CLIP, [*common, "--epochs", "2", "--record-dir", str(tmp_path / "straight")])
    main(CLIP, [*common, "--epochs", "1", "--record-dir", str(tmp_path / "resumed")])
    ckpt = tmp_path / "resumed" / "checkpoint.pth.tar"
    main(CLIP, ["--resume", str(ckpt), "--epochs", "2", "--workers", "0"])
    straight = torch.load(tmp_path / "straight" / "checkpoint.pth.tar", weights_only=True)
    resumed = torch.load(ckpt, weights_only=True)
    assert resumed["epoch"] == 2 and straight["model"].keys() == resumed["model"].keys()
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_clip_stream_trains_on_frames_of_real_clips(shared_data, tmp_path):
    """Real UCF101 clips -> extraction tool -> one short epoch of the clip stream."""
    root, splits, chosen = extract_real_clips(shared_data, tmp_path)
    record = tmp_path / "clip"
    argv = ["--data-root", str(root), "--splits-dir", str(splits), "--record-dir", str(record)]
    main(CLIP, [*argv, *FAST, "--batch-size", "2"])
    scores = load_npz(record / "video_scores.npz")
    assert scores.scores.shape == (2, 101) and np.isfinite(scores.scores).all()
    assert sorted(scores.videos) == sorted(chosen[1::2])
