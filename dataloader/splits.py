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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dataloader.split_lines import Line, check_unique, read_lines
from utils.errors import UserError

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


def _finish(dataset, split, classes, parts: dict[str, list]) -> Split:
    """The Split of parsed ``parts`` ({part: [(Line, Video)]}) once no video is listed twice."""
    check_unique([(line, video.name) for rows in parts.values() for line, video in rows])
    videos = {part: [video for _, video in rows] for part, rows in parts.items()}
    return Split(dataset, split, classes, videos["train"], videos["test"], videos.get("val", []))


def _ucf101_classes(index_file: Path) -> dict[int, str]:
    """{class id: name} of classInd.txt; a malformed line or an id or name given twice is refused."""
    classes: dict[int, str] = {}
    lines: dict[int | str, Line] = {}  # the line of each id and of each name
    for line in read_lines(index_file, "UCF101 class index"):
        fields = line.text.split(maxsplit=1)
        if len(fields) < 2 or not _is_number(fields[0]):
            raise UserError(
                f"{line.where}: {line.text!r} is not '<class id> <class name>'; fix the line"
            )
        number, name = int(fields[0]), fields[1]
        for key, what in ((number, f"class id {number}"), (name.lower(), f"class {name!r}")):
            seen = lines.setdefault(key, line)
            if seen is not line:
                raise UserError(
                    f"{line.where}: {what} of {line.text!r} is given again, first at line "
                    f"{seen.number} ({seen.text!r}); give each class its own id and one line"
                )
        classes[number] = name
    return classes


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
    classes = _ucf101_classes(index_file)
    names = [classes[i] for i in sorted(classes)]
    by_name = {name.lower(): i for i, name in enumerate(names)}

    def label_of(line: Line) -> int:
        parts = line.text.split()
        if len(parts) > 2:
            raise UserError(
                f"{line.where}: {line.text!r} is not '<class>/<video>.avi [<class id>]' "
                "(a name with a space?); fix the line"
            )
        class_name = parts[0].replace("\\", "/").rpartition("/")[0]
        label = by_name.get(class_name.lower()) if class_name else None
        if class_name and label is None:
            raise UserError(
                f"{line.where}: class {class_name!r} of {line.text!r} is not in {index_file}; "
                "add it there or remove the line"
            )
        if len(parts) == 1:
            if label is None:
                raise UserError(f"{line.where}: no class folder or class id in {line.text!r}")
            return label
        named = classes.get(int(parts[1])) if _is_number(parts[1]) else None
        if named is None:
            raise UserError(
                f"{line.where}: class id {parts[1]} of {line.text!r} is not in {index_file} "
                f"({len(classes)} classes); add it there or remove the line"
            )
        if label is not None and label != by_name[named.lower()]:
            raise UserError(
                f"{line.where}: {line.text!r} is in folder {class_name!r} but class id "
                f"{parts[1]} is {named!r} in {index_file}; make them agree"
            )
        return by_name[named.lower()]

    def parse(filename: str) -> list[tuple[Line, Video]]:
        lines = read_lines(splits_dir / filename, f"UCF101 split {split}")
        return [(line, Video(_stem(line.text.split()[0]), label_of(line))) for line in lines]

    parts = {"train": parse(f"trainlist{split:02d}.txt"), "test": parse(f"testlist{split:02d}.txt")}
    return _finish("ucf101", split, names, parts)


def _stem(path: str) -> str:
    """The video of a split line's path: its file name without folders and extension."""
    return Path(path.replace("\\", "/").rsplit("/", 1)[-1]).stem


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
    parts = {"train": [], "test": [], "unused": []}
    for label, path in enumerate(files):
        for line in read_lines(path, f"HMDB51 split {split}"):
            fields = line.text.split()
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise UserError(
                    f"{line.where}: {line.text!r} is not '<video>.avi <tag>' with tag 1 (train), "
                    "2 (test) or 0 (unused); fix the line (a video name must hold no space)"
                )
            part = {"1": "train", "2": "test", "0": "unused"}[fields[1]]
            parts[part].append((line, Video(_stem(fields[0]), label)))
    classes = [f.name[: -len(suffix)] for f in files]
    return _finish("hmdb51", split, classes, parts)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


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


def _custom_classes(classes_file: Path) -> list[str]:
    """classes.txt's names in label order (none without the file); a name twice is refused."""
    if not classes_file.is_file():
        return []
    seen: dict[str, Line] = {}
    for line in read_lines(classes_file, "class names"):
        first = seen.setdefault(line.text.lower(), line)
        if first is not line:
            raise UserError(
                f"{line.where}: class {line.text!r} is listed again (letter case aside), first "
                f"at line {first.number}; list each class once"
            )
    return [line.text for line in seen.values()]


def _custom_video(line: Line, names: list[str], by_name: dict, classes_file: Path) -> Video:
    """The video of one line of a custom list; ``names`` grows for mmaction's numbered classes."""
    tokens = line.text.split()
    if len(tokens) < 2:
        raise UserError(f"{line.where}: {line.text!r} needs '<video> <class name>'")
    named = _named_class(line.text, by_name)
    video = tokens[0]
    if named is not None:
        video, label = named
    elif _is_number(tokens[-1]) and (len(tokens) == 2 or _is_number(tokens[1])):
        label = int(tokens[-1])  # mmaction: <video> <label> or <dir> <frames> <label>
        if not by_name:  # without classes.txt, classes are their numbers
            names.extend(str(i) for i in range(len(names), label + 1))
        elif label >= len(names):
            raise UserError(
                f"{line.where}: label {label} of {line.text!r} is beyond the {len(names)} "
                f"classes of {classes_file}"
            )
    else:
        rest = line.text.split(maxsplit=1)[1].strip()
        raise UserError(
            f"{line.where}: class {rest!r} of {line.text!r} is not in {classes_file}; "
            "add it there or fix the line"
        )
    video = video.replace("\\", "/").rsplit("/", 1)[-1]
    extension = _EXTENSION.search(video)  # not the dot of "Dr. Who clip"
    return Video(video[: extension.start()] if extension else video, label)


def load_custom(splits_dir: str | Path) -> Split:
    """Read a custom split folder (see the module docstring)."""
    splits_dir = Path(splits_dir)
    classes_file = splits_dir / "classes.txt"
    names = _custom_classes(classes_file)
    by_name = {name.lower(): i for i, name in enumerate(names)}
    parts = {}
    for part in ("train", "test", "val"):
        path = splits_dir / f"{part}.txt"
        if part == "val" and not path.is_file():
            continue
        lines = read_lines(path, f"{part} list of a custom split")
        parts[part] = [(line, _custom_video(line, names, by_name, classes_file)) for line in lines]
    return _finish("custom", 1, names, parts)


def load_split(dataset: str, splits_dir: str | Path, split: int = 1) -> Split:
    if dataset == "ucf101":
        return load_ucf101(splits_dir, split)
    if dataset == "hmdb51":
        return load_hmdb51(splits_dir, split)
    if dataset == "custom":
        return load_custom(splits_dir)
    raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def check_training_classes(split: Split, splits_dir: str | Path) -> None:
    """Refuse to train when a class has test (or validation) videos but no training video: the
    network could never predict it, and its test videos would be errors in every run."""
    trained = {video.label for video in split.train}
    tested = Counter(video.label for video in split.test + split.val if video.label not in trained)
    if not tested:
        return
    label = min(tested)
    splits_dir = Path(splits_dir)
    where = {
        "ucf101": splits_dir / f"trainlist{split.split:02d}.txt",
        "hmdb51": splits_dir / f"{split.classes[label]}_test_split{split.split}.txt",
    }.get(split.dataset, splits_dir / "train.txt")
    others = f" (and {len(tested) - 1} other classes)" if len(tested) > 1 else ""
    videos = f"{tested[label]} test video{'s' if tested[label] > 1 else ''}"
    raise UserError(
        f"class {split.classes[label]!r}{others} has {videos} but no training video in "
        f"{where}: it could never be predicted; add training videos of it there, or remove "
        "its test videos (and the class) from the split"
    )


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
