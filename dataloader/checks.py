"""Find every bad video of a dataset in one pass: missing, empty, gappy, short or corrupt.

Every frame is decoded, and one whose image data is corrupt counts as bad even where OpenCV
decodes it (partly grey) and a training read would take it (dataloader.jpeg_check).

Used by ``--check-data`` (report and stop) and ``--skip-bad-videos`` (drop them before training):
a job that runs for days should learn about a broken download in its first minutes, all of it at
once, not one crash at a time.
"""

import os

import torch

from dataloader.datasets import DataError, FrameDataset, before_workers, read_jpeg, worker_init
from dataloader.frame_index import IndexedVideo
from dataloader.jpeg_check import DecoderWarnings, marker_problem
from dataloader.layout import pattern_regex
from utils.atomic import write_text
from utils.progress import progress


def _numbers(folder: str, regex) -> list[int]:
    with os.scandir(folder) as entries:
        return sorted(int(m.group(1)) for e in entries if (m := regex.match(e.name)))


def _frame_problem(path: str, color: bool, warnings: DecoderWarnings) -> str:
    """What is wrong with one frame ("" when nothing is): it is missing, does not decode, or
    its image data is corrupt though OpenCV decodes it (dataloader.jpeg_check)."""
    try:
        read_jpeg(path, color=color)
    except DataError as err:
        warnings.corrupt()  # the failed decode's own warnings
        return str(err).split(";")[0]
    if warning := warnings.corrupt():
        return f"corrupt frame {path} (libjpeg: {warning})"
    fd = os.open(path, os.O_RDONLY)  # a third of open().read()'s time
    try:
        problem = marker_problem(os.read(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)
    return f"corrupt frame {path} ({problem})" if problem else ""


def _unreadable(folder: str, pattern: str, numbers: list[int], color: bool) -> list[str]:
    """A line for each bad frame of one folder."""
    with DecoderWarnings() as warnings:
        found = (
            _frame_problem(os.path.join(folder, pattern % n), color, warnings) for n in numbers
        )
        return [problem for problem in found if problem]


def video_problems(dataset: FrameDataset, item: IndexedVideo) -> list[str]:
    """Every problem of one video's frame folders, each a line naming the file or folder."""
    problems = []
    counts = []
    parts = dataset.layout.modality(dataset.modality)
    for folder, (_, pattern) in zip(item.dirs, parts, strict=True):
        numbers = _numbers(folder, pattern_regex(pattern))
        counts.append(len(numbers))
        if not numbers:
            problems.append(f"no frames in {folder}")
            continue
        gaps = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        if gaps:
            more = f" and {len(gaps) - 1} more" if len(gaps) > 1 else ""
            problems.append(f"missing frame {os.path.join(folder, pattern % gaps[0])}{more}")
        problems += _unreadable(folder, pattern, numbers, color=dataset.modality == "rgb")
    if dataset.modality == "flow":
        if counts[0] != counts[1]:
            problems.append(f"x-flow has {counts[0]} frames but y-flow has {counts[1]}")
        video = os.path.relpath(item.dirs[0], dataset.data_root / dataset.layout.flow_x_dir)
        rgb_dir = dataset.data_root / dataset.layout.rgb_dir / video  # video may be <class>/<name>
        if rgb_dir.is_dir():
            rgb = len(_numbers(str(rgb_dir), pattern_regex(dataset.layout.rgb_pattern)))
            if min(counts) < rgb - 1:
                problems.append(
                    f"flow has {min(counts)} frames but RGB has {rgb} (expected {rgb - 1})"
                )
    return problems


class _Scan(torch.utils.data.Dataset):
    """The videos of one shard: ``rank``, ``rank + world``, ... of the dataset's."""

    def __init__(self, dataset: FrameDataset, rank: int = 0, world: int = 1):
        self.dataset = dataset
        self.items = dataset.items[rank::world]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        item = self.items[index]
        scan = getattr(self.dataset, "problems", None)  # a dataset of video files checks its own
        return item.name, scan(item) if scan else video_problems(self.dataset, item)


def _keep(batch):
    return batch


def find_problems(
    dataset: FrameDataset, workers: int = 0, shard: tuple[int, int] = (0, 1)
) -> dict[str, list[str]]:
    """Scan every frame of every video (in ``workers`` processes); {video: problems} of bad ones.
    ``shard`` (rank, world): scan only videos rank, rank + world, ... (the processes of a
    distributed run share the scan); missing videos are listed by every shard.

    The dataset must have been built with ``strict=False`` to list missing videos too.
    """
    problems = {
        name: [f"no {dataset.modality} frames on disk under {dataset.data_root}"]
        for name in dataset.missing
    }
    before_workers(workers)
    loader = torch.utils.data.DataLoader(
        _Scan(dataset, *shard),
        batch_size=1,
        num_workers=workers,
        collate_fn=_keep,
        worker_init_fn=worker_init,
    )
    for ((name, found),) in progress(
        loader, desc=f"checking {dataset.modality} frames", unit="video", leave=True
    ):
        if found:
            problems[name] = found
    return problems


def write_problems(problems: dict[str, list[str]], path) -> None:
    """One line per video: name, a tab, its problems joined by '; '."""
    write_text(
        path, "".join(f"{name}\t{'; '.join(found)}\n" for name, found in sorted(problems.items()))
    )
