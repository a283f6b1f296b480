"""A run's data: the split's datasets for a stream, checked or cleaned if asked, and loaders."""

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from dataloader.checks import find_problems, write_problems
from dataloader.datasets import FrameDataset, before_workers, worker_init
from dataloader.splits import (
    Split,
    check_training_classes,
    default_splits_dir,
    holdout_groups,
    load_split,
)
from engine.config import Options
from engine.distributed import SINGLE, Dist, all_gather, is_main
from engine.streams import StreamSpec
from utils.errors import UserError


def load_run_split(options) -> Split:
    """The split the options name (``dataset``, ``splits_dir`` or its default, ``split``);
    for training, one where every class has a training video."""
    source = options.data_root or options.videos
    splits_dir = options.splits_dir or default_splits_dir(options.dataset, source)
    split = load_split(options.dataset, splits_dir, options.split)
    if not options.evaluate:  # a class never trained could never be predicted
        check_training_classes(split, splits_dir)
    return split


def frame_source(options: Options, videos, train: bool, builder, strict: bool) -> FrameDataset:
    """The dataset of ``videos``: their extracted frames (--data-root), or their video files
    (--videos), whose frames are decoded where a sample reads them."""
    if options.videos is not None:
        from dataloader.video_dataset import VideoDataset  # PyAV only where videos are read

        return VideoDataset(options.videos, videos, train, builder,
                            short_side=options.short_side, strict=strict)  # fmt: skip
    return FrameDataset(
        options.data_root, videos, train, builder, layout=options.layout(), strict=strict
    )


def build_datasets(spec: StreamSpec, options: Options, split: Split, dist: Dist = SINGLE) -> dict:
    """{"test", and unless --evaluate "train" (and "val"): FrameDataset} of the run (of video
    files with --videos: frame_source).

    All sets are built before any training, so a video missing on disk stops the run at once.
    --check-data scans every frame of every video and reports all problems at once;
    --skip-bad-videos scans the same way, then leaves the bad videos out of the run and lists
    them in <record-dir>/skipped_videos.txt. Under torchrun each process scans 1/N of the
    videos and all get every finding.
    """
    train_videos, val_videos = split.train, split.val
    if options.val_groups and not options.evaluate:
        train_videos, val_videos = holdout_groups(split.train, options.val_groups, options.seed)
    parts = {"test": split.test}
    if not split.test:
        raise UserError(f"the {options.dataset} split has no test videos; check --splits-dir")
    if not options.evaluate:
        parts.update(train=train_videos, val=val_videos)
    builder = spec.sample_builder(options)
    strict = not (options.check_data or options.skip_bad_videos)
    sets = {
        name: frame_source(options, videos, name == "train", builder, strict)
        for name, videos in parts.items()
        if videos
    }
    if strict:
        return sets
    problems = {}
    for data in sets.values():
        found = find_problems(data, options.workers, shard=(dist.rank, dist.world))
        for part in all_gather(found):  # in rank order: the same dict in every process
            problems.update(part)
    if options.check_data:
        for name, found in sorted(problems.items()):
            for line in found:
                print(f"{name}: {line}")
        total = sum(len(data.items) + len(data.missing) for data in sets.values())
        if problems:
            raise UserError(
                f"{len(problems)} of {total} videos have problems (listed above); "
                f"{'replace' if options.videos else 're-extract'} them, or train with "
                "--skip-bad-videos to leave them out"
            )
        print(f"all {total} videos are readable")
        return sets
    if problems:
        record_dir = Path(options.record_dir)
        if is_main():  # every process drops the same videos; one writes the list
            record_dir.mkdir(parents=True, exist_ok=True)
            write_problems(problems, record_dir / "skipped_videos.txt")
        for data in sets.values():
            data.drop(problems)
        print(
            f"skipping {len(problems)} bad videos, listed in {record_dir / 'skipped_videos.txt'}",
            flush=True,
        )
    empty = [name for name, data in sets.items() if len(data) == 0]
    if empty:
        raise UserError(f"no readable videos left in the {empty[0]} set; see skipped_videos.txt")
    return sets


PREFETCH = 2  # batches each worker prepares ahead (DataLoader's prefetch_factor)


class SeededShuffle(DistributedSampler):
    """The training order: one permutation per epoch from --seed and set_epoch (DistributedSampler's;
    under torchrun padded with repeats to a multiple of the processes, rank r taking positions
    r, r + world, ...), with a seed for each video's augmentation.

    The seed depends on (--seed, epoch, video) only, so a sample's crops and frames are the same
    whatever --workers, the order the workers finish in, or the number of processes (their
    batches at a step are together the one-process batch of the same step), and a resumed run
    draws what an unbroken one does.
    """

    def __iter__(self):
        for index in super().__iter__():
            seed = np.random.SeedSequence((self.seed, self.epoch, index)).generate_state(1)[0]
            yield index, int(seed)


class SeededItems(Dataset):
    """A dataset read with (index, seed) keys: the item's random draws come from ``seed``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        with torch.random.fork_rng(devices=[]):  # the CPU generator only, given back after
            torch.random.default_generator.manual_seed(seed)
            return self.dataset[index]


class ShardSampler(Sampler):
    """Evaluation in a distributed run: rank r scores videos r, r + world, ... (no padding, so
    each video is scored exactly once; engine.distributed.gather_rows puts them back in order)."""

    def __init__(self, size: int, d: Dist):
        self.shard_indices = list(range(d.rank, size, d.world))

    def __iter__(self):
        return iter(self.shard_indices)

    def __len__(self) -> int:
        return len(self.shard_indices)


def make_loader(
    dataset, options, device, *, train: bool, seed: int, dist: Dist = SINGLE, reused: bool = True
) -> DataLoader:
    """Training: shuffled batches of videos. Evaluation: one video (all its snippets) per item.

    The workers of a loader that is ``reused`` (each epoch) stay up between its passes
    (``persistent_workers``), so an epoch does not wait for them to start and import again.

    Training draws come from SeededShuffle's (seed, epoch, video) seeds alone, never from a
    worker's or the main process's generator (dropout's). Under torchrun (``dist.enabled``)
    each process loads its share: SeededShuffle for training (``--batch-size`` videos per
    process), ShardSampler for evaluation.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    sampler = None
    if train:
        sampler = SeededShuffle(dataset, dist.world, dist.rank, shuffle=True, seed=seed)
        dataset = SeededItems(dataset)
    elif dist.enabled:
        sampler = ShardSampler(len(dataset), dist)
    before_workers(options.workers)
    return DataLoader(
        dataset,
        batch_size=options.batch_size if train else 1,
        sampler=sampler,
        num_workers=options.workers,
        persistent_workers=reused and options.workers > 0,
        prefetch_factor=PREFETCH if options.workers > 0 else None,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init,
        generator=generator,
    )
