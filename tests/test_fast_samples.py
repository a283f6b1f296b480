"""The loaders write samples straight into their final buffers: the same samples as decoding to
RGB, cropping and stacking step by step (the reference below), bit for bit; clip frames decoded at
half size stay within a stated tolerance of full-size decoding."""

import cv2
import numpy as np
import pytest
import torch

from dataloader.datasets import FrameDataset
from dataloader.layout import Layout, frame_path
from dataloader.samples import ClipSampleBuilder, FlowSampleBuilder, RgbSampleBuilder
from dataloader.sampling import (
    clip_indices,
    num_clip_starts,
    num_stack_starts,
    stack_indices,
)
from dataloader.splits import Video
from dataloader.transforms import Crop
from extraction.decode import iter_frames

SIZES = {"v_Wide_g01_c01": (340, 256), "v_Odd_g01_c01": (171, 129)}
NUM_FRAMES = 12
# Half-size decoding (JPEG's scaled IDCT) against full-size decoding and a 2x resize, on real
# frames: mean absolute difference and 99th percentile, in 0..255 levels.
HALF_SIZE_MEAN, HALF_SIZE_P99 = 0.5, 3


def _write_video(root, name, frames):
    """RGB frames as JPEG files (quality 95, as the extraction tool), and gray flow from them."""
    layout = Layout()
    for folder in (layout.rgb_dir, layout.flow_x_dir, layout.flow_y_dir):
        (root / folder / name).mkdir(parents=True)
    for i, rgb in enumerate(frames):
        quality = [cv2.IMWRITE_JPEG_QUALITY, 95]
        path = frame_path(root / layout.rgb_dir / name, layout.rgb_pattern, i)
        cv2.imwrite(str(path), rgb[..., ::-1], quality)
        if i + 1 < len(frames):
            for folder, c in ((layout.flow_x_dir, 0), (layout.flow_y_dir, 2)):
                path = frame_path(root / folder / name, layout.flow_x_pattern, i)
                cv2.imwrite(str(path), rgb[..., c], quality)


@pytest.fixture(scope="module")
def textured_root(tmp_path_factory):
    """Two videos of smooth, moving, differently coloured texture: 340x256 and an odd 171x129."""
    root = tmp_path_factory.mktemp("textured")
    rng = np.random.default_rng(0)
    for name, (width, height) in SIZES.items():
        noise = cv2.GaussianBlur(rng.uniform(0, 255, (height, width + NUM_FRAMES, 3)), (0, 0), 2)
        ramp = np.linspace(0, 80, width)[None, :, None] * np.array([1.0, -0.5, 0.2])
        frames = [noise[:, i : i + width] * 0.7 + ramp + 40 for i in range(NUM_FRAMES)]
        _write_video(root, name, [np.clip(f, 0, 255).astype(np.uint8) for f in frames])
    return root


def _decode_rgb(path, color=True):
    """The former decoding: BGR flipped to RGB, the whole frame copied."""
    flag = cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE
    image = cv2.imdecode(np.fromfile(str(path), np.uint8), flag)
    return np.ascontiguousarray(image[..., ::-1]) if color else image


def _crop(image, crop, size):
    region = image[crop.y : crop.y + crop.h, crop.x : crop.x + crop.w]
    if region.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if crop.w > 2 * size else cv2.INTER_LINEAR
        region = cv2.resize(region, (size, size), interpolation=interp)
    return np.ascontiguousarray(region[:, ::-1] if crop.flip else region)


def _reference(samples, read, num_frames, train, half=False):
    """A sample built step by step: decode every frame to RGB, crop, stack, permute.

    ``half``: the crops are drawn on the half-size frame, as ClipSampleBuilder does, and cut out of
    the full-size one at twice the size.
    """
    s = samples.crop_size
    if isinstance(samples, ClipSampleBuilder):
        length, stride = samples.clip_length, samples.frame_stride
        starts = samples.positions(num_clip_starts(num_frames, length, stride), train)
        idx = clip_indices(starts, length, stride, num_frames)
        frames = {i: read(i) for i in np.unique(idx).tolist()}
        h, w = frames[int(idx[0, 0])].shape[:2]
        if half:
            crops = samples.clip_crops((w + 1) // 2, (h + 1) // 2, train)
            crops = [Crop(2 * c.x, 2 * c.y, 2 * c.w, 2 * c.h, c.flip) for c in crops]
        else:
            crops = samples.clip_crops(w, h, train)
        clips = [[_crop(frames[i], c, s) for i in ids] for c in crops for ids in idx.tolist()]
        out = torch.from_numpy(np.array(clips)).permute(0, 4, 1, 2, 3)
    elif isinstance(samples, FlowSampleBuilder):
        length = samples.stack_length
        idx = stack_indices(
            samples.positions(num_stack_starts(num_frames, length), train), length, num_frames
        )
        flows = {i: read(i) for i in np.unique(idx).tolist()}
        h, w = flows[int(idx[0, 0])][0].shape
        crops = samples.crops(w, h, train)
        stacks = []
        for c in crops:
            for ids in idx.tolist():
                stack = np.array([_crop(flows[i][a], c, s) for i in ids for a in (0, 1)])
                if c.flip:  # mirrored motion: x-flow 128 + d becomes 128 - d
                    stack[0::2] = np.clip(256 - stack[0::2].astype(int), 0, 255)
                stacks.append(stack)
        out = torch.from_numpy(np.array(stacks))
    else:
        idx = samples.positions(num_frames, train)
        frames = {i: read(i) for i in np.unique(idx).tolist()}
        h, w = frames[int(idx[0])].shape[:2]
        crops = samples.crops(w, h, train)
        out = torch.from_numpy(np.array([_crop(frames[i], c, s) for c in crops for i in idx]))
        out = out.permute(0, 3, 1, 2)
    return out if train else out.reshape(len(crops), -1, *out.shape[1:])


def _old_reader(item, modality):
    layout = Layout()
    if modality == "rgb":
        return lambda i: _decode_rgb(frame_path(item.dirs[0], layout.rgb_pattern, i))
    pattern = layout.flow_x_pattern
    return lambda i: tuple(_decode_rgb(frame_path(d, pattern, i), False) for d in item.dirs)


def _assert_same_samples(root, samples, train, seeds=range(6)):
    videos = [Video(name, k) for k, name in enumerate(SIZES)]
    dataset = FrameDataset(root, videos, train, samples, cache=False)
    for item in dataset.items:
        read = _old_reader(item, samples.modality)
        for seed in seeds:
            torch.manual_seed(seed)
            new = samples(dataset.reader(item), item.num_frames, train)
            torch.manual_seed(seed)
            old = _reference(samples, read, item.num_frames, train)
            assert new.dtype == torch.uint8 and new.is_contiguous()
            assert new.shape == old.shape and torch.equal(new, old), (item.name, seed)


@pytest.mark.parametrize("crop_size", [224, 112, 96])  # up-scaled, area- and linear-reduced
def test_spatial_samples_are_the_step_by_step_ones_bit_for_bit(textured_root, crop_size):
    _assert_same_samples(textured_root, RgbSampleBuilder(crop_size=crop_size), train=True)
    _assert_same_samples(
        textured_root, RgbSampleBuilder(crop_size=crop_size), train=False, seeds=[0]
    )
    ten = RgbSampleBuilder(crop_size=crop_size, ten_crop=True, test_snippets=2)
    _assert_same_samples(textured_root, ten, train=False, seeds=[0])


def test_motion_samples_are_the_step_by_step_ones_bit_for_bit(textured_root):
    samples = FlowSampleBuilder(crop_size=112, stack_length=4)
    _assert_same_samples(textured_root, samples, train=True)
    _assert_same_samples(textured_root, samples, train=False, seeds=[0])


def test_clip_samples_decoded_at_full_size_are_the_step_by_step_ones_bit_for_bit(textured_root):
    # short sides over 128: half of 256 is too small, so 340x256 frames are decoded whole too
    for samples in (
        ClipSampleBuilder(crop_size=112, short_side=160, num_segments=2),
        ClipSampleBuilder(crop_size=64, short_side=240, clip_length=4),
    ):
        _assert_same_samples(textured_root, samples, train=True, seeds=range(3))
    ten = ClipSampleBuilder(
        crop_size=112, short_side=160, ten_crop=True, test_snippets=2, clip_length=4
    )
    _assert_same_samples(textured_root, ten, train=False, seeds=[0])


def test_clip_frames_with_a_short_side_of_256_are_decoded_at_half_size(textured_root):
    samples = ClipSampleBuilder(crop_size=112, clip_length=4)
    videos = [Video(name, k) for k, name in enumerate(SIZES)]
    dataset = FrameDataset(textured_root, videos, True, samples)
    asked = {}
    for item in dataset.items:
        reader = dataset.reader(item)

        def read(i, half=False, name=item.name, reader=reader):
            asked.setdefault(name, []).append(half)
            return reader(i, half)

        assert samples(read, item.num_frames, True).shape == (3, 3, 4, 112, 112)
    wide, odd = asked["v_Wide_g01_c01"], asked["v_Odd_g01_c01"]
    assert len(wide) > 4 and all(wide)
    assert odd[0] and not any(odd[1:])  # 129 / 2 < 128: tried at half size, then read whole


def test_clip_samples_at_half_size_stay_close_to_full_size_decoding(shared_data, tmp_path):
    """Real UCF101 frames at 340x256: half-size decoding, against the full-size decode and 2x
    resize of the same region, within HALF_SIZE_MEAN and HALF_SIZE_P99 levels."""
    clip = sorted((shared_data / "ucf101" / "UCF-101").rglob("*.avi"))[0]
    frames = list(iter_frames(clip, short_side=256, max_frames=NUM_FRAMES))
    assert frames[0].shape == (256, 340, 3)
    _write_video(tmp_path, "v_Real_g01_c01", frames)
    video = [Video("v_Real_g01_c01", 0)]
    differences = []
    for train, seeds, samples in (
        (True, range(3), ClipSampleBuilder(crop_size=112, clip_length=8)),
        (
            False,
            [0],
            ClipSampleBuilder(crop_size=112, clip_length=8, ten_crop=True, test_snippets=1),
        ),
    ):
        dataset = FrameDataset(tmp_path, video, train, samples)
        item = dataset.items[0]
        old = _old_reader(item, "rgb")
        for seed in seeds:
            torch.manual_seed(seed)
            new = samples(dataset.reader(item), item.num_frames, train)
            torch.manual_seed(seed)
            full = _reference(samples, old, item.num_frames, train, half=True)
            assert new.shape == full.shape
            differences.append((new.numpy().astype(int) - full.numpy()).ravel())
    differences = np.abs(np.concatenate(differences))
    assert 0 < differences.mean() <= HALF_SIZE_MEAN
    assert np.percentile(differences, 99) <= HALF_SIZE_P99
