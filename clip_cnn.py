"""Train or evaluate the clip stream: a 3D network (C3D, R3D, MC3, R(2+1)D) on short RGB clips.

    python clip_cnn.py --data-root data/ucf101 [--arch r2plus1d_18] [--resume CKPT [--evaluate]]

The stream is a spec (engine/streams.py); options, training and evaluation are the engine's.
"""

from engine.cli import main
from engine.streams import CLIP
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda argv: main(CLIP, argv))
