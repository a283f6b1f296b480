"""Tiny video files written with PyAV for the tests of training from videos: moving, noisy
pictures in the codecs and containers users have (H.264 with B-frames, VP8/VP9, MPEG-4)."""

from pathlib import Path

import av
import numpy as np


def moving_frames(count: int, size=(48, 32), seed: int = 0, shade: int = 0) -> np.ndarray:
    """[count, H, W, 3] uint8 RGB: a bar that moves right, over noise; ``shade`` tints it."""
    width, height = size
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 40, (count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        frames[i, :, (3 * i) % width : (3 * i) % width + 6] = (200, 120 + shade, 40 + 2 * i)
    return frames


def write_test_video(path, frames, codec: str = "mpeg4", gop: int = 12, b_frames: int = 0,
                     options: dict | None = None) -> Path:  # fmt: skip
    """``frames`` (RGB uint8) as a video of ``codec`` with keyframes every ``gop`` frames and up
    to ``b_frames`` B-frames between references; the container follows the file's extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = b_frames
        stream.codec_context.options = dict(options or {})
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path
