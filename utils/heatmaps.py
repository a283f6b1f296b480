"""Heat maps drawn over images: one row of panels per stream, as an animated GIF or a PNG strip.

Maps are scaled by the largest value of their row, so a row shows how strongly each of its
snippets holds the evidence, not only where.
"""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from utils.atomic import atomic_write

PANEL = 160  # pixels: tiny crops are enlarged so maps and labels are readable


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """[H, W, 3] uint8 RGB with ``heat`` ([H, W], 0..1) blended over it in the jet colour map."""
    colours = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    return np.uint8(np.rint((1 - alpha) * image + alpha * colours))


def _panels(images: np.ndarray, heats: np.ndarray, label: str, font) -> list[Image.Image]:
    """One labelled, enlarged overlay per snippet of a row."""
    top = max(float(heats.max()), 1e-12)
    out = []
    for image, heat in zip(images, heats, strict=True):
        scale = -(-PANEL // max(image.shape[:2]))  # at least PANEL pixels
        size = (image.shape[1] * scale, image.shape[0] * scale)
        big = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
        heat = cv2.resize(heat / top, size, interpolation=cv2.INTER_LINEAR)
        panel = Image.fromarray(overlay(big, heat))
        ImageDraw.Draw(panel).text((3, 2), label, fill=(255, 255, 255), font=font)
        out.append(panel)
    return out


def _with_caption(image: Image.Image, text: str, font) -> Image.Image:
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    band = bottom - top + 8
    framed = Image.new("RGB", (image.width, image.height + band))
    framed.paste(image, (0, 0))
    ImageDraw.Draw(framed).text((4, image.height + 4 - top), text, fill=(255, 255, 255), font=font)
    return framed


def write_heatmaps(path, rows: dict, caption: str, fps: float = 2.0) -> Path:
    """Write ``rows`` ({label: (images [N, H, W, 3] uint8, heats [N, H, W])}) to ``path``.

    ``.gif``: one frame per snippet, the rows' panels side by side (a row with fewer snippets
    keeps its last). ``.png``: one line of panels per row, snippets left to right.
    """
    path = Path(path)
    font = ImageFont.load_default(size=13)
    panels = [_panels(images, heats, label, font) for label, (images, heats) in rows.items()]
    width = sum(row[0].width for row in panels)
    if path.suffix.lower() == ".png":
        height = sum(row[0].height for row in panels)
        sheet = Image.new("RGB", (max(sum(p.width for p in row) for row in panels), height))
        y = 0
        for row in panels:
            x = 0
            for panel in row:
                sheet.paste(panel, (x, y))
                x += panel.width
            y += row[0].height
        frames = [_with_caption(sheet, caption, font)]
    else:
        frames = []
        for k in range(max(len(row) for row in panels)):
            frame = Image.new("RGB", (width, max(row[0].height for row in panels)))
            x = 0
            for row in panels:
                frame.paste(row[min(k, len(row) - 1)], (x, 0))
                x += row[0].width
            frames.append(_with_caption(frame, f"{caption}  (snippet {k + 1})", font))
    with atomic_write(path) as file:  # a kill leaves no half picture
        if path.suffix.lower() == ".png":
            frames[0].save(file, format="PNG")
        else:
            frames[0].save(file, format="GIF", save_all=True, append_images=frames[1:],
                           duration=round(1000 / fps), loop=0)  # fmt: skip
    return path
