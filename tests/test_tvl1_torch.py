"""PyTorch TV-L1 (dataloader/tvl1_torch.py): known motion, agreement with OpenCV, batching."""

from itertools import islice

import av
import cv2
import numpy as np
import pytest
import torch

from dataloader.tvl1_torch import TorchTVL1, _median, _Scratch, tvl1_flow
from tests.helpers import SHARED_DATA

WIDTH, HEIGHT = 64, 48
SHIFT = (1.5, -1.0)  # px: a pixel of the first frame at (x, y) is at (x + 1.5, y - 1) in the next
SHORT = {"nscales": 3, "warps": 3, "inner_iterations": 10, "outer_iterations": 2}
OPENCV_SHORT = {"nscales": 3, "warps": 3, "innnerIterations": 10, "outerIterations": 2}
REAL_CLIP = "v_Biking_g19_c01.avi"  # camera pans: about 2.4 px of motion at 80x60


@pytest.fixture(autouse=True)
def one_thread():
    """The machine is shared: keep torch to one thread as OpenCV is kept below."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _texture(x, y):
    """A smooth texture defined everywhere, so a sub-pixel shift is exact."""
    return (
        128
        + 50 * np.sin(0.31 * x + 0.5) * np.cos(0.23 * y)
        + 35 * np.sin(0.13 * x - 0.21 * y + 1.0)
        + 25 * np.cos(0.47 * y + 0.05 * x)
    )


def _shifted_pair(shift=SHIFT, width=WIDTH, height=HEIGHT):
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    first = _texture(x, y)
    second = _texture(x - shift[0], y - shift[1])
    return np.rint(first).astype(np.uint8), np.rint(second).astype(np.uint8)


def _tensors(*frames):
    return [torch.from_numpy(np.ascontiguousarray(f))[None] for f in frames]


def _corr(a, b) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_recovers_a_known_subpixel_shift(interpolation):
    prev, nxt = _tensors(*_shifted_pair())
    flow = tvl1_flow(prev, nxt, interpolation=interpolation, **SHORT)
    assert flow.shape == (1, HEIGHT, WIDTH, 2) and flow.dtype == torch.float32
    inner = flow[0, 8:-8, 8:-8].reshape(-1, 2)
    assert torch.isfinite(flow).all()
    np.testing.assert_allclose(inner.median(dim=0).values.numpy(), SHIFT, atol=0.15)


def test_matches_opencv_on_a_synthetic_pair():
    """Same steps as OpenCV: at short settings the two agree to a few hundredths of a pixel."""
    cv2.setNumThreads(1)
    prev, nxt = _shifted_pair((2.3, 0.7))
    ref = cv2.optflow.DualTVL1OpticalFlow_create(**OPENCV_SHORT).calc(prev, nxt, None)
    flow = tvl1_flow(*_tensors(prev, nxt), **SHORT)[0].numpy()
    assert _corr(flow, ref) > 0.999
    assert np.abs(flow - ref).mean() < 0.02


@pytest.mark.parametrize(
    ("ours", "theirs", "scale"),
    [
        ({"gamma": 0.5}, {"gamma": 0.5}, 255),  # illumination variable u3
        ({}, {}, 1.0),  # float input is 0..1, scaled by 255 as OpenCV does
        ({"initial_flow": True}, {"useInitialFlow": True}, 255),
    ],
    ids=["gamma", "float-input", "initial-flow"],
)
def test_options_match_opencv(ours, theirs, scale):
    cv2.setNumThreads(1)
    prev, nxt = (f.astype(np.float32) * (scale / 255) for f in _shifted_pair((2.3, 0.7)))
    if scale == 255:
        prev, nxt = prev.astype(np.uint8), nxt.astype(np.uint8)
    start = np.zeros((HEIGHT, WIDTH, 2), np.float32)
    start += np.random.default_rng(0).normal((2.0, 0.5), 0.3, start.shape).astype(np.float32)
    solver = cv2.optflow.DualTVL1OpticalFlow_create(**OPENCV_SHORT, **theirs)
    ref = solver.calc(prev, nxt, start.copy() if "useInitialFlow" in theirs else None)
    if "initial_flow" in ours:
        ours = {"initial_flow": torch.from_numpy(start)[None]}
    flow = tvl1_flow(*_tensors(prev, nxt), **SHORT, **ours)[0].numpy()
    assert _corr(flow, ref) > 0.999
    assert np.abs(flow - ref).mean() < 0.02


def _real_pair(size=(80, 60)):
    clip = SHARED_DATA / "ucf101" / "UCF-101" / "Biking" / REAL_CLIP
    if not clip.is_file():
        pytest.skip(f"real clip not found at {clip}")
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="gray") for f in islice(container.decode(video=0), 2)]
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


def test_agrees_with_opencv_on_real_frames_and_a_broken_solver_does_not():
    cv2.setNumThreads(1)
    prev, nxt = _real_pair()
    ref = cv2.optflow.DualTVL1OpticalFlow_create(**OPENCV_SHORT).calc(prev, nxt, None)
    assert np.abs(ref).mean() > 1.0  # enough motion that warping matters
    good = tvl1_flow(*_tensors(prev, nxt), **SHORT)[0].numpy()
    broken = tvl1_flow(*_tensors(prev, nxt), _warp=False, **SHORT)[0].numpy()
    assert _corr(good, ref) > 0.98
    assert np.abs(good - ref).mean() < 0.1
    assert _corr(broken, ref) < 0.95


def test_batch_equals_one_by_one():
    """Pairs that stop at different iterations (a still pair stops at once) keep their result."""
    pairs = [_shifted_pair(), _shifted_pair((-0.6, 2.2)), _shifted_pair((0.0, 0.0))]
    prev = torch.from_numpy(np.stack([p for p, _ in pairs]))
    nxt = torch.from_numpy(np.stack([n for _, n in pairs]))
    batch = tvl1_flow(prev, nxt, **SHORT)
    for i in range(len(pairs)):
        alone = tvl1_flow(prev[i : i + 1], nxt[i : i + 1], **SHORT)
        torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-3, rtol=0)
    assert batch[2].abs().max() < 1e-3


def test_torch_tvl1_batches_numpy_frames():
    pairs = [_shifted_pair(), _shifted_pair((-0.6, 2.2)), _shifted_pair((1.0, 1.0))]
    prev, nxt = np.stack([p for p, _ in pairs]), np.stack([n for _, n in pairs])
    flows = TorchTVL1(batch_size=2, **SHORT)(prev, nxt)
    assert flows.shape == (3, HEIGHT, WIDTH, 2) and flows.dtype == np.float32
    whole = tvl1_flow(torch.from_numpy(prev), torch.from_numpy(nxt), **SHORT).numpy()
    np.testing.assert_allclose(flows, whole, atol=1e-3)
    single = TorchTVL1(**SHORT)(prev[0], nxt[0])
    np.testing.assert_allclose(single, whole[0], atol=1e-3)


@pytest.mark.parametrize("ksize", [3, 5])
def test_median_filter_equals_opencv(ksize):
    rng = np.random.default_rng(ksize)
    values = rng.random((2, 23, 31)).astype(np.float32)
    ties = rng.integers(0, 4, (2, 23, 31)).astype(np.float32)
    for u in (values, ties):
        out = torch.empty(u.shape)
        _median(torch.from_numpy(u), ksize, out, _Scratch("cpu"))
        expected = np.stack([cv2.medianBlur(plane, ksize) for plane in u])
        np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize(
    ("prev", "nxt", "kwargs", "message"),
    [
        (np.zeros((1, 8, 8), np.uint8), np.zeros((1, 8, 9), np.uint8), {}, "shapes differ"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), {}, r"\[B, H, W\]"),
        (np.zeros((1, 8, 8), np.int32), np.zeros((1, 8, 8), np.int32), {}, "uint8 or float"),
        (
            np.zeros((1, 8, 8), np.uint8),
            np.zeros((1, 8, 8), np.uint8),
            {"median_filtering": 4},
            "odd",
        ),
        (
            np.zeros((1, 8, 8), np.uint8),
            np.zeros((1, 8, 8), np.uint8),
            {"interpolation": "nearest"},
            "interpolation",
        ),
        (
            np.zeros((1, 8, 8), np.uint8),
            np.zeros((1, 8, 8), np.uint8),
            {"scale_step": 1.5},
            "scale_step",
        ),
    ],
)
def test_bad_input_raises_a_clear_value_error(prev, nxt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tvl1_flow(torch.from_numpy(prev), torch.from_numpy(nxt), **kwargs)


def test_torch_tvl1_rejects_unknown_parameters():
    with pytest.raises(ValueError, match="unknown TV-L1 parameters"):
        TorchTVL1(innnerIterations=10)
