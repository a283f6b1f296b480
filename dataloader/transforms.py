"""Crops and flips on uint8 frames, shared by every frame of a sample; input statistics.

Samples stay uint8 all the way to the network: a crop is a view, each frame is resized straight
into its slot of the sample's final buffer, and batches travel (and are pinned and copied to the
GPU) at a quarter of the float32 size. The network's first step converts to float and
normalises with the stream's statistics (see network.recognizer), on the GPU when there is one.

Colour frames come as OpenCV decodes them, BGR [H, W, 3]: the one write into the sample's
[3, S, S] planes puts the channels in RGB order, so no whole frame is copied to reorder them.
"""

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch

# Test crops cover 224/256 of the short side, as "resize to 256, centre-crop 224".
TEST_CROP_FRACTION = 224 / 256
# TSN's multi-scale crop sizes (tsn-pytorch models.py get_augmentation): RGB uses all four,
# flow leaves out .66 (its values are displacements, and a large zoom would rescale them).
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)
FLOW_SCALES = (1.0, 0.875, 0.75)


@dataclass(frozen=True)
class Crop:
    """A region of the source frame (pixels) and whether to mirror it."""

    x: int
    y: int
    w: int
    h: int
    flip: bool = False


@functools.lru_cache(maxsize=256)
def _offsets(width: int, height: int, w: int, h: int) -> tuple[tuple[int, int], ...]:
    """TSN's 13 fixed crop positions: corners, centre, edge middles and quarter points."""
    ws, hs = (width - w) // 4, (height - h) // 4
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0)]
    grid += [(1, 1), (3, 1), (1, 3), (3, 3)]
    return tuple((i * ws, j * hs) for i, j in grid)


def multiscale_crop(
    width: int, height: int, generator=None, scales=TSN_SCALES, max_distort: int = 1
) -> Crop:
    """TSN's multi-scale corner crop with a random horizontal flip.

    Width and height are each a scale of the short side, at most ``max_distort`` scale steps
    apart (mild aspect jitter); the position is one of 13 fixed corner/centre points.
    """
    pairs = _crop_sizes(min(width, height), tuple(scales), max_distort)
    draw = torch.rand(3, generator=generator).tolist()
    w, h = pairs[int(draw[0] * len(pairs))]
    offsets = _offsets(width, height, w, h)
    x, y = offsets[int(draw[1] * len(offsets))]
    return Crop(x, y, w, h, flip=draw[2] < 0.5)


@functools.lru_cache(maxsize=64)
def _crop_sizes(base: int, scales: tuple, max_distort: int) -> tuple[tuple[int, int], ...]:
    """multiscale_crop's (w, h) choices for a short side of ``base`` (the same every sample)."""
    sizes = [max(1, int(base * s)) for s in scales]
    return tuple(
        (w, h)
        for i, h in enumerate(sizes)
        for j, w in enumerate(sizes)
        if abs(i - j) <= max_distort
    )


def _test_side(width: int, height: int) -> int:
    """The side of a frame-stream test crop: 224/256 of the short side."""
    return int(round(min(width, height) * TEST_CROP_FRACTION))


def center_crop(width: int, height: int, side: int | None = None) -> Crop:
    """The centred square of ``side`` pixels (default: test_side)."""
    side = _test_side(width, height) if side is None else side
    return Crop((width - side) // 2, (height - side) // 2, side, side)


def ten_crops(width: int, height: int, side: int | None = None) -> list[Crop]:
    """Four corners and the centre, then the same five mirrored (squares of ``side``)."""
    side = _test_side(width, height) if side is None else side
    positions = [(0, 0), (width - side, 0), (0, height - side), (width - side, height - side)]
    positions.append(((width - side) // 2, (height - side) // 2))
    return [Crop(x, y, side, side, flip) for flip in (False, True) for x, y in positions]


def test_crops(width: int, height: int, ten_crop: bool = False, side: int | None = None):
    """The test crops of a frame: the centre one, or with ``ten_crop`` ten (squares of ``side``)."""
    if ten_crop:
        return ten_crops(width, height, side)
    return [center_crop(width, height, side)]


def random_square_crop(width: int, height: int, side: int) -> Crop:
    """A square of ``side`` pixels at a uniformly random position, mirrored half the time."""
    draw = torch.rand(3).tolist()
    x = int(draw[0] * (width - side + 1))
    y = int(draw[1] * (height - side + 1))
    return Crop(x, y, side, side, flip=draw[2] < 0.5)


def _crop_region(image: np.ndarray, crop: Crop, size: int) -> np.ndarray:
    """``crop`` of a uint8 image at size x size, not mirrored: a view when no resize is needed."""
    region = image[crop.y : crop.y + crop.h, crop.x : crop.x + crop.w]
    if region.shape[0] != size or region.shape[1] != size:
        interp = cv2.INTER_AREA if crop.w > 2 * size else cv2.INTER_LINEAR
        region = cv2.resize(region, (size, size), interpolation=interp)
    return region


def crop_resize(image: np.ndarray, crop: Crop, size: int, out: np.ndarray | None = None):
    """Cut ``crop`` out of a uint8 image, resize it to size x size and mirror it if asked.

    With ``out`` (a [size, size(, C)] uint8 view) the result is written there, so a sample is
    assembled in its final buffer with no intermediate copies.
    """
    region = _crop_region(image, crop, size)
    if out is None:
        out = np.empty(region.shape, region.dtype)
    if crop.flip:
        cv2.flip(region, 1, dst=out)  # 8x faster than copying a reversed numpy view
    else:
        np.copyto(out, region)
    return out


def crop_resize_planes(image: np.ndarray, crop: Crop, size: int, planes: np.ndarray) -> None:
    """``crop_resize`` of a BGR [H, W, 3] frame into ``planes`` [3, size, size], R, G, B, each
    plane C-contiguous (a slot of the sample's buffer): reordered and transposed in that one write.
    """
    region = _crop_region(image, crop, size)
    if crop.flip:
        region = cv2.flip(region, 1)
    elif not region.flags.c_contiguous:  # a crop that needs no resize is a view of the frame,
        region = np.ascontiguousarray(region)  # which cv2.split reads 12x slower than a copy
    cv2.split(region, [planes[2], planes[1], planes[0]])


# Mirroring a flow frame reverses its x motion: 128 + d becomes 128 - d (clipped to 0..255).
_NEGATE_FLOW = np.clip(256 - np.arange(256), 0, 255).astype(np.uint8)


def flow_to_tensor(stacks: np.ndarray, flipped) -> torch.Tensor:
    """[N, 2L, H, W] uint8 flow stacks -> uint8 tensor, x-flow negated in mirrored stacks.

    Channels are interleaved x1, y1, x2, y2, ...; mirroring reverses horizontal motion, so
    the x channels of a mirrored stack are reflected around 128. Changes ``stacks`` in place.
    """
    for n in np.flatnonzero(np.asarray(flipped, dtype=bool)):
        for x in stacks[n, 0::2]:
            cv2.LUT(x, _NEGATE_FLOW, dst=x)
    return torch.from_numpy(stacks)


def rgb_clip(frames: dict, idx: np.ndarray, crops: list[Crop], size: int) -> torch.Tensor:
    """The spatial stream's sample: every crop of every frame in ``idx``, [crops*N, 3, S, S] RGB.

    ``frames`` maps a frame index to its decoded [H, W, 3] BGR image; it is asked for each
    index once, and each frame's every slot is written before the next is asked for, so a
    mapping that decodes on demand holds one frame at a time (in cache while it is cut).
    """
    n = len(idx)
    out = np.empty((len(crops) * n, 3, size, size), np.uint8)
    slots: dict[int, list[int]] = {}
    for j, i in enumerate(idx.tolist()):
        slots.setdefault(i, []).append(j)
    for i, js in slots.items():
        frame = frames[i]
        for j in js:
            for c, crop in enumerate(crops):
                crop_resize_planes(frame, crop, size, out[c * n + j])
    return torch.from_numpy(out)


def flow_clip(flows: dict, idx: np.ndarray, crops: list[Crop], size: int) -> torch.Tensor:
    """The motion stream's sample: stacks of ``idx`` [N, L] flow frames, [crops*N, 2L, S, S].

    ``flows`` maps a flow-frame index to its (x, y) gray images; x and y are interleaved.
    """
    n, length = idx.shape
    out = np.empty((len(crops) * n, 2 * length, size, size), np.uint8)
    for s, frame_ids in enumerate(idx.tolist()):
        for j, i in enumerate(frame_ids):
            for axis, image in enumerate(flows[i]):
                for c, crop in enumerate(crops):
                    crop_resize(image, crop, size, out=out[c * n + s, 2 * j + axis])
    return flow_to_tensor(out, [crop.flip for crop in crops for _ in range(n)])
