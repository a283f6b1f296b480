"""Find every bad video of a dataset in one pass: missing, empty, gappy, short or corrupt, in
frame folders and packs alike.

Every frame is decoded, and one whose image data is corrupt counts as bad even where OpenCV
decodes it (partly grey) and a training read would take it (dataloader.jpeg_check).

Used by ``--check-data`` (report and stop) and ``--skip-bad-videos`` (drop them before training):
a job that runs for days should learn about a broken download in its first minutes, all of it at
once, not one crash at a time.
"""

import os

import torch

from dataloader.datasets import (
    DataError,
    FrameDataset,
    before_workers,
    decode_checked,
    pack_bytes,
    read_bytes,
    worker_init,
)
from dataloader.frame_index import IndexedVideo
from dataloader.jpeg_check import DecoderWarnings, marker_problem
from dataloader.layout import PACK_SUFFIXES, frame_numbers, pattern_regex
from dataloader.packs import PackError, member_names, numbered, pack_counts
from utils.atomic import write_text
from utils.progress import progress


def _frame_problem(shown: str, load, color: bool, warnings: DecoderWarnings) -> str:
    """What is wrong with one frame ("" when nothing is): it is missing, does not decode, or
    its image data is corrupt though OpenCV decodes it (dataloader.jpeg_check). ``load()``
    gives its bytes; ``shown`` names it."""
    try:
        data = load()
        decode_checked(data, color, False, shown)
    except DataError as err:
        warnings.corrupt()  # the failed decode's own warnings
        return str(err).split(";")[0]
    if warning := warnings.corrupt():
        return f"corrupt frame {shown} (libjpeg: {warning})"
    problem = marker_problem(data.tobytes())
    return f"corrupt frame {shown} ({problem})" if problem else ""


def _unreadable(numbers: list[int], frame, color: bool) -> list[str]:
    """A line for each bad frame of one folder (``frame(n)``: its name and its loader)."""
    with DecoderWarnings() as warnings:
        found = (_frame_problem(*frame(n), color, warnings) for n in numbers)
        return [problem for problem in found if problem]


def _parts(dataset: FrameDataset, item: IndexedVideo) -> list[tuple]:
    """(where, frame numbers, ``frame(n)`` -> (name, loader of its bytes)) of each folder of a
    video, or of each folder's members in its pack (PackError or OSError: an unreadable pack)."""
    if item.pack:
        names = member_names(item.pack)

        def packed(template):
            def frame(n):
                return f"{item.pack}/{template % n}", lambda: pack_bytes(item.pack, template % n)

            where = f"{item.pack}/{template.rsplit('/', 1)[0].replace('%%', '%')}"
            return where, numbered(names, template), frame

        return [packed(template) for template in item.templates]

    def folder(path, pattern):
        def frame(n):
            name = os.path.join(path, pattern % n)
            return name, lambda: read_bytes(name)

        return path, frame_numbers(path, pattern_regex(pattern)), frame

    patterns = [pattern for _, pattern in dataset.layout.modality(dataset.modality)]
    return [folder(path, pattern) for path, pattern in zip(item.dirs, patterns, strict=True)]


def _rgb_count(dataset: FrameDataset, item: IndexedVideo) -> int | None:
    """How many RGB frames the flow video ``item`` has in its folder or pack; None if neither."""
    layout, root = dataset.layout, dataset.data_root
    video = os.path.relpath(item.dirs[0], root / layout.flow_x_dir)  # may be <class>/<name>
    if (root / layout.rgb_dir / video).is_dir():
        return len(
            frame_numbers(str(root / layout.rgb_dir / video), pattern_regex(layout.rgb_pattern))
        )
    pack = root / layout.pack_dir("rgb") / (video + PACK_SUFFIXES["rgb"])
    return (
        pack_counts(str(pack), layout.pack_templates("rgb", video))[0] if pack.is_file() else None
    )


def video_problems(dataset: FrameDataset, item: IndexedVideo) -> list[str]:
    """Every problem of one video's frame folders or pack, each a line naming the file or folder."""
    try:
        parts = _parts(dataset, item)
    except (OSError, PackError) as err:
        return [f"unreadable pack {item.pack} ({err})"]
    problems, counts = [], []
    for where, numbers, frame in parts:
        counts.append(len(numbers))
        if not numbers:
            problems.append(f"no frames in {where}")
            continue
        gaps = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        if gaps:
            more = f" and {len(gaps) - 1} more" if len(gaps) > 1 else ""
            problems.append(f"missing frame {frame(gaps[0])[0]}{more}")
        problems += _unreadable(numbers, frame, color=dataset.modality == "rgb")
    if dataset.modality == "flow":
        if counts[0] != counts[1]:
            problems.append(f"x-flow has {counts[0]} frames but y-flow has {counts[1]}")
        rgb = _rgb_count(dataset, item)
        if rgb is not None and min(counts) < rgb - 1:
            problems.append(f"flow has {min(counts)} frames but RGB has {rgb} (expected {rgb - 1})")
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
