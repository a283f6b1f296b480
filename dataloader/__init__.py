"""Data layer: official splits, frames on disk, TSN sampling and the two streams' datasets."""

from dataloader.datasets import MotionDataset, SpatialDataset, worker_init
from dataloader.layout import Layout, add_layout_arguments
from dataloader.splits import Split, Video, default_splits_dir, holdout_groups, load_split

__all__ = [
    "Layout",
    "MotionDataset",
    "SpatialDataset",
    "Split",
    "Video",
    "add_layout_arguments",
    "default_splits_dir",
    "holdout_groups",
    "load_split",
    "worker_init",
]
