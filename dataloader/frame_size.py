"""The size frames are stored and read at: a short side, as extraction resizes, and half size.

Shared by extraction (which writes frames at ``resize_short_side``) and by the readers that
decode video files on the fly (dataloader.video_frames), so a frame decoded from a video is the
extracted one, less the JPEG round trip.
"""

import cv2
import numpy as np


def resized_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side ``short_side`` and the long one rounded down to even.

    ``short_side`` None or 0 keeps the size.
    """
    if not short_side:
        return width, height
    if width <= height:
        return short_side, max(2, int(height * short_side / width) // 2 * 2)
    return max(2, int(width * short_side / height) // 2 * 2), short_side


def resize_short_side(frame: np.ndarray, short_side: int | None) -> np.ndarray:
    """Resize an image so its short side is ``short_side`` (see ``resized_size``)."""
    height, width = frame.shape[:2]
    size = resized_size(width, height, short_side)
    if size == (width, height):
        return frame
    shrink = size[0] < width
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def half_size(image: np.ndarray) -> np.ndarray:
    """An image at half its size (rounded up), an area resize: what ``read(i, half=True)``
    gives where no JPEG's scaled decoding is there to do it."""
    height, width = image.shape[:2]
    return cv2.resize(image, ((width + 1) // 2, (height + 1) // 2), interpolation=cv2.INTER_AREA)
