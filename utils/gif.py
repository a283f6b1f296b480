"""The GIF predict draws: small frames kept while the video is decoded, each labelled with its
time and the top-1 of its window, so that a long video's GIF stays a few MB."""

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from utils.atomic import atomic_write
from utils.unknown import shown

GIF_FPS, GIF_FRAMES, GIF_SIDE = 8.0, 360, 160  # a 4-minute video: 1.5 frames a second


class GifFrames:
    """Small frames for the GIF, kept as the video is decoded: at most GIF_FRAMES, GIF_FPS or
    fewer a second, the long side GIF_SIDE (a tiny clip is enlarged so its label is readable)."""

    def __init__(self, fps: float, num_frames: int):
        fps = fps or 25.0
        self.every = max(1, round(fps / GIF_FPS), math.ceil(num_frames / GIF_FRAMES))
        self.fps, self.video_fps = fps / self.every, fps
        self.frames: list[tuple[int, np.ndarray]] = []

    def __call__(self, index: int, frame) -> None:
        if index == 0:
            self.frames = []  # a second pass starts again
        if index % self.every or len(self.frames) >= GIF_FRAMES:
            return
        scale = GIF_SIDE / max(frame.width, frame.height)
        size = [max(2, round(side * scale) // 2 * 2) for side in (frame.width, frame.height)]
        image = frame.to_ndarray(width=size[0], height=size[1], format="rgb24")
        self.frames.append((index, image))


def write_gif(path: Path, frames: list[np.ndarray], texts: list[str], fps: float) -> Path:
    """An animated GIF of ``frames``, each with its text on a dark band at the bottom."""
    font = ImageFont.load_default(size=11)
    images = []
    for frame, text in zip(frames, texts, strict=True):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        band = bottom - top + 6
        draw.rectangle((0, image.height - band, image.width, image.height), fill=(0, 0, 0))
        draw.text((3, image.height - band + 3 - top), text, fill=(255, 255, 255), font=font)
        images.append(image.quantize(64, Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE))
    with atomic_write(path) as file:  # a kill leaves no half picture
        images[0].save(
            file,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=max(20, round(1000 / fps)),
            loop=0,
            optimize=False,
        )
    return path


def gif_labels(gif: GifFrames, times, window_columns: dict, classes: list[str], threshold=None):
    """Each GIF frame's text: its time and the top-1 of the window whose centre is nearest
    ('unknown (Diving 34%)' below ``threshold``)."""
    last = window_columns["fused" if "fused" in window_columns else next(iter(window_columns))]
    centres = np.array([(a + b) / 2 for a, b in times])
    texts = []
    for index, _ in gif.frames:
        t = index / gif.video_fps
        probs = last[int(np.abs(centres - t).argmin())]
        texts.append(f"{t:5.1f} s  {shown(probs, classes, threshold)}")
    return texts
