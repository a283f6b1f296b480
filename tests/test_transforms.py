import numpy as np
import pytest
import torch

from dataloader.transforms import (
    TSN_SCALES,
    Crop,
    center_crop,
    crop_resize,
    flow_to_tensor,
    multiscale_crop,
    rgb_clip,
    ten_crops,
)
from network.statistics import IMAGENET_MEAN, IMAGENET_STD, flow_statistics, rgb_statistics


def test_multiscale_crop_stays_inside_with_tsn_scales_and_flips():
    g = torch.Generator().manual_seed(0)
    sizes = [int(256 * s) for s in TSN_SCALES]
    flips, shapes = set(), set()
    for _ in range(500):
        c = multiscale_crop(340, 256, g)
        assert c.x >= 0 and c.x + c.w <= 340 and c.y >= 0 and c.y + c.h <= 256
        assert c.w in sizes and c.h in sizes
        assert abs(sizes.index(c.w) - sizes.index(c.h)) <= 1  # mild aspect jitter only
        flips.add(c.flip)
        shapes.add((c.w, c.h))
    assert flips == {True, False} and len(shapes) == 10


def test_center_crop_keeps_aspect_ratio():
    assert center_crop(340, 256) == Crop(58, 16, 224, 224, False)
    crops = ten_crops(340, 256)
    assert len(crops) == 10 and sum(c.flip for c in crops) == 5
    assert {(c.x, c.y) for c in crops} == {(0, 0), (116, 0), (0, 32), (116, 32), (58, 16)}
    assert all(c.w == c.h == 224 for c in crops)


def test_crop_resize_crops_resizes_and_mirrors():
    image = np.arange(60 * 80, dtype=np.uint8).reshape(60, 80)
    out = crop_resize(image, Crop(10, 5, 40, 40), 40)
    assert np.array_equal(out, image[5:45, 10:50])
    mirrored = crop_resize(image, Crop(10, 5, 40, 40, flip=True), 40)
    assert np.array_equal(mirrored, image[5:45, 10:50][:, ::-1])
    stack = np.zeros((60, 80, 20), np.uint8)
    assert crop_resize(stack, Crop(0, 0, 60, 60), 32).shape == (32, 32, 20)


def test_samples_stay_uint8_and_the_statistics_normalise_them():
    bgr = np.full((6, 6, 3), (0, 128, 255), np.uint8)  # as OpenCV decodes RGB (255, 128, 0)
    x = rgb_clip({0: bgr, 1: bgr}, np.array([0, 1]), [Crop(1, 1, 4, 4)], 4)
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.uint8 and x.is_contiguous()
    mean, std = rgb_statistics(3)
    normalised = (x[0, :, 0, 0].float() - torch.tensor(mean)) / torch.tensor(std)
    expected = [
        (v / 255 - m) / s
        for v, m, s in zip((255, 128, 0), IMAGENET_MEAN, IMAGENET_STD, strict=True)
    ]
    assert torch.allclose(normalised, torch.tensor(expected), atol=1e-5)
    mean, std = flow_statistics(20)  # TSN's: (v / 255 - 0.5) / 0.226
    assert mean == pytest.approx([127.5] * 20) and std == pytest.approx([0.226 * 255] * 20)


def test_mirroring_a_flow_stack_negates_x_flow_only():
    stacks = np.full((2, 4, 3, 3), 128, np.uint8)
    stacks[:, 0::2] = 160  # x-flow to the right
    stacks[:, 1::2] = 96  # y-flow upwards
    x = flow_to_tensor(stacks, [False, True])
    assert x.dtype == torch.uint8
    assert (x[0, 0::2] == 160).all() and (x[1, 0::2] == 96).all()  # 128 + 32 -> 128 - 32
    assert (x[:, 1::2] == 96).all()
    still = flow_to_tensor(np.full((1, 2, 2, 2), 128, np.uint8), [True])
    assert (still == 128).all()
    extremes = flow_to_tensor(np.array([0, 0, 255, 0], np.uint8).reshape(1, 4, 1, 1), [True])
    assert extremes.flatten().tolist() == [255, 0, 1, 0]


@pytest.mark.parametrize("size", [(340, 256), (256, 340), (64, 48)])
def test_training_crops_fit_any_frame_size(size):
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        c = multiscale_crop(*size, g)
        assert c.x + c.w <= size[0] and c.y + c.h <= size[1]
