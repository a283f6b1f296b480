"""Train/test splits as (video name, label) lists: UCF101, HMDB51 and your own (``custom``).

Video names are the file stems of the split files (``v_ApplyEyeMakeup_g08_c01``,
``April_09_brush_hair_u_nm_np1_ba_goo_0``); labels are 0-based indices into ``Split.classes``,
always found through the class *name*, so a trimmed class list cannot give a wrong label.

``custom``: a folder with ``classes.txt`` (one class name per line, in label order) and
``train.txt`` / ``test.txt`` (optionally ``val.txt``), one ``<video> <class name>`` per line,
where ``<video>`` is the frame folder name under the data root (folders and extension are
ignored). Either may hold spaces: a tab between the two (as ``write_custom_split`` writes them)
separates them, else the longest listed class name the line ends with is its class. mmaction2's
annotation lists (``<video> <label>``, rawframes ``<dir> <frames> <label>``) are read too;
without ``classes.txt`` their classes are named by their numbers.
"""

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from utils.errors import UserError
from utils.video_names import video_key  # noqa: F401  (the names' rule; re-exported)

DATASETS = ("ucf101", "hmdb51", "custom")
SPLIT_FOLDERS = {
    "ucf101": "ucfTrainTestlist",
    "hmdb51": "testTrainMulti_7030_splits",
    "custom": "splits",
}
_UCF_GROUP = re.compile(r"_g(\d+)_c\d+$")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{2,5}$")


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
    val: list[Video] = field(default_factory=list)  # custom splits may name a validation set


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise UserError(
            f"split file not found: {path} ({what}); point --splits-dir at the folder that holds it"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _custom_hint(splits_dir: Path, missing: str) -> None:
    """Raise when a benchmark's split files are missing but a custom split is there."""
    for folder in (splits_dir, splits_dir.parent / SPLIT_FOLDERS["custom"]):
        if (folder / "classes.txt").is_file():
            raise UserError(
                f"{missing} not found in {splits_dir}, but {folder / 'classes.txt'} is there: "
                "for a split of your own (such as --test-fraction writes) pass --dataset custom"
            )


def _check_split(split: int) -> None:
    if split not in (1, 2, 3):
        raise UserError(f"--split must be 1, 2 or 3, got {split}")


def load_ucf101(splits_dir: str | Path, split: int = 1) -> Split:
    """Read classInd.txt, trainlistNN.txt and testlistNN.txt (Windows or Unix line endings).

    A line's label is its class folder's (``Class/v_Name.avi``); a class id after it must name
    the same class in classInd.txt. Lines of classes that classInd.txt lacks are an error.
    """
    _check_split(split)
    splits_dir = Path(splits_dir)
    index_file = splits_dir / "classInd.txt"
    if not index_file.is_file():
        _custom_hint(splits_dir, "UCF101's classInd.txt")
    classes: dict[int, str] = {}
    for line in _read_lines(index_file, "UCF101 class index"):
        index, name = line.split(maxsplit=1)
        classes[int(index)] = name
    names = [classes[i] for i in sorted(classes)]
    by_name = {name.lower(): i for i, name in enumerate(names)}

    def parse(filename: str) -> list[Video]:
        videos = []
        where = splits_dir / filename
        for line in _read_lines(where, f"UCF101 split {split}"):
            parts = line.split()
            path = parts[0].replace("\\", "/")
            class_name, _, file = path.rpartition("/")
            label = by_name.get(class_name.lower()) if class_name else None
            if class_name and label is None:
                raise UserError(
                    f"{where}: class {class_name!r} of {line!r} is not in {index_file}; "
                    "add it there or remove the line"
                )
            if len(parts) > 1:
                number = int(parts[1]) if parts[1].isdigit() else None
                named = classes.get(number)
                if named is None:
                    raise UserError(
                        f"{where}: class id {parts[1]} of {line!r} is not in {index_file} "
                        f"({len(classes)} classes); add it there or remove the line"
                    )
                if label is not None and label != by_name[named.lower()]:
                    raise UserError(
                        f"{where}: {line!r} is in folder {class_name!r} but class id "
                        f"{number} is {named!r} in {index_file}; make them agree"
                    )
                label = by_name[named.lower()]
            elif label is None:
                raise UserError(f"{where}: no class folder or class id in {line!r}")
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
        _custom_hint(splits_dir, f"HMDB51's *{suffix} split files")
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


def _is_number(text: str) -> bool:
    return text.isdigit()


def _named_class(line: str, by_name: dict[str, int]) -> tuple[str, int] | None:
    """(video, label) of a ``<video> <class name>`` line whose class is listed, else None."""
    if "\t" in line:
        video, _, name = line.rpartition("\t")
        label = by_name.get(name.strip().lower())
        return None if label is None else (video.strip(), label)
    lower = line.lower()
    for name in sorted(by_name, key=len, reverse=True):
        if lower.endswith(name) and len(line) > len(name) and line[-len(name) - 1].isspace():
            return line[: -len(name)].strip(), by_name[name]
    return None


def load_custom(splits_dir: str | Path) -> Split:
    """Read a custom split folder (see the module docstring)."""
    splits_dir = Path(splits_dir)
    classes_file = splits_dir / "classes.txt"
    names = _read_lines(classes_file, "class names") if classes_file.is_file() else []
    if len({n.lower() for n in names}) != len(names):
        raise UserError(f"{classes_file} lists a class twice (letter case aside); list each once")
    by_name = {name.lower(): i for i, name in enumerate(names)}
    numbered = not names  # mmaction lists without classes.txt: classes are their numbers
    parts = {}
    for part in ("train", "test", "val"):
        path = splits_dir / f"{part}.txt"
        if part == "val" and not path.is_file():
            parts[part] = []
            continue
        videos = []
        for line in _read_lines(path, f"{part} list of a custom split"):
            tokens = line.split()
            rest = line.split(maxsplit=1)[1].strip() if len(tokens) > 1 else ""
            if len(tokens) < 2:
                raise UserError(f"{path}: {line!r} needs '<video> <class name>'")
            named = _named_class(line, by_name)
            video = tokens[0]
            if named is not None:
                video, label = named
            elif _is_number(tokens[-1]) and (len(tokens) == 2 or _is_number(tokens[1])):
                label = int(tokens[-1])  # mmaction: <video> <label> or <dir> <frames> <label>
                if numbered:
                    names.extend(str(i) for i in range(len(names), label + 1))
                elif label >= len(names):
                    raise UserError(
                        f"{path}: label {label} of {line!r} is beyond the {len(names)} classes "
                        f"of {classes_file}"
                    )
            else:
                raise UserError(
                    f"{path}: class {rest!r} of {line!r} is not in {classes_file}; "
                    "add it there or fix the line"
                )
            video = video.replace("\\", "/").rsplit("/", 1)[-1]
            extension = _EXTENSION.search(video)  # not the dot of "Dr. Who clip"
            videos.append(Video(video[: extension.start()] if extension else video, label))
        parts[part] = videos
    return Split("custom", 1, names, parts["train"], parts["test"], parts["val"])


def load_split(dataset: str, splits_dir: str | Path, split: int = 1) -> Split:
    if dataset == "ucf101":
        return load_ucf101(splits_dir, split)
    if dataset == "hmdb51":
        return load_hmdb51(splits_dir, split)
    if dataset == "custom":
        return load_custom(splits_dir)
    raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def default_splits_dir(dataset: str, data_root: str | Path) -> Path:
    """Where the split folder is: under the data root, else beside it (as the README's layout
    unpacks the official archives: data/ucfTrainTestlist next to data/ucf101)."""
    name = SPLIT_FOLDERS[dataset]
    inside = Path(data_root) / name
    beside = Path(data_root).resolve().parent / name
    return beside if not inside.is_dir() and beside.is_dir() else inside


def write_custom_split(
    videos: dict[str, list[str]], out_dir, test_fraction: float, seed: int = 0
) -> dict[str, int]:
    """Write classes.txt, train.txt and test.txt for ``{class: [video names]}``.

    Deterministic: videos that share a UCF101-style group (``_gXX_``) stay together, others are
    split file by file; a hash of (seed, class, group) picks the test groups, so adding videos
    never moves existing ones. Returns the counts per part. A class left with no training
    video (one clip, or one group, drawn for test) is named in one warning line on stderr.
    """
    import hashlib

    if not 0 < test_fraction < 1:
        raise UserError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = sorted(videos)
    lines = {"train": [], "test": []}
    trained = set()
    for cls in classes:
        for name in sorted(videos[cls]):
            group = ucf101_group(name)
            key = f"{seed}|{cls}|{group if group is not None else name}"
            draw = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            part = "test" if draw < test_fraction else "train"
            lines[part].append(f"{name}\t{cls}\n")
            if part == "train":
                trained.add(cls)
    from utils.atomic import write_text

    write_text(out_dir / "classes.txt", "".join(f"{c}\n" for c in classes))
    for part, rows in lines.items():
        write_text(out_dir / f"{part}.txt", "".join(rows))
    _warn_untrained([c for c in classes if c not in trained], videos, test_fraction)
    return {part: len(rows) for part, rows in lines.items()}


def _warn_untrained(untrained: list[str], videos: dict[str, list[str]], fraction: float) -> None:
    """One line on stderr naming the classes a split left without a training video."""
    if not untrained:
        return
    import sys

    shown = ", ".join(f"{c!r} ({len(videos[c])} video{'s' * (len(videos[c]) != 1)})"
                      for c in untrained[:5])  # fmt: skip
    more = f" and {len(untrained) - 5} more" if len(untrained) > 5 else ""
    print(
        f"warning: {len(untrained)} class(es) have no training video, all theirs went to test "
        f"(--test-fraction {fraction}): {shown}{more}; a model cannot learn them: add videos "
        "to those classes (a few groups or clips each) or remove their folders from --videos",
        file=sys.stderr,
    )


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
