"""Batched TV-L1 optical flow in PyTorch that reproduces OpenCV's DualTVL1OpticalFlow.

Why: OpenCV's TV-L1 (the flow of the published UCF101/HMDB51 data) costs about 2 s per 340x256
pair on one core and cannot use a GPU. This is the same algorithm, step for step, written as
whole-tensor operations over a batch of pairs, so it runs on any torch device and keeps the
flow a two-stream network was trained on.

The algorithm is the dual TV-L1 of Zach, Pock and Bischof (2007) as described by Sanchez,
Meinhardt-Llopis and Facciolo (IPOL 2013) and as ``cv::optflow::DualTVL1OpticalFlow`` runs it:

- Images are float 0..255 (uint8 as is; float input is taken as 0..1 and scaled by 255, as
  OpenCV does). Pyramid: each level is the previous one resized by ``scale_step`` with bilinear
  interpolation (OpenCV's INTER_LINEAR: size rounded, sample positions from the nominal scale,
  edge pixels replicated, no anti-aliasing); levels stop before one whose side is under 16 px.
- Per level, coarse to fine: centred gradient of I1 (one-sided halves at the borders); the dual
  variables p start at zero. Each of ``warps`` warps samples I1 and its gradient at x + u
  (bicubic, zero outside the image), linearises the data term, then iterates, in up to
  ``outer_iterations`` rounds of up to ``inner_iterations``: (round start) 5x5 median filter of
  u (edge pixels replicated); thresholding step for v (three cases of rho against
  lambda*theta*|grad I1|^2); u = v + theta * div p (backward differences, p taken as zero
  before the first row/column); p = (p + tau/theta * grad u) / (1 + tau/theta * |grad u|) with
  forward differences (zero at the last row/column). A pair stops its warp once the summed
  squared change of u in one iteration is at most epsilon^2 * pixels.
- The flow goes to the next finer level by bilinear resize and is multiplied by 1/scale_step.
- ``gamma`` > 0 adds OpenCV's illumination variable u3 with its own dual variable.

Batching: each pair keeps its own stopping state, on the device: a pair that has converged is
masked out of the steps (its flow and dual variables stay bit for bit), so the host need not
ask after every step. It looks every ``check_every`` steps and at each outer round's start (one
sync each), then gathers the pairs still iterating into a smaller batch or ends the warp. So a
pair never changes after it converged, and a batch gives the one-by-one result (up to float
summation order; exactly, on a CPU), whatever ``check_every`` is.

Known differences from OpenCV: the float32 arithmetic is vectorised differently (sums are not
sequential, the threshold step is a clamp of -rho/|grad I1|^2), so results agree to within
float noise, not bit for bit; over hundreds of iterations that noise grows as it does in
OpenCV itself (OpenCV against OpenCV on input perturbed by 1e-6 differs about as much). Where
|grad I1|^2 <= FLT_EPSILON and |rho| is even smaller OpenCV's step is 0 and this one at most
lambda*theta*|grad I1| (< 2e-5 px). OpenCV's object also keeps a scale count reduced by a small
image for later calls; a call here does not.
"""

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

FLT_EPSILON = float(np.finfo(np.float32).eps)
MIN_LEVEL_SIDE = 16  # OpenCV drops pyramid levels narrower or shorter than this
INTERPOLATIONS = ("bicubic", "bilinear")

DEFAULTS = {
    "tau": 0.25,
    "lambda_": 0.15,
    "theta": 0.3,
    "nscales": 5,
    "warps": 5,
    "epsilon": 0.01,
    "inner_iterations": 30,
    "outer_iterations": 10,
    "scale_step": 0.8,
    "gamma": 0.0,
    "median_filtering": 5,
    "interpolation": "bicubic",
    "check_every": None,  # not OpenCV's: steps between host looks (None: CHECK_EVERY, 1 on CPU)
}
CHECK_EVERY = 10  # off the CPU, where a look is a device sync that stalls the queue of steps


def _check_params(p: dict) -> None:
    """One clear ValueError for a setting OpenCV would reject or that has no meaning."""
    for name in ("tau", "theta"):
        if not p[name] > 0:
            raise ValueError(f"{name} must be positive, got {p[name]}")
    for name in ("lambda_", "epsilon", "gamma"):
        if not p[name] >= 0:
            raise ValueError(f"{name} must be non-negative, got {p[name]}")
    if not 0 < p["scale_step"] < 1:
        raise ValueError(f"scale_step must be in (0, 1), got {p['scale_step']}")
    if p["nscales"] < 1:
        raise ValueError(f"nscales must be at least 1, got {p['nscales']}")
    for name in ("warps", "inner_iterations", "outer_iterations"):
        if p[name] < 0:
            raise ValueError(f"{name} must be non-negative, got {p[name]}")
    check = p.get("check_every")
    if check is not None and (not isinstance(check, int) or check < 1):
        raise ValueError(f"check_every must be a positive integer or None, got {check!r}")
    median = p["median_filtering"]
    if median > 1 and median % 2 == 0:
        raise ValueError(f"median_filtering must be odd (or <= 1 for none), got {median}")
    if p["interpolation"] not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {INTERPOLATIONS}, got {p['interpolation']!r}"
        )


def _as_images(x: torch.Tensor, name: str) -> torch.Tensor:
    """[B, H, W] or [B, 1, H, W] gray -> [B, H, W] float32 0..255, as OpenCV converts it."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 3:
        raise ValueError(
            f"{name} must be [B, H, W] or [B, 1, H, W] gray, got shape {tuple(x.shape)}"
        )
    if x.shape[0] < 1 or x.shape[1] < 2 or x.shape[2] < 2:
        raise ValueError(
            f"{name} needs at least one pair of at least 2x2 pixels, got {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return x.float()
    if x.is_floating_point():
        return x.float() * 255.0
    raise ValueError(f"{name} must be uint8 or float (0..1), got {x.dtype}")


def _linear_taps(src: int, dst: int, inv_scale: float, device) -> tuple:
    """Source indices and weights of OpenCV's INTER_LINEAR along one axis (edges replicated).

    The sample position comes from the nominal scale, not from dst/src, exactly as cv::resize
    does when it is given fx/fy.
    """
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * inv_scale - 0.5).astype(np.float32)
    left = np.floor(pos).astype(np.int64)
    frac = pos - left.astype(np.float32)
    frac[left < 0] = 0
    left[left < 0] = 0
    last = left >= src - 1
    frac[last] = 0
    left[last] = src - 1
    right = np.minimum(left + 1, src - 1)
    to = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return to(left), to(right), to(frac)


def _resize_linear(x: torch.Tensor, size: tuple[int, int], inv_scale: tuple[float, float]):
    """Bilinear resize of [..., H, W] to ``size`` (h, w) with OpenCV's sample positions.

    Rows are interpolated after columns, in OpenCV's order, so rounding matches closely.
    """
    (h, w), (inv_y, inv_x) = size, inv_scale
    left, right, fx = _linear_taps(x.shape[-1], w, inv_x, x.device)
    x = x.index_select(-1, left) * (1 - fx) + x.index_select(-1, right) * fx
    top, bottom, fy = _linear_taps(x.shape[-2], h, inv_y, x.device)
    fy = fy[:, None]
    return x.index_select(-2, top) * (1 - fy) + x.index_select(-2, bottom) * fy


def _pyramid(images: torch.Tensor, nscales: int, scale_step: float) -> list[torch.Tensor]:
    """Levels finest first; each is the previous resized by scale_step (cv::resize, fx=fy)."""
    levels = [images]
    for _ in range(1, nscales):
        h, w = levels[-1].shape[-2:]
        # cv::resize rounds the size to nearest (half to even, like Python's round)
        size = (round(h * scale_step), round(w * scale_step))
        if size[0] < MIN_LEVEL_SIDE or size[1] < MIN_LEVEL_SIDE:
            break
        levels.append(_resize_linear(levels[-1], size, (1 / scale_step, 1 / scale_step)))
    return levels


def _centered_gradient(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the central difference; at the borders half the one-sided one (edge replicated)."""
    padded = F.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    dx = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    dy = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return dx, dy


def _sorting_network(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort for ``n`` wires: compare-exchanges (i, j), min to i."""
    size = 1 << max(n - 1, 0).bit_length()
    pairs, p = [], 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return [(a, b) for a, b in pairs if b < n]  # missing wires act as +inf: never swapped


@functools.cache
def _median_network(k: int) -> tuple[list, int]:
    """Compare-exchanges that leave the median of a k x k window (columns pre-sorted) on a wire.

    Wire r * k + c holds rank r of window column c. Sorting each rank across the columns keeps
    the columns sorted; element (r, c) then has at least (r+1)(c+1) values <= it and (k-r)(k-c)
    >= it, so the values certainly below (above) the median pair off and the median is the
    median of the rest. Only the exchanges that reach the output wire are kept, each with the
    outputs that are used: (i, j, need_min, need_max).
    """
    half = (k * k) // 2
    net = [(r * k + a, r * k + b) for r in range(k) for a, b in _sorting_network(k)]
    below = {(r, c) for r in range(k) for c in range(k) if (k - r) * (k - c) > half}
    above = {(r, c) for r in range(k) for c in range(k) if (r + 1) * (c + 1) > half}
    rest = [r * k + c for r in range(k) for c in range(k) if (r, c) not in below ^ above]
    net += [(rest[a], rest[b]) for a, b in _sorting_network(len(rest))]
    out = rest[len(rest) // 2]
    needed, kept = {out}, []
    for a, b in reversed(net):
        if a in needed or b in needed:
            kept.append((a, b, a in needed, b in needed))
            needed |= {a, b}
    return kept[::-1], out


class _Scratch:
    """Named scratch tensors reused from one iteration to the next.

    Why: on CPU a fresh tensor of a frame's size costs page faults each time, more than the
    arithmetic on it; ops here write into these buffers instead. A name asked for with another
    shape (next pyramid level, fewer pairs left) gets a new buffer.
    """

    def __init__(self, device):
        self.device = device
        self._store = {}

    def get(self, name: str, shape, zero: bool = False) -> torch.Tensor:
        shape = tuple(shape)
        buf = self._store.get(name)
        if buf is None or tuple(buf.shape) != shape:
            make = torch.zeros if zero else torch.empty
            buf = self._store[name] = make(shape, device=self.device)
        return buf


def _median(u: torch.Tensor, ksize: int, out: torch.Tensor, scratch: _Scratch) -> None:
    """ksize x ksize median of ``u`` [..., H, W] into ``out``, edges replicated (cv::medianBlur).

    A selection network of element-wise min/max, several times faster than torch.median over
    unfolded windows, and exact: a network picks the same value for any input, ties included.
    """
    h, w = u.shape[-2:]
    r = ksize // 2
    lead = tuple(u.shape[:-2])
    padded = scratch.get("median_pad", (*lead, h + 2 * r, w + 2 * r))
    padded[..., r : r + h, r : r + w] = u
    padded[..., r : r + h, :r] = u[..., :, :1]
    padded[..., r : r + h, r + w :] = u[..., :, -1:]
    padded[..., :r, :] = padded[..., r : r + 1, :]
    padded[..., r + h :, :] = padded[..., r + h - 1 : r + h, :]
    # sort each window column once (shared by the ksize windows that contain it)
    cols = scratch.get("median_cols", (ksize + 1, *lead, h, w + 2 * r))
    slot = list(range(ksize + 1))
    for i in range(ksize):
        cols[i] = padded[..., i : i + h, :]
    for a, b in _sorting_network(ksize):
        torch.minimum(cols[slot[a]], cols[slot[b]], out=cols[slot[ksize]])
        torch.maximum(cols[slot[a]], cols[slot[b]], out=cols[slot[b]])
        slot[a], slot[ksize] = slot[ksize], slot[a]
    network, result = _median_network(ksize)
    used = sorted({i for a, b, *_ in network for i in (a, b)} | {result})
    wires = scratch.get("median_wires", (len(used) + 1, *lead, h, w))
    where = {wire: n for n, wire in enumerate(used)}
    spare = len(used)
    for wire, n in where.items():
        wires[n] = cols[slot[wire // ksize]][..., wire % ksize : wire % ksize + w]
    for a, b, need_min, need_max in network:
        if need_min and need_max:
            torch.minimum(wires[where[a]], wires[where[b]], out=wires[spare])
            torch.maximum(wires[where[a]], wires[where[b]], out=wires[where[b]])
            where[a], spare = spare, where[a]
        elif need_min:
            torch.minimum(wires[where[a]], wires[where[b]], out=wires[where[a]])
        else:
            torch.maximum(wires[where[a]], wires[where[b]], out=wires[where[b]])
    out.copy_(wires[where[result]])


def _median_filter(u: torch.Tensor, ksize: int, scratch: _Scratch) -> None:
    """Median-filter the flow channels of u [b, C, H, W] in place (not u3, as OpenCV).

    On CPU one pair at a time: its network buffers stay in cache and take 1/b of the memory.
    """
    step = 1 if u.device.type == "cpu" else u.shape[0]
    for i in range(0, u.shape[0], step):
        flow = u[i : i + step, :2]
        _median(flow, ksize, flow, scratch)


def _taps(t: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Interpolation weights of the taps at offsets -1..2 (bicubic) or 0..1 (bilinear).

    Bicubic is Keys' kernel with a = -0.75, as OpenCV's INTER_CUBIC; at t = 0 the weights are
    exactly (0, 1, 0, 0), so a zero flow samples the image exactly.
    """
    if mode == "bilinear":
        return [1 - t, t]
    a, s = -0.75, 1 - t
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * s - (a + 3)) * s * s + 1
    return [w0, w1, w2, 1 - w0 - w1 - w2]


def _remap(stack: torch.Tensor, flow: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample [b, C, H, W] at (x + u, y + v): cv::remap, taps outside the image read 0.

    Positions stay in pixels (no normalised grid as in grid_sample, whose round trip would
    move a zero flow off the pixel centres by ~1e-6 px and break OpenCV's exact zero flow on
    identical frames).
    """
    b, c, h, w = stack.shape
    first = -1 if mode == "bicubic" else 0
    n = 4 if mode == "bicubic" else 2
    pad = 2
    padded = F.pad(stack, (pad, pad, pad, pad)).reshape(b, c, -1)
    width = w + 2 * pad
    x = torch.arange(w, device=stack.device, dtype=torch.float32) + flow[:, 0]
    y = torch.arange(h, device=stack.device, dtype=torch.float32)[:, None] + flow[:, 1]
    x0, y0 = x.floor(), y.floor()
    wx, wy = _taps(x - x0, mode), _taps(y - y0, mode)
    # taps beyond the zero border are moved onto it: they read 0 as well
    cols = [(x0 + first + i).clamp_(-pad, w + pad - 1).long() + pad for i in range(n)]
    out = torch.zeros_like(stack)
    for j in range(n):
        row = ((y0 + first + j).clamp_(-pad, h + pad - 1).long() + pad) * width
        acc = torch.zeros_like(stack)
        for i in range(n):
            index = (row + cols[i]).reshape(b, 1, -1).expand(b, c, -1)
            acc.addcmul_(padded.gather(2, index).reshape(b, c, h, w), wx[i][:, None])
        out.addcmul_(acc, wy[j][:, None])
    return out


class _Warp:
    """The constants of one linearisation (one warp) for the pairs in a working set."""

    def __init__(self, i0, i1, i1x, i1y, u, gamma: float, mode: str, warp: bool):
        if warp:
            i1w, i1wx, i1wy = _remap(torch.stack((i1, i1x, i1y), 1), u, mode).unbind(1)
        else:  # test-only: linearise at zero motion, a deliberately broken solver
            i1w, i1wx, i1wy = i1, i1x, i1y
        grad = (i1wx * i1wx + i1wy * i1wy)[:, None]
        # -rho/grad clamped to +-lambda*theta is OpenCV's three-case threshold step; where
        # |grad I1|^2 <= FLT_EPSILON, OpenCV takes +-lambda*theta (or 0 for rho = 0), which a
        # tiny divisor gives too, without a branch per pixel (masks are slow on CPU)
        self.neg_grad = -torch.where(grad > FLT_EPSILON, grad, 1e-30)
        self.rho_c = (i1w - i1wx * u[:, 0] - i1wy * u[:, 1] - i0)[:, None]
        parts = [i1wx, i1wy]
        if u.shape[1] == 3:
            parts.append(torch.full_like(i1wx, gamma))
        self.a = torch.stack(parts, 1)  # d rho / d u, per channel of u

    def select(self, keep: torch.Tensor) -> None:
        self.neg_grad, self.rho_c, self.a = self.neg_grad[keep], self.rho_c[keep], self.a[keep]


def _scaled_add(x: torch.Tensor, y: torch.Tensor, scale) -> torch.Tensor:
    """x += scale * y in place, ``scale`` a number or a per-pair tensor (same bits either way)."""
    return x.addcmul_(y, scale) if isinstance(scale, torch.Tensor) else x.add_(y, alpha=scale)


def _iteration(u, new_u, px, py, lin: _Warp, prm: dict, live, scratch) -> torch.Tensor:
    """One primal-dual step from ``u`` into ``new_u``, px and py updated in place.

    ``live`` [3, b, 1, 1, 1] is 1 for a pair still going
    and 0 for one that has stopped, times 1, theta and tau/theta: a stopped pair's step, div p
    term and dual step are then exactly 0, so it keeps u and p bit for bit without the host
    being asked which pairs stopped. ``live=None``: every pair goes on (plain numbers, cheaper
    on a CPU). Returns each pair's summed squared change of u, which the stopping rule compares.
    """
    l_t = prm["lambda_"] * prm["theta"]
    if live is None:
        going, theta_live, taut_live = None, prm["theta"], prm["tau"] / prm["theta"]
    else:
        going, theta_live, taut_live = live
    b, c, h, w = u.shape
    rho = scratch.get("rho", (b, 1, h, w))
    torch.mul(lin.a[:, :1], u[:, :1], out=rho)
    for i in range(1, c):
        rho.addcmul_(lin.a[:, i : i + 1], u[:, i : i + 1])
    step = rho.add_(lin.rho_c).div_(lin.neg_grad).clamp_(-l_t, l_t)  # v = u + step * a
    if going is not None:
        step.mul_(going)
    div = scratch.get("div", u.shape)  # div p: backward differences, p = 0 before row/col 0
    div.copy_(px)
    div[..., 1:].sub_(px[..., :-1])
    div.add_(py)
    div[..., 1:, :].sub_(py[..., :-1, :])
    _scaled_add(torch.addcmul(u, step, lin.a, out=new_u), div, theta_live)
    change = torch.sub(new_u, u, out=scratch.get("change", u.shape))
    error = change.mul_(change).sum(dim=(1, 2, 3))
    ux = scratch.get("ux", u.shape, zero=True)  # forward differences; last column stays 0
    uy = scratch.get("uy", u.shape, zero=True)  # last row stays 0
    torch.sub(new_u[..., 1:], new_u[..., :-1], out=ux[..., :-1])
    torch.sub(new_u[..., 1:, :], new_u[..., :-1, :], out=uy[..., :-1, :])
    norm = torch.hypot(ux, uy, out=scratch.get("norm", u.shape)).mul_(taut_live).add_(1)
    _scaled_add(px, ux, taut_live).div_(norm)
    _scaled_add(py, uy, taut_live).div_(norm)
    return error


def _look(going: torch.Tensor) -> np.ndarray:
    """The host's look at which pairs of the working set still go: the one sync of a check."""
    return going.cpu().numpy()


def _solve_level(i0, i1, u, prm: dict, warp: bool, check_every: int) -> torch.Tensor:
    """TV-L1 at one pyramid level from initial flow u [B, C, H, W]; returns the refined u.

    Each pair follows OpenCV's loops on its own: per warp, up to ``outer_iterations`` rounds
    (each opened by the median filter) of up to ``inner_iterations`` steps, until its change
    is at most epsilon^2 * pixels. That is decided on the device: a pair that stops is masked
    (``_iteration``) and keeps its flow. The host looks every ``check_every`` steps of a round
    and at each round start (so the median filter sees only pairs that go on), stores the
    pairs that stopped and goes on with the rest, or ends the warp when none is left.
    """
    b, c, h, w = u.shape
    scratch = _Scratch(u.device)
    i1x, i1y = _centered_gradient(i1)
    px, py = torch.zeros_like(u), torch.zeros_like(u)  # dual variables, reset per level
    scaled_epsilon = prm["epsilon"] ** 2 * h * w
    inner, outer, median = prm["inner_iterations"], prm["outer_iterations"], prm["median_filtering"]
    scales = torch.tensor([1.0, prm["theta"], prm["tau"] / prm["theta"]], device=u.device)
    u = u.clone()
    for _ in range(prm["warps"]):
        lin = _Warp(i0, i1, i1x, i1y, u, prm["gamma"], prm["interpolation"], warp)
        ids, wpx, wpy = torch.arange(b, device=u.device), px, py
        wu, spare = scratch.get("u_a", u.shape), scratch.get("u_b", u.shape)
        wu.copy_(u)
        going = torch.ones(b, dtype=torch.bool, device=u.device)
        if inner == 0 and median > 1:  # OpenCV still opens each (empty) outer round with it
            for _ in range(outer):
                _median_filter(wu, median, scratch)
        for n in range(inner * outer):
            if n and n % inner % check_every == 0:  # the host looks: store pairs that stopped
                keep = _look(going)
                if not keep.all():
                    done = torch.from_numpy(np.flatnonzero(~keep)).to(u.device)
                    u[ids[done]], px[ids[done]], py[ids[done]] = wu[done], wpx[done], wpy[done]
                    if not keep.any():
                        ids = ids[:0]
                        break
                    rest = torch.from_numpy(np.flatnonzero(keep)).to(u.device)
                    ids, wu, wpx, wpy = ids[rest], wu[rest], wpx[rest], wpy[rest]
                    spare = torch.empty_like(wu)
                    lin.select(rest)
            if median > 1 and n % inner == 0:  # each outer round opens with a median filter
                _median_filter(wu, median, scratch)
            # right after a look every pair of the working set goes on: no mask needed
            looked = n % inner % check_every == 0
            live = None if looked else (scales[:, None] * going).view(3, -1, 1, 1, 1)
            error = _iteration(wu, spare, wpx, wpy, lin, prm, live, scratch)
            going_on = error > scaled_epsilon
            going = going_on if looked else going_on.logical_and_(going)
            wu, spare = spare, wu
        if ids.numel() == b:  # nobody left the working set: p was updated in place
            u.copy_(wu)
        elif ids.numel():
            u[ids], px[ids], py[ids] = wu, wpx, wpy
    return u


def tvl1_flow(
    prev: torch.Tensor,
    nxt: torch.Tensor,
    *,
    tau: float = 0.25,
    lambda_: float = 0.15,
    theta: float = 0.3,
    nscales: int = 5,
    warps: int = 5,
    epsilon: float = 0.01,
    inner_iterations: int = 30,
    outer_iterations: int = 10,
    scale_step: float = 0.8,
    gamma: float = 0.0,
    median_filtering: int = 5,
    initial_flow: torch.Tensor | None = None,
    interpolation: str = "bicubic",
    check_every: int | None = None,
    _warp: bool = True,
) -> torch.Tensor:
    """TV-L1 flow from each ``prev[i]`` to ``nxt[i]``: [B, H, W, 2] float32 (x, y in pixels).

    ``prev``/``nxt``: [B, H, W] or [B, 1, H, W] gray, uint8 0..255 or float 0..1, on any
    device (the flow is computed and returned there). Parameters and defaults are OpenCV's
    DualTVL1OpticalFlow_create ones (``lambda_`` is ``lambda``, ``innnerIterations`` is
    ``inner_iterations``); ``initial_flow`` [B, H, W, 2] is ``useInitialFlow=True``.
    ``interpolation="bilinear"`` warps with bilinear instead of OpenCV's bicubic: faster, not
    OpenCV. ``check_every``: steps between the host's looks at which pairs stopped (a device
    sync each); None is CHECK_EVERY, and 1 on a CPU, where a look costs nothing and each step a
    stopped pair is carried costs a step. Any value gives the same flow, bit for bit.
    ``_warp=False`` is for tests only: it disables warping.
    """
    prm = dict(
        tau=tau,
        lambda_=lambda_,
        theta=theta,
        nscales=nscales,
        warps=warps,
        epsilon=epsilon,
        inner_iterations=inner_iterations,
        outer_iterations=outer_iterations,
        scale_step=scale_step,
        gamma=gamma,
        median_filtering=median_filtering,
        interpolation=interpolation,
        check_every=check_every,
    )
    _check_params(prm)
    i0, i1 = _as_images(prev, "prev"), _as_images(nxt, "nxt")
    if i0.shape != i1.shape:
        raise ValueError(f"prev and nxt shapes differ: {tuple(i0.shape)} vs {tuple(i1.shape)}")
    if i0.device != i1.device:
        raise ValueError(f"prev and nxt are on different devices: {i0.device} vs {i1.device}")
    b, h, w = i0.shape
    channels = 3 if gamma != 0 else 2
    if check_every is None:
        check_every = 1 if i0.device.type == "cpu" else CHECK_EVERY
    with torch.no_grad():
        levels = _pyramid(torch.stack((i0, i1), 1), nscales, scale_step)
        coarse_h, coarse_w = levels[-1].shape[-2:]
        u = torch.zeros(b, channels, coarse_h, coarse_w, device=i0.device)
        if initial_flow is not None:
            if initial_flow.shape != (b, h, w, 2):
                raise ValueError(
                    f"initial_flow must be [B, H, W, 2] = {(b, h, w, 2)}, got {tuple(initial_flow.shape)}"
                )
            start = initial_flow.to(i0.device, torch.float32).permute(0, 3, 1, 2)
            for level in levels[1:]:  # as OpenCV: resize by scale_step and scale, level by level
                size = tuple(level.shape[-2:])
                start = _resize_linear(start, size, (1 / scale_step, 1 / scale_step)) * scale_step
            u[:, :2] = start
        for s in range(len(levels) - 1, -1, -1):
            pair = levels[s]
            u = _solve_level(pair[:, 0], pair[:, 1], u, prm, _warp, check_every)
            if s == 0:
                break
            fh, fw = levels[s - 1].shape[-2:]
            u = _resize_linear(u, (fh, fw), (u.shape[-2] / fh, u.shape[-1] / fw))
            u[:, :2] *= 1 / scale_step  # u3 (illumination) is not a displacement
        return u[:, :2].permute(0, 2, 3, 1).contiguous()


class TorchTVL1:
    """TV-L1 flow of many frame pairs, ``batch_size`` pairs at a time to bound memory.

    ``TorchTVL1(device="cpu", batch_size=8, **tvl1_flow keyword arguments)``; calling it with
    ``prev_grays``, ``next_grays`` [N, H, W] uint8 returns [N, H, W, 2] float32 (numpy); with
    two HxW frames it returns one HxW x 2 flow, like ``extraction.tvl1.make_tvl1``.
    Float frames are taken as 0..1, as in ``tvl1_flow``. Batches are for a GPU; on a CPU the
    time per pair was lowest at batch 1 (a pair's buffers stay in cache; bench/flow_bench.py).
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 8, **params):
        unknown = sorted(set(params) - set(DEFAULTS) - {"_warp"})
        if unknown:
            raise ValueError(f"unknown TV-L1 parameters {unknown}; known: {sorted(DEFAULTS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.params = {**DEFAULTS, **params}
        _check_params(self.params)
        self.device = torch.device(device)
        self.batch_size = batch_size

    def __call__(self, prev_grays: np.ndarray | Sequence, next_grays: np.ndarray | Sequence):
        prev, nxt = np.asarray(prev_grays), np.asarray(next_grays)
        if prev.shape != nxt.shape:
            raise ValueError(f"prev and next shapes differ: {prev.shape} vs {nxt.shape}")
        single = prev.ndim == 2
        if single:
            prev, nxt = prev[None], nxt[None]
        if prev.ndim != 3:
            raise ValueError(f"expected [N, H, W] or [H, W] gray frames, got shape {prev.shape}")
        out = np.empty((*prev.shape, 2), np.float32)
        for start in range(0, len(prev), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            a = torch.from_numpy(np.ascontiguousarray(prev[chunk])).to(self.device)
            b = torch.from_numpy(np.ascontiguousarray(nxt[chunk])).to(self.device)
            out[chunk] = tvl1_flow(a, b, **self.params).cpu().numpy()
        return out[0] if single else out
