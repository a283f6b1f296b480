"""TV-L1 optical flow between consecutive grayscale frames, and its uint8 form on disk.

- Flow is OpenCV contrib's DualTVL1 (or the same algorithm in PyTorch, extraction/tvl1_torch.py)
  between consecutive grayscale frames resized as extraction/decode.py does. Flow ``i``
  (0-based; file ``frame{i+1:06d}.jpg`` on disk) is the motion from frame ``i`` to frame ``i+1``,
  so N frames give N-1 flow frames and a pixel of frame ``i`` at (x, y) is near
  (x + u, y + v) in frame ``i+1``.
- Each flow component is clipped to +-bound pixels and mapped linearly to uint8 with
  ``q = round(128 + flow * 127.5 / bound)`` (clipped to 0..255): 128 is no motion, 0 and 255
  the bounds, as in the widely shared preprocessed UCF101/HMDB51 flow; ``(q - 128) * bound / 127.5``
  brings it back (up to quantisation).

Presets: ``quality`` is OpenCV's default TV-L1 (5 scales, 5 warps, epsilon 0.01, up to 300
iterations per warp). ``fast`` solves on a 0.6x copy of the frames (the finest pyramid levels
skipped) with 4 scales, 3 warps, looser stopping and fewer iterations, then upsamples the flow;
bench/flow_bench.py measures its speed and agreement with ``quality``.
"""

from collections.abc import Callable

import cv2
import numpy as np

from extraction.settings import FLOW_METHODS, PRESETS, FlowPreset

# OpenCV's DualTVL1 parameter names -> extraction.tvl1_torch's, so one preset serves both.
_TORCH_NAMES = {
    "nscales": "nscales",
    "scaleStep": "scale_step",
    "warps": "warps",
    "epsilon": "epsilon",
    "innnerIterations": "inner_iterations",
    "outerIterations": "outer_iterations",
}


def _check_preset(preset: str) -> FlowPreset:
    if preset not in PRESETS:
        raise ValueError(f"unknown flow preset {preset!r}; choose from {sorted(PRESETS)}")
    return PRESETS[preset]


def _solve_scaled(solve, prevs: np.ndarray, nexts: np.ndarray, scale: float) -> np.ndarray:
    """``solve`` on copies of [N, H, W] frames resized by ``scale``, flow brought back to H x W."""
    if scale == 1.0:
        return solve(prevs, nexts)
    height, width = prevs.shape[1:3]
    small = (max(8, round(width * scale)), max(8, round(height * scale)))

    def shrink(frames):
        return np.stack([cv2.resize(f, small, interpolation=cv2.INTER_AREA) for f in frames])

    flows = solve(shrink(prevs), shrink(nexts))
    out = np.empty((len(flows), height, width, 2), np.float32)
    for i, f in enumerate(flows):
        out[i] = cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= width / small[0]
    out[..., 1] *= height / small[1]
    return out


def make_flow(
    preset: str = "quality", method: str = "opencv", device: str = "cpu", batch_size: int = 8
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``flows(prev_grays, next_grays)``: [N, H, W] uint8 pairs -> float32 [N, H, W, 2].

    ``opencv`` solves pair by pair with OpenCV contrib's DualTVL1; ``torch`` with the batched
    PyTorch TV-L1 of extraction.tvl1_torch (same algorithm and parameters) on ``device``,
    ``batch_size`` pairs at a time. Keep one per process and reuse it.
    """
    settings = _check_preset(preset)
    if method == "opencv":
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(**settings.tvl1)

        def solve(prevs, nexts):
            return np.stack([tvl1.calc(a, b, None) for a, b in zip(prevs, nexts, strict=True)])

    elif method == "torch":
        from extraction.tvl1_torch import TorchTVL1

        params = {_TORCH_NAMES[k]: v for k, v in settings.tvl1.items()}
        solve = TorchTVL1(device=device, batch_size=batch_size, **params)
    else:
        raise ValueError(f"unknown flow method {method!r}; choose from {FLOW_METHODS}")

    def flows(prevs, nexts) -> np.ndarray:
        return _solve_scaled(solve, np.asarray(prevs), np.asarray(nexts), settings.scale)

    return flows


def make_tvl1(
    preset: str = "fast", method: str = "opencv", device: str = "cpu"
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function ``flow(prev_gray, next_gray) -> float32 [H, W, 2]`` (x, y in pixels): one
    pair at a time through ``make_flow``."""
    flows = make_flow(preset, method, device, batch_size=1)
    return lambda prev, nxt: flows(prev[None], nxt[None])[0]


def flow_to_uint8(flow: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """Clip flow to +-bound and map it linearly to uint8, 128 = no motion (module docstring)."""
    scaled = np.rint(np.asarray(flow, dtype=np.float32) * (127.5 / bound) + 128.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """HxWx3 RGB -> HxW uint8 gray; a gray frame is returned as it is."""
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
