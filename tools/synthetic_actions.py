"""A tiny synthetic action dataset in which neither stream alone can be right more than half the time.

Each clip shows a textured ball on a textured background. The class is colour x direction:
``RedBallUp``, ``RedBallDown``, ``GreenBallUp``, ``GreenBallDown``.

The four clips of a group (gXX) share one scene: background, ball texture, size, speed and
trajectory, all random per group. Within a group:

- the up clip is the down clip played backwards, so both are made of the same images: a single
  RGB frame shows the colour but says nothing about the direction. The spatial stream can tell
  the colour only: about 50 %.
- the red and the green ball are isoluminant (same gray levels, they differ in chroma alone) and
  TV-L1 flow is computed on gray frames, so their flow is the same: the motion stream can tell the
  direction only, also about 50 %.

Late fusion adds the two, colour from one stream and direction from the other: about 100 %.
Test groups are scenes never seen in training.

Directions are vertical because training mirrors frames horizontally (and negates x-flow with
them): a left/right label would not survive that augmentation, up/down does.

Videos are MPEG-4 AVI files in UCF101's folder layout, ``OUT/videos/<Class>/v_<Class>_gXX_c01.avi``,
with UCF101-style split files (classInd.txt, trainlist01.txt, testlist01.txt) in ``OUT/splits``.
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from utils.cli import Parser
from utils.errors import UserError, run_cli

# (class name, colour, vertical direction: +1 = down in image coordinates)
CLASSES = (
    ("RedBallUp", "red", -1),
    ("RedBallDown", "red", 1),
    ("GreenBallUp", "green", -1),
    ("GreenBallDown", "green", 1),
)
# Hue angle in the (U, V) chroma plane: +V is red, -V is green.
_HUE = {"red": math.pi / 2, "green": -math.pi / 2}


@dataclass(frozen=True)
class Clip:
    path: Path
    name: str
    label: int
    train: bool
    num_frames: int


@dataclass(frozen=True)
class SyntheticDataset:
    videos_dir: Path
    splits_dir: Path
    classes: list[str]
    clips: list[Clip]


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 full-range: 0.299 R + 0.587 G + 0.114 B of the result is exactly ``y``."""
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _noise(rng: np.random.Generator, height: int, width: int, cell: int, low, high) -> np.ndarray:
    """Smooth random texture: uniform noise on a coarse grid, upsampled bilinearly."""
    coarse = rng.uniform(low, high, (height // cell + 2, width // cell + 2)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Scene:
    """What the four clips of one group share: everything but the ball's colour and direction."""

    size: tuple[int, int]  # (width, height)
    num_frames: int
    background: np.ndarray  # [H, W] float32 luminance
    tint: np.ndarray  # background chroma (U, V): a faint colour cast, unrelated to the class
    texture: np.ndarray  # [S, S] float32 luminance of the ball
    disk: np.ndarray  # [S, S] float32 coverage of the ball (soft edge)
    centre: np.ndarray  # (x, y) midpoint of the trajectory
    velocity: np.ndarray  # (x, y) pixels per frame of the down-moving clip
    hues: dict  # colour -> (U, V) chroma of the ball


def make_scene(rng: np.random.Generator, size=(96, 72), num_frames: int = 18) -> Scene:
    """Draw a group's background, ball, trajectory and the exact shade of each colour."""
    width, height = size
    radius = rng.uniform(0.17, 0.2) * height
    speed = rng.uniform(0.015, 0.025) * height
    velocity = np.array([rng.uniform(-0.5, 0.5) * speed, speed])
    travel = np.abs(velocity) * (num_frames - 1)
    margin = radius + 2
    low = margin + travel / 2
    high = np.array([width, height]) - margin - travel / 2
    if np.any(high < low):
        raise UserError(
            f"a {width}x{height} frame is too small for {num_frames} frames of motion; "
            "use a larger --size or fewer --frames"
        )
    side = int(math.ceil(2 * radius)) + 4
    yy, xx = np.mgrid[:side, :side].astype(np.float32) - (side - 1) / 2
    hues = {}
    for colour, angle in _HUE.items():
        angle += rng.uniform(-0.6, 0.6)
        hues[colour] = rng.uniform(40, 50) * np.array([math.cos(angle), math.sin(angle)])
    return Scene(
        size=(width, height),
        num_frames=num_frames,
        background=_noise(rng, height, width, 12, 40, 200),
        tint=rng.uniform(-4, 4, 2),
        texture=_noise(rng, side, side, 3, 80, 170),
        disk=np.clip(radius + 0.5 - np.hypot(xx, yy), 0, 1).astype(np.float32),
        # Centred on a random point: up- and down-movers visit the same places.
        centre=rng.uniform(low, high),
        velocity=velocity,
        hues=hues,
    )


def render_clip(scene: Scene, colour: str, direction: int, rng: np.random.Generator) -> np.ndarray:
    """[num_frames, H, W, 3] uint8 RGB frames of the scene's ball in one colour and direction.

    The up clip is the down clip played backwards (up to sensor noise, drawn from ``rng``): its
    frames are the same images, so single frames cannot tell the two apart. The red and the green
    clip have the same gray levels, so their flow cannot tell them apart.
    """
    width, height = scene.size
    side = scene.disk.shape[0]
    velocity = direction * scene.velocity
    chroma = scene.hues[colour]
    frames = np.empty((scene.num_frames, height, width, 3), np.uint8)
    for t in range(scene.num_frames):
        x, y = scene.centre + (t - (scene.num_frames - 1) / 2) * velocity - (side - 1) / 2
        shift = np.float32([[1, 0, x], [0, 1, y]])
        alpha = cv2.warpAffine(scene.disk, shift, (width, height), flags=cv2.INTER_LINEAR)
        luma = cv2.warpAffine(scene.texture, shift, (width, height), flags=cv2.INTER_LINEAR)
        lum = alpha * luma + (1 - alpha) * scene.background
        lum = lum + rng.normal(0, 2.0, lum.shape)
        u = alpha * chroma[0] + (1 - alpha) * scene.tint[0]
        v = alpha * chroma[1] + (1 - alpha) * scene.tint[1]
        frames[t] = _yuv_to_rgb(lum, u, v)
    return frames


def generate(
    out: str | Path,
    train_per_class: int = 10,
    test_per_class: int = 6,
    size: tuple[int, int] = (96, 72),
    frames: tuple[int, int] = (16, 20),
    fps: int = 25,
    seed: int = 0,
) -> SyntheticDataset:
    """Write the videos and split files under ``out`` and describe what was written.

    Group g(i+1) holds the four classes' clips of scene i: the first ``test_per_class`` groups are
    the test list, the rest the training list, as in UCF101's split 1. Same seed, same videos.
    """
    out = Path(out)
    if train_per_class < 1 or test_per_class < 1:
        raise UserError("--train-per-class and --test-per-class must be at least 1")
    if frames[0] < 2 or frames[1] < frames[0]:
        raise UserError(f"--frames {frames[0]} {frames[1]}: need 2 <= MIN <= MAX")
    if size[0] % 2 or size[1] % 2:
        raise UserError(f"--size {size[0]} {size[1]}: MPEG-4 needs even width and height")
    videos_dir, splits_dir = out / "videos", out / "splits"
    scenes = []
    for i in range(test_per_class + train_per_class):
        rng = np.random.default_rng([seed, i])
        scenes.append(make_scene(rng, size, int(rng.integers(frames[0], frames[1] + 1))))
    clips = []
    for label, (cls, colour, direction) in enumerate(CLASSES):
        for i, scene in enumerate(scenes):
            name = f"v_{cls}_g{i + 1:02d}_c01"
            path = videos_dir / cls / f"{name}.avi"
            noise = np.random.default_rng([seed, i, label])
            from extraction.decode import write_video  # PyAV only when writing

            write_video(path, render_clip(scene, colour, direction, noise), fps, bit_rate=2_000_000)
            clips.append(Clip(path, name, label, i >= test_per_class, scene.num_frames))

    classes = [cls for cls, _, _ in CLASSES]
    splits_dir.mkdir(parents=True, exist_ok=True)
    (splits_dir / "classInd.txt").write_text(
        "".join(f"{i + 1} {cls}\n" for i, cls in enumerate(classes))
    )
    (splits_dir / "trainlist01.txt").write_text(
        "".join(f"{classes[c.label]}/{c.name}.avi {c.label + 1}\n" for c in clips if c.train)
    )
    (splits_dir / "testlist01.txt").write_text(
        "".join(f"{classes[c.label]}/{c.name}.avi\n" for c in clips if not c.train)
    )
    return SyntheticDataset(videos_dir, splits_dir, classes, clips)


def main(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for videos/ and splits/")
    parser.add_argument("--train-per-class", type=int, default=10, help="training clips per class")
    parser.add_argument("--test-per-class", type=int, default=6, help="test clips per class")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(96, 72), metavar=("W", "H"), help="frame size"
    )
    parser.add_argument(
        "--frames",
        type=int,
        nargs=2,
        default=(16, 20),
        metavar=("MIN", "MAX"),
        help="frames per clip, drawn uniformly in [MIN, MAX]",
    )
    parser.add_argument("--fps", type=int, default=25, help="frame rate written in the files")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same videos")
    args = parser.parse_args(argv)
    data = generate(
        args.out,
        args.train_per_class,
        args.test_per_class,
        tuple(args.size),
        tuple(args.frames),
        args.fps,
        args.seed,
    )
    train = sum(c.train for c in data.clips)
    print(
        f"wrote {len(data.clips)} videos ({train} train, {len(data.clips) - train} test) of "
        f"{len(data.classes)} classes to {data.videos_dir}; split files in {data.splits_dir}"
    )


if __name__ == "__main__":
    run_cli(main)
