"""Train or evaluate the motion stream: a ResNet on stacks of TV-L1 flow (see utils/runner.py).

Defaults follow TSN's flow recipe (tsn-pytorch README): lr 0.001, steps at epochs 190 and 300,
340 epochs, dropout 0.7; stacks of 10 flow frames (20 channels) as in the two-stream paper.
"""

from dataloader import MotionDataset
from utils.errors import run_cli
from utils.runner import Stream, main

MOTION = Stream(
    "motion", MotionDataset, dropout=0.7, lr=0.001, epochs=340, lr_steps=(190, 300), stack_length=10
)

if __name__ == "__main__":
    run_cli(lambda argv: main(MOTION, argv))
