import numpy as np
import pytest
import torch

from dataloader.sampling import num_stack_starts, segment_indices, stack_indices, uniform_indices


@pytest.mark.parametrize("length", [3, 7, 30, 31, 100, 523])
def test_one_random_frame_per_segment(length):
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        idx = segment_indices(length, 3, g)
        assert idx.shape == (3,)
        for k, i in enumerate(idx):
            # segment k is [k*length//3, (k+1)*length//3)
            assert k * length // 3 <= i < max((k + 1) * length // 3, k * length // 3 + 1)


def test_segments_cover_every_frame_over_draws():
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(400):
        seen.update(segment_indices(12, 3, g).tolist())
    assert seen == set(range(12))


def test_short_video_repeats_indices():
    idx = segment_indices(2, 3, torch.Generator().manual_seed(0))
    assert set(idx.tolist()) <= {0, 1} and len(idx) == 3
    assert segment_indices(1, 3).tolist() == [0, 0, 0]


def test_uniform_test_snippets_cover_the_video():
    idx = uniform_indices(190, 19)
    assert idx.tolist() == list(range(5, 190, 10))
    idx = uniform_indices(57, 19)
    assert idx[0] == 1 and idx[-1] == 55 and np.all(np.diff(idx) == 3)
    short = uniform_indices(5, 19)
    assert len(short) == 19 and short.min() == 0 and short.max() == 4
    assert np.all(np.diff(short) >= 0)


def test_flow_stacks_are_consecutive_and_clamped():
    # 30 flow frames, stacks of 10: starts 0..20 keep the stack inside the video
    assert num_stack_starts(30, 10) == 21
    starts = uniform_indices(num_stack_starts(30, 10), 19)
    stacks = stack_indices(starts, 10, 30)
    assert stacks.shape == (19, 10)
    assert np.all(np.diff(stacks, axis=1) == 1) and stacks.max() == 29 and stacks.min() == 0
    # a video with 4 flow frames (5 RGB frames) repeats its last flow frame
    assert num_stack_starts(4, 10) == 1
    assert stack_indices(np.array([0]), 10, 4).tolist() == [[0, 1, 2, 3, 3, 3, 3, 3, 3, 3]]
