"""Pack a folder layout of frames and flow into one file per video and modality.

    python tools/pack_frames.py data/ucf101 --out data/ucf101_packed [--rgb-dir ...]

Every video folder of SRC (the layout options as the streams take them; folders may sit one
class level deeper) becomes a pack in DST, where every stream reads it as it reads folders
(dataloader/layout.py, dataloader/packs.py):

    DST/jpegs_256/<video>.zip              the RGB frames' JPEG files, uncompressed
    DST/tvl1_flow/<video>.flow.zip         the x- and y-flow files together

Each pack is written to a temporary file, read back and compared with its source files byte for
byte, and only then renamed into place: a pack in DST is always whole and checked. A killed run
leaves no half pack; the same command continues, skipping packs that already hold the source's
frames (a source folder that changed since is packed again). One run writes DST at a time (a
second is refused, naming the first). SRC's index.json (how the frames were extracted) and its
split folders are copied along, so DST serves as a --data-root by itself.

Fault points (utils/faults.py): ``pack.member`` before each frame is added, ``pack.done`` after
each pack is in place.
"""

import json
import os
import sys
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloader.layout import PACK_SUFFIXES, Layout, frame_numbers, pattern_regex
from dataloader.packs import PackError, folder_members, member_names, pack_folders
from dataloader.splits import SPLIT_FOLDERS
from extraction.settings import INDEX_NAME
from utils.atomic import atomic_write, remove_stale_tmp, write_json
from utils.errors import UserError, run_cli
from utils.faults import fault_point
from utils.locks import folder_lock
from utils.progress import progress


def parse_args(argv=None):
    from engine.cli import add_layout_arguments
    from utils.cli import Parser

    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="the data root whose frame folders to pack")
    p.add_argument("--out", type=Path, required=True, help="the data root to write the packs to")
    add_layout_arguments(p)
    return p.parse_args(argv)


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def video_folders(folder: Path, pattern: str) -> list[str]:
    """The video folders under ``folder`` (paths relative to it, sorted): those holding a file
    ``pattern`` names, directly in it or one class folder deeper."""
    regex, found = pattern_regex(pattern), []
    for top in _subfolders(folder):
        if frame_numbers(str(folder / top), regex):
            found.append(top)
            continue
        nested = [f"{top}/{name}" for name in _subfolders(folder / top)]
        found += [name for name in nested if frame_numbers(str(folder / name), regex)]
    return found


def _packed(pack: Path, parts) -> bool:
    """Whether ``pack`` holds the frames ``parts`` name already: the same member names, and no
    frame file changed after the pack was written (a re-extracted video is packed again)."""
    if not pack.is_file():
        return False
    try:
        names = member_names(str(pack))
        written = pack.stat().st_mtime_ns
    except (OSError, PackError):
        return False
    files = [pair for found in folder_members(parts) for pair in found]
    if names != [name for name, _ in files]:
        return False
    return all(os.stat(path).st_mtime_ns <= written for _, path in files)


def pack_modality(src: Path, out: Path, layout: Layout, modality: str) -> tuple[int, int, list]:
    """Pack every video of one modality: (packed now, packed before, [lines of skipped ones])."""
    folders = layout.modality(modality)
    if not (src / folders[0][0]).is_dir():
        return 0, 0, []
    videos = video_folders(src / folders[0][0], folders[0][1])
    base = out / layout.pack_dir(modality)
    cleaned, packed, before, skipped = set(), 0, 0, []
    for video in progress(videos, desc=f"packing {modality}", unit="video", leave=True):
        parts = [
            (str(src / folder / video), pattern, template)
            for (folder, pattern), template in zip(
                folders, layout.pack_templates(modality, video), strict=True
            )
        ]
        absent = [folder for folder, _, _ in parts if not os.path.isdir(folder)]
        if absent:
            skipped.append(f"{video}: no folder {absent[0]}; not packed")
            continue
        pack = base / (video + PACK_SUFFIXES[modality])
        if pack.parent not in cleaned and pack.parent.is_dir():
            remove_stale_tmp(pack.parent)  # left by a killed run; we hold DST's lock
        cleaned.add(pack.parent)
        if _packed(pack, parts):
            before += 1
            continue
        pack_folders(pack, parts)
        fault_point("pack.done")
        packed += 1
    return packed, before, skipped


def _read_record(index: Path) -> dict:
    try:
        record = json.loads(index.read_text())
    except ValueError as err:
        record = err
    if not isinstance(record, dict):
        raise UserError(
            f"{index} is not the JSON record extraction writes ({record}); rewrite it with "
            "tools/extract_frames_flow.py --index-only (the same --out, --videos)"
        )
    return record


def _same_record(path: Path, record: dict) -> bool:
    try:
        return json.loads(path.read_text()) == record
    except ValueError:  # damaged: written again
        return False


def copy_records(src: Path, out: Path) -> None:
    """SRC's index.json (saying the root holds packs) and split folders, where DST lacks them or
    holds others."""
    index = src / INDEX_NAME
    if index.is_file():
        record = {**_read_record(index), "storage": "packs"}
        target = out / INDEX_NAME
        if not (target.is_file() and _same_record(target, record)):
            write_json(target, record)
    files = []
    for name in sorted(set(SPLIT_FOLDERS.values())):
        if (src / name).is_dir():
            files += sorted(p for p in (src / name).iterdir() if p.is_file())
    for path in files:
        target = out / path.relative_to(src)
        if not (target.is_file() and target.read_bytes() == path.read_bytes()):
            with atomic_write(target) as file:
                file.write(path.read_bytes())


def main(argv=None) -> int:
    args = parse_args(argv)
    layout = Layout(**{f.name: getattr(args, f.name) for f in fields(Layout)})
    src, out = args.src, args.out
    if not src.is_dir():
        raise UserError(f"{src} is not a folder; give the data root that holds the frame folders")
    if out.resolve() == src.resolve():
        raise UserError(f"--out {out} is SRC itself; pack into another folder")
    folders = [src / layout.modality(m)[0][0] for m in ("rgb", "flow")]
    if not any(folder.is_dir() for folder in folders):
        raise UserError(
            f"no frame folders found in {' or '.join(map(str, folders))}; check SRC and the "
            "layout options (--rgb-dir, --flow-x-dir, ...)"
        )
    with folder_lock(
        out, f"the pack folder {out}", "wait for that run to end, or pack into another --out"
    ):
        results = {m: pack_modality(src, out, layout, m) for m in ("rgb", "flow")}
        copy_records(src, out)
    skipped = [line for *_, lines in results.values() for line in lines]
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    counts = "; ".join(
        f"{m}: {now} packed, {before} already packed" for m, (now, before, _) in results.items()
    )
    print(f"packed into {out} ({counts}; every pack checked against its source files)")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
