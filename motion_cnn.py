"""Train or evaluate the motion stream: a ResNet on stacks of 10 TV-L1 flow frames (x and y).

    python motion_cnn.py --data-root data/ucf101 [--resume CKPT [--evaluate]] [--help]

The stream is a spec (engine/streams.py); options, training and evaluation are the engine's.
"""

from engine.cli import main
from engine.streams import MOTION
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda argv: main(MOTION, argv))
