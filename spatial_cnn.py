"""Train or evaluate the spatial stream: a ResNet on single RGB frames.

    python spatial_cnn.py --data-root data/ucf101 [--resume CKPT [--evaluate]] [--help]

The stream is a spec (engine/streams.py); options, training and evaluation are the engine's.
"""

from engine.cli import main
from engine.streams import SPATIAL
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda argv: main(SPATIAL, argv))
