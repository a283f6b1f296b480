"""The official UCF101 and HMDB51 train/test splits, as (video name, label) lists.

Video names are the file stems of the split files (``v_ApplyEyeMakeup_g08_c01``,
``April_09_brush_hair_u_nm_np1_ba_goo_0``); labels are 0-based indices into ``Split.classes``.
"""

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from utils.errors import UserError
from utils.video_names import video_key  # noqa: F401  (the names' rule; re-exported)

DATASETS = ("ucf101", "hmdb51")
_UCF_GROUP = re.compile(r"_g(\d+)_c\d+$")


@dataclass(frozen=True)
class Video:
    name: str
    label: int


@dataclass
class Split:
    dataset: str
    split: int
    classes: list[str]
    train: list[Video] = field(default_factory=list)
    test: list[Video] = field(default_factory=list)


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise UserError(
            f"split file not found: {path} ({what}); point --splits-dir at the folder that holds it"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _check_split(split: int) -> None:
    if split not in (1, 2, 3):
        raise UserError(f"--split must be 1, 2 or 3, got {split}")


def load_ucf101(splits_dir: str | Path, split: int = 1) -> Split:
    """Read classInd.txt, trainlistNN.txt and testlistNN.txt (Windows or Unix line endings)."""
    _check_split(split)
    splits_dir = Path(splits_dir)
    classes: dict[int, str] = {}
    for line in _read_lines(splits_dir / "classInd.txt", "UCF101 class index"):
        index, name = line.split(maxsplit=1)
        classes[int(index)] = name
    names = [classes[i] for i in sorted(classes)]
    by_name = {name.lower(): i for i, name in enumerate(names)}

    def parse(filename: str) -> list[Video]:
        videos = []
        for line in _read_lines(splits_dir / filename, f"UCF101 split {split}"):
            parts = line.split()
            path = parts[0].replace("\\", "/")
            class_name, _, file = path.rpartition("/")
            if len(parts) > 1:
                label = int(parts[1]) - 1
            elif class_name.lower() in by_name:
                label = by_name[class_name.lower()]
            else:
                raise UserError(
                    f"{splits_dir / filename}: unknown class {class_name!r} in {line!r}"
                )
            videos.append(Video(Path(file).stem, label))
        return videos

    return Split(
        "ucf101",
        split,
        names,
        parse(f"trainlist{split:02d}.txt"),
        parse(f"testlist{split:02d}.txt"),
    )


def load_hmdb51(splits_dir: str | Path, split: int = 1) -> Split:
    """Read ``<class>_test_split<N>.txt`` files: tag 1 = train, 2 = test, 0 = unused."""
    _check_split(split)
    splits_dir = Path(splits_dir)
    suffix = f"_test_split{split}.txt"
    files = sorted(splits_dir.glob(f"*{suffix}"))
    if not files:
        raise UserError(
            f"no HMDB51 split files *{suffix} in {splits_dir}; point --splits-dir at "
            "the testTrainMulti_7030_splits folder"
        )
    result = Split("hmdb51", split, [f.name[: -len(suffix)] for f in files])
    for label, path in enumerate(files):
        for line in _read_lines(path, f"HMDB51 split {split}"):
            file, tag = line.split()
            if tag == "1":
                result.train.append(Video(Path(file).stem, label))
            elif tag == "2":
                result.test.append(Video(Path(file).stem, label))
    return result


def load_split(dataset: str, splits_dir: str | Path, split: int = 1) -> Split:
    if dataset == "ucf101":
        return load_ucf101(splits_dir, split)
    if dataset == "hmdb51":
        return load_hmdb51(splits_dir, split)
    raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def default_splits_dir(dataset: str, data_root: str | Path) -> Path:
    """Where the official split folder sits under a data root, as the archives unpack."""
    name = "ucfTrainTestlist" if dataset == "ucf101" else "testTrainMulti_7030_splits"
    return Path(data_root) / name


def ucf101_group(name: str) -> int | None:
    match = _UCF_GROUP.search(name)
    return int(match.group(1)) if match else None


def holdout_groups(
    videos: list[Video], num_groups: int, seed: int = 0
) -> tuple[list[Video], list[Video]]:
    """Split training videos into (train, validation) by whole UCF101 groups (gXX).

    Clips of one group share actor and scene, so a group is either all in training or all in
    validation: the validation accuracy then says how well the model generalises.
    """
    groups = sorted({ucf101_group(v.name) for v in videos} - {None})
    if not groups:
        raise UserError(
            "a validation hold-out needs UCF101-style names with groups (_gXX_cYY); "
            "these videos have none"
        )
    if not 0 < num_groups < len(groups):
        raise UserError(
            f"cannot hold out {num_groups} groups: the training list has {len(groups)} groups"
        )
    held = set(random.Random(seed).sample(groups, num_groups))
    train = [v for v in videos if ucf101_group(v.name) not in held]
    val = [v for v in videos if ucf101_group(v.name) in held]
    return train, val
