"""Train or evaluate the spatial stream: a ResNet on single RGB frames (see utils/runner.py).

Defaults follow TSN's RGB recipe (tsn-pytorch README): lr 0.001, steps at epochs 30 and 60,
80 epochs, dropout 0.8.
"""

from dataloader import SpatialDataset
from utils.errors import run_cli
from utils.runner import Stream, main

SPATIAL = Stream("spatial", SpatialDataset, dropout=0.8, lr=0.001, epochs=80, lr_steps=(30, 60))

if __name__ == "__main__":
    run_cli(lambda argv: main(SPATIAL, argv))
