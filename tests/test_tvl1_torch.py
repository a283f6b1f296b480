"""PyTorch TV-L1 (extraction/tvl1_torch.py): known motion, agreement with OpenCV, batching."""

import math
from itertools import islice

import av
import cv2
import numpy as np
import pytest
import torch

import extraction.tvl1_torch as tvl1_torch
from extraction.tvl1_torch import TorchTVL1, _median, _Scratch, tvl1_flow
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


def _reference_iteration(u, new_u, px, py, lin, prm, scratch):
    """The primal-dual step as it was before the device masks (reference for the test below)."""
    l_t, theta, taut = prm["lambda_"] * prm["theta"], prm["theta"], prm["tau"] / prm["theta"]
    b, c, h, w = u.shape
    rho = torch.mul(lin.a[:, :1], u[:, :1])
    for i in range(1, c):
        rho.addcmul_(lin.a[:, i : i + 1], u[:, i : i + 1])
    step = rho.add_(lin.rho_c).div_(lin.neg_grad).clamp_(-l_t, l_t)
    div = px.clone()
    div[..., 1:].sub_(px[..., :-1])
    div.add_(py)
    div[..., 1:, :].sub_(py[..., :-1, :])
    torch.addcmul(u, step, lin.a, out=new_u).add_(div, alpha=theta)
    change = new_u - u
    error = change.mul_(change).sum(dim=(1, 2, 3))
    ux, uy = torch.zeros_like(u), torch.zeros_like(u)
    torch.sub(new_u[..., 1:], new_u[..., :-1], out=ux[..., :-1])
    torch.sub(new_u[..., 1:, :], new_u[..., :-1, :], out=uy[..., :-1, :])
    norm = torch.hypot(ux, uy).mul_(taut).add_(1)
    px.add_(ux, alpha=taut).div_(norm)
    py.add_(uy, alpha=taut).div_(norm)
    return error


def _reference_solve_level(i0, i1, u, prm, warp, check_every):
    """One level as it was solved before: the host asked after every step which pairs stopped."""
    b, c, h, w = u.shape
    scratch = _Scratch(u.device)
    i1x, i1y = tvl1_torch._centered_gradient(i1)
    px, py = torch.zeros_like(u), torch.zeros_like(u)
    inner, outer, median = prm["inner_iterations"], prm["outer_iterations"], prm["median_filtering"]
    u = u.clone()
    for _ in range(prm["warps"]):
        lin = tvl1_torch._Warp(i0, i1, i1x, i1y, u, prm["gamma"], prm["interpolation"], warp)
        ids, wu, wpx, wpy = torch.arange(b), u.clone(), px, py
        for n in range(inner * outer):
            if median > 1 and n % inner == 0:
                tvl1_torch._median_filter(wu, median, scratch)
            new = torch.empty_like(wu)
            going = _reference_iteration(wu, new, wpx, wpy, lin, prm, scratch) > (
                prm["epsilon"] ** 2 * h * w
            )
            wu = new
            if not bool(going.all()):
                done = ~going
                u[ids[done]], px[ids[done]], py[ids[done]] = wu[done], wpx[done], wpy[done]
                ids, wu, wpx, wpy = ids[going], wu[going], wpx[going], wpy[going]
                if ids.numel() == 0:
                    break
                lin.select(going)
        if ids.numel():
            u[ids], px[ids], py[ids] = wu, wpx, wpy
    return u


def _stopping_batch():
    """Four pairs that stop at different steps of a warp (a still pair at once)."""
    pairs = [_shifted_pair(s) for s in (SHIFT, (-0.6, 2.2), (0.0, 0.0), (3.1, 0.4))]
    return [torch.from_numpy(np.stack(frames)) for frames in zip(*pairs, strict=True)]


def _record_looks(monkeypatch) -> list:
    """Patch the host's look at the working set; returns the list of what it saw."""
    seen, look = [], tvl1_torch._look

    def recorded(going):
        seen.append(look(going))
        return seen[-1]

    monkeypatch.setattr(tvl1_torch, "_look", recorded)
    return seen


@pytest.mark.parametrize(
    "settings",
    [{**SHORT, "epsilon": 0.05}, {**SHORT, "gamma": 0.5, "epsilon": 0.05}],
    ids=["short", "gamma"],
)
def test_device_masks_give_the_flow_of_a_look_after_every_step(settings, monkeypatch):
    """Pairs that stop between two looks keep their flow: the same bits as the old loop."""
    prev, nxt = _stopping_batch()
    with monkeypatch.context() as patch:
        patch.setattr(tvl1_torch, "_solve_level", _reference_solve_level)
        reference = tvl1_flow(prev, nxt, **settings)
    seen = _record_looks(monkeypatch)
    assert torch.equal(tvl1_flow(prev, nxt, check_every=1, **settings), reference)
    # some pair stopped while others went on: with sparser looks it is carried, masked
    assert any(0 < (going == 0).sum() < len(going) for going in seen)
    for check_every in (4, 50, None):
        assert torch.equal(tvl1_flow(prev, nxt, check_every=check_every, **settings), reference)
    for i in (0, 3):  # one by one as in the batch
        alone = tvl1_flow(prev[i : i + 1], nxt[i : i + 1], check_every=4, **settings)
        assert torch.equal(alone, reference[i : i + 1])


def test_the_host_looks_at_most_once_every_n_steps(monkeypatch):
    prev, nxt = _stopping_batch()
    seen = _record_looks(monkeypatch)
    settings = {**SHORT, "inner_iterations": 30, "outer_iterations": 3}
    every_step = tvl1_flow(prev, nxt, check_every=1, **settings)
    steps = len(seen)
    seen.clear()
    n = 8
    assert torch.equal(tvl1_flow(prev, nxt, check_every=n, **settings), every_step)
    levels, warps, outer = 3, settings["warps"], settings["outer_iterations"]
    # at most one look per n steps of a round and one at each round start
    per_warp = math.ceil(settings["inner_iterations"] * outer / n) + outer
    assert 0 < len(seen) <= levels * warps * per_warp < steps


def test_check_every_must_be_a_positive_integer():
    prev, nxt = _stopping_batch()
    with pytest.raises(ValueError, match="check_every"):
        tvl1_flow(prev, nxt, check_every=0)
    with pytest.raises(ValueError, match="check_every"):
        TorchTVL1(check_every=2.5)


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
