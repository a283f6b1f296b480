"""Which frames a sample reads: TSN segments for training, uniform positions for testing.

All indices are 0-based frame positions. Randomness comes from torch's generator, which
DataLoader seeds per worker and which a resumed run restores, so runs are reproducible.
"""

import numpy as np
import torch


def segment_indices(length: int, num_segments: int, generator=None) -> np.ndarray:
    """One random position in each of ``num_segments`` equal segments of ``range(length)``.

    With fewer positions than segments, segments share positions (indices repeat).
    """
    offsets = torch.rand(num_segments, generator=generator).tolist()
    picked = []  # plain Python: a few numbers per sample, where numpy's calls cost more
    for k, offset in enumerate(offsets):
        start = k * length // num_segments
        end = max((k + 1) * length // num_segments, start + 1)
        picked.append(min(start + int(offset * (end - start)), length - 1))
    return np.array(picked, np.int64)


def sequence_indices(length: int, num_segments: int, sequences: int) -> np.ndarray:
    """``[sequences, num_segments]`` test positions with the training's length and spacing.

    Sequence j takes, in each of the ``num_segments`` equal segments of segment_indices, the
    position at fraction (j + 0.5) / sequences of the segment: several ordered sequences at
    different offsets, each like one training sample of a recurrent head.
    """
    k = np.arange(num_segments)
    starts = k * length // num_segments
    ends = np.maximum((k + 1) * length // num_segments, starts + 1)
    offsets = (np.arange(sequences) + 0.5) / sequences
    idx = starts[None, :] + (offsets[:, None] * (ends - starts)[None, :]).astype(np.int64)
    return np.minimum(idx, length - 1)


def uniform_indices(length: int, count: int) -> np.ndarray:
    """``count`` positions at the centres of equal segments, covering the whole video."""
    tick = length / count
    return np.minimum((tick / 2 + tick * np.arange(count)).astype(np.int64), length - 1)


def stack_indices(starts: np.ndarray, stack_length: int, num_flow: int) -> np.ndarray:
    """[len(starts), stack_length] flow-frame indices of consecutive stacks.

    A video with fewer than ``stack_length`` flow frames repeats its last flow frame.
    """
    return np.minimum(starts[:, None] + np.arange(stack_length)[None, :], num_flow - 1)


def num_stack_starts(num_flow: int, stack_length: int) -> int:
    """How many start positions keep a whole stack inside the video (at least 1)."""
    return max(num_flow - stack_length + 1, 1)


def clip_indices(starts: np.ndarray, clip_length: int, stride: int, num_frames: int) -> np.ndarray:
    """[len(starts), clip_length] frame indices of clips of every ``stride``-th frame.

    A video shorter than a clip repeats its last frame.
    """
    steps = stride * np.arange(clip_length)
    return np.minimum(starts[:, None] + steps[None, :], num_frames - 1)


def num_clip_starts(num_frames: int, clip_length: int, stride: int) -> int:
    """How many start positions keep a whole clip inside the video (at least 1)."""
    return max(num_frames - (clip_length - 1) * stride, 1)
