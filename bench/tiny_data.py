"""A tiny UCF101-like dataset of real JPEG frames and flow, for the benches' dry runs and the
tests (tests/helpers.py takes it from here: a bench never imports tests/)."""

from pathlib import Path

import cv2
import numpy as np


def write_frame_dataset(
    root,
    num_classes: int = 3,
    train_per_class: int = 3,
    test_per_class: int = 2,
    num_frames=(12, 20),
    size=(80, 60),
    flow: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny UCF101-like dataset under ``root`` and return it.

    Layout: ``jpegs_256/v_<Name>/frame%06d.jpg`` (RGB), ``tvl1_flow/{u,v}/v_<Name>/frame%06d.jpg``
    (N-1 gray flow frames), and ``ucfTrainTestlist/`` with classInd.txt, trainlist01.txt and
    testlist01.txt (Windows line endings, as the official files). Class c is drawn with a colour
    and a flow value of its own, so a network can learn it in a few steps.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    width, height = size
    splits = root / "ucfTrainTestlist"
    splits.mkdir(parents=True, exist_ok=True)
    classes = [f"Class{c}" for c in range(num_classes)]
    train_lines, test_lines = [], []
    for c, cls in enumerate(classes):
        for i in range(train_per_class + test_per_class):
            name = f"v_{cls}_g{i + 1:02d}_c01"
            n = int(rng.integers(num_frames[0], num_frames[1] + 1))
            rgb_dir = root / "jpegs_256" / name
            rgb_dir.mkdir(parents=True, exist_ok=True)
            colour = np.array([(60 * c) % 256, 255 - (70 * c) % 256, 40 + 50 * c % 200])
            for f in range(n):
                img = rng.integers(0, 40, (height, width, 3)) + colour
                cv2.imwrite(
                    str(rgb_dir / f"frame{f + 1:06d}.jpg"), np.clip(img, 0, 255).astype(np.uint8)
                )
            if flow:
                for axis, value in (("u", 128 + 30 * (c + 1)), ("v", 128 - 20 * (c + 1))):
                    flow_dir = root / "tvl1_flow" / axis / name
                    flow_dir.mkdir(parents=True, exist_ok=True)
                    for f in range(n - 1):
                        img = np.clip(rng.integers(-10, 10, (height, width)) + value, 0, 255)
                        cv2.imwrite(str(flow_dir / f"frame{f + 1:06d}.jpg"), img.astype(np.uint8))
            line = f"{cls}/{name}.avi"
            if i < train_per_class:
                train_lines.append(f"{line} {c + 1}")
            else:
                test_lines.append(line)
    (splits / "classInd.txt").write_bytes(
        "".join(f"{c + 1} {cls}\r\n" for c, cls in enumerate(classes)).encode()
    )
    (splits / "trainlist01.txt").write_bytes("".join(f"{x}\r\n" for x in train_lines).encode())
    (splits / "testlist01.txt").write_bytes("".join(f"{x}\r\n" for x in test_lines).encode())
    return root
