"""An extraction root on disk: each video's frames and flow written whole, the done markers, the
settings every video of the root shares, and ``index.json``.

extraction/run.py drives it (shards, workers, summary). A video is written
under its run's own folder ``ROOT/.extract/tmp/<run>/`` (extraction/locks.py) and
moved into the layout only when whole and counted; a marker in ``ROOT/.extract/done/`` then
records it, so a killed run leaves no half video and a rerun skips finished ones. Folders in the
layout this code did not write are never replaced, and a video's name is always one safe folder
name (``check_video_name``). PyAV and OpenCV are imported when a video is written, so a command
line can import this at once.

With ``pack`` (``--pack``) the finished folders are packed instead (dataloader/packs.py: the
same JPEG bytes, checked against them), still in the run's folder, and the two packs (RGB; x and
y flow) are what moves into the layout. A root holds one or the other (settings.json says which).

Fault points (utils/faults.py) of the fault suite: ``extract.frame`` before each RGB frame is
written, ``extract.flow`` before each flow file, ``extract.move`` after each of a video's three
folders (or two packs) is moved into the layout, ``extract.marker`` after them, before the done
marker.
"""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from dataloader.layout import PACK_SUFFIXES, Layout
from extraction.settings import INDEX_NAME, ExtractionSettings
from utils.atomic import write_text
from utils.errors import UserError
from utils.faults import fault_point
from utils.video_names import VIDEO_EXTENSIONS

STATE_DIR = ".extract"
TMP_DIR = "tmp"  # under STATE_DIR: one folder per run (extraction/locks.py)
MAX_NAME_BYTES = 250  # a video's folder name, so that "<name>.json" fits a file name
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def split_video_name(file_name: str) -> tuple[str, str]:
    """(name, extension) of a video file name: ``clip.avi`` -> (``clip``, ``.avi``); a name
    that is only an extension (``.avi``) has the name ``""``."""
    if file_name.lower().endswith(VIDEO_EXTENSIONS):
        cut = file_name.rfind(".")
        return file_name[:cut], file_name[cut:]
    return file_name, ""


def unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot name a video's folders (None when it can): a folder name of its own
    inside each layout folder, never the folder itself, its parent or one elsewhere."""
    if not name:
        return "it has no name before the extension"
    if name in (".", ".."):
        return f"its name {name!r} would be the output folder itself or its parent"
    if name.startswith("."):
        return "its name starts with a dot (a hidden folder)"
    if _UNSAFE.search(name):
        return "its name holds a path separator ('/' or '\\') or a control character"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"its name is longer than {MAX_NAME_BYTES} bytes"
    return None


def safe_name(name: str, taken=()) -> str:
    """A safe folder name close to ``name`` (to suggest as a new name), not one in ``taken``."""
    base = _UNSAFE.sub("_", name).lstrip(".").strip()
    base = base.encode("utf-8", "surrogateescape")[: MAX_NAME_BYTES - 4].decode("utf-8", "ignore")
    base = base or "video"
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}_{number}"
    return candidate


def check_video_name(file_name: str, taken=(), shown: str | None = None) -> str:
    """The folder name of the video file ``file_name`` (its name without the extension);
    UserError, naming the file (``shown``, else its name) and a new name for it (not one in
    ``taken``), where that is not a safe folder name."""
    name, extension = split_video_name(file_name)
    why = unsafe_name(name)
    if why is not None:
        raise UserError(
            f"cannot extract the video {shown or repr(file_name)}: {why}; rename it, e.g. to "
            f"{safe_name(name, taken) + extension!r}"
        )
    return name


def _write_jpeg(path: Path, image, quality: int, point: str) -> None:
    """Encode ``image`` as JPEG and write it (a Python write, so that a full disk is an
    OSError with its errno and this path, which cv2.imwrite would not say)."""
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode {path} as JPEG")
    try:
        fault_point(point)
        with open(path, "wb") as file:
            file.write(data)
    except OSError as err:  # named by its file (a failed write() names none)
        raise OSError(err.errno, err.strerror, str(path)) from err


class Stopped(Exception):
    """Extraction was asked to stop (Ctrl-C) while a video was being written."""


def _parts(tmp: Path, root: Path, name: str) -> dict:
    """A video's three folders: kind (rgb, u, v) -> (work folder under ``tmp``, its place in
    the layout, file name pattern)."""
    layout = Layout()
    return {
        "rgb": (tmp / "rgb", root / layout.rgb_dir / name, layout.rgb_pattern),
        "u": (tmp / "u", root / layout.flow_x_dir / name, layout.flow_x_pattern),
        "v": (tmp / "v", root / layout.flow_y_dir / name, layout.flow_y_pattern),
    }


def _check_counts(parts: dict, frames: int) -> None:
    """Every frame and flow file of a video is there: ``frames`` RGB, ``frames - 1`` of each
    flow direction (before the video is moved into the layout)."""
    for key, (work, _, _) in parts.items():
        want = frames if key == "rgb" else frames - 1
        have = sum(1 for _ in os.scandir(work))
        if have != want:
            raise RuntimeError(f"{work}: {have} files written, {want} expected")


def extract_video(
    path: Path,
    name: str,
    root: Path,
    settings: ExtractionSettings,
    solver,
    chunk: int = 8,
    report=None,
    stop=None,
    *,
    run_dir: Path,
    pack: bool = False,
) -> dict:
    """Write one video's RGB and flow folders (``pack``: packs) under ``root``; return its
    index entry.

    Everything goes to ``run_dir``/<name> first (``run_dir``: the run's own temporary folder,
    extraction.locks.RunFolder); the three folders are moved into the layout only
    when complete and counted, then the marker ROOT/.extract/done/<name>.json is written.
    ``solver`` (extraction.workers) takes ``chunk`` consecutive pairs at a time and may
    keep ``solver.depth`` of them in flight while frames are decoded. ``report(kind, value)``
    hears ``("start", frames expected)`` and ``("frames", frames decoded since)``; a set
    ``stop`` event (multiprocessing) raises Stopped between frames. A video that decodes to
    fewer frames than its container declares raises TruncatedVideo, one of fewer than 2 frames
    (no flow) TooShortVideo.
    """
    from collections import deque

    from extraction.decode import (  # here: PyAV and OpenCV take a while to import
        DecodeError,
        TooShortVideo,
        check_complete,
        probe_video,
    )
    from extraction.tvl1 import flow_to_uint8

    why = unsafe_name(name)
    if why is not None:  # the tool refuses such names first; never a folder outside the layout
        raise ValueError(f"{path}: {why}")
    report = report or (lambda kind, value: None)
    tmp = Path(run_dir) / name
    shutil.rmtree(tmp, ignore_errors=True)
    parts = _parts(tmp, root, name)
    pending = deque()  # (ticket, number of its first flow file)

    def write_flows(limit: int) -> None:
        """Write the answers of the oldest requests until at most ``limit`` are in flight."""
        while len(pending) > limit:
            ticket, first = pending.popleft()
            for j, f in enumerate(solver.result(ticket)):
                for key, channel in (("u", 0), ("v", 1)):
                    folder, _, pattern = parts[key]
                    image = flow_to_uint8(f[..., channel], settings.bound)
                    file = folder / (pattern % (first + j))
                    _write_jpeg(file, image, settings.jpeg_quality, "extract.flow")

    try:
        for work, _, _ in parts.values():
            work.mkdir(parents=True)
        info = probe_video(path)
        limit = settings.max_frames
        report("start", min(info.frames, limit) if limit and info.frames else info.frames)
        count, size = _write_frames(path, name, settings, parts, solver, pending, write_flows,
                                    chunk, report, stop)  # fmt: skip
        if count == 0:
            raise DecodeError(f"{path}: no frames decoded")
        check_complete(path, count, info.frames, settings.max_frames)
        if count < 2:
            raise TooShortVideo(
                f"{path}: only {count} frame decoded: optical flow needs at least 2 frames"
            )
        _check_counts(parts, count)
        entry = {"frames": count, "fps": info.fps, "width": size[0], "height": size[1]}
        places = _packed(root, name, parts) if pack else [p[:2] for p in parts.values()]
        _move_into_place(root, name, places, entry)
    finally:
        solver.forget(ticket for ticket, _ in pending)
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def _write_frames(path, name, settings, parts, solver, pending, write_flows, chunk, report, stop):
    """Decode the video, write its RGB frames and send its gray pairs to ``solver`` ``chunk`` at
    a time (their flows are written by ``write_flows``); return the frames decoded and their size."""
    import numpy as np

    from extraction.decode import iter_frames
    from extraction.tvl1 import to_gray

    count, size, grays, unreported = 0, None, [], 0
    for rgb in iter_frames(path, settings.short_side, settings.max_frames):
        if stop is not None and stop.is_set():
            raise Stopped(name)
        count += 1
        size = (rgb.shape[1], rgb.shape[0])
        folder, _, pattern = parts["rgb"]
        _write_jpeg(folder / (pattern % count), rgb[..., ::-1], settings.jpeg_quality,
                    "extract.frame")  # fmt: skip
        grays.append(to_gray(rgb))
        if len(grays) > chunk:
            pending.append((solver.submit(np.stack(grays)), count - len(grays) + 1))
            grays = grays[-1:]
            write_flows(solver.depth)
            report("frames", count - unreported)
            unreported = count
    if len(grays) > 1:
        pending.append((solver.submit(np.stack(grays)), count - len(grays) + 1))
    write_flows(0)
    report("frames", count - unreported)
    return count, size


def _pack_places(root: Path, name: str) -> list[Path]:
    """Where a video's two packs go in the layout: RGB, then flow."""
    layout = Layout()
    return [root / layout.pack_dir(m) / (name + PACK_SUFFIXES[m]) for m in ("rgb", "flow")]


def _packed(root: Path, name: str, parts: dict) -> list[tuple[Path, Path]]:
    """Pack a video's finished folders (``parts`` of ``_parts``) beside them, as
    tools/pack_frames.py packs the same folders, each pack checked against its files; the
    (pack, its place in the layout) pairs."""
    from dataloader.packs import pack_folders

    layout, places = Layout(), []
    for modality, final in zip(("rgb", "flow"), _pack_places(root, name), strict=True):
        keys = ["rgb"] if modality == "rgb" else ["u", "v"]
        templates = layout.pack_templates(modality, name)
        sources = [(str(parts[k][0]), parts[k][2], t) for k, t in zip(keys, templates, strict=True)]
        work = parts["rgb"][0].parent / f"{modality}.zip"
        pack_folders(work, sources)
        places.append((work, final))
    return places


def _move_into_place(root: Path, name: str, places: list, entry: dict) -> None:
    """Move a video's finished folders or packs (``places``: (work, final) pairs) into the
    layout, then write its done marker holding ``entry``."""
    # "moving" marks the few renames below, so a rerun after a kill among them knows the
    # folders already in place are ours to replace; folders without a marker are not.
    moving, done = (
        root / STATE_DIR / "moving" / name,
        root / STATE_DIR / "done" / f"{name}.json",
    )
    for _, final in places:
        if final.exists() and not (moving.exists() or done.exists()):
            raise FileExistsError(
                f"{final} exists but was not written by this tool; remove it or use another --out"
            )
    moving.parent.mkdir(parents=True, exist_ok=True)
    moving.touch()
    done.unlink(missing_ok=True)  # an earlier extraction's marker must not vouch for a mix
    for work, final in places:
        if final.is_dir():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work, final)
        fault_point("extract.move")
    fault_point("extract.marker")
    # The marker is written beside the work folders (the run's own) and renamed into done/,
    # so done/ never holds a half marker or a temporary file.
    marker = places[0][0].parent / "done.json"
    write_text(marker, json.dumps(entry))
    done.parent.mkdir(parents=True, exist_ok=True)
    os.replace(marker, done)
    moving.unlink(missing_ok=True)


def clear_stale_files(root: Path, split_dir: Path | None = None) -> list[Path]:
    """Remove the temporary files that killed runs left beside the files all runs share
    (index.json, the failure lists, settings.json, the split). Call it holding the state lock
    (extraction/locks.py): every writer of those holds it too."""
    places = [
        (root, f".{INDEX_NAME}.*.tmp"),
        (root, ".failed*.txt.*.tmp"),
        (root / STATE_DIR, ".settings.json.*.tmp"),
    ]
    if split_dir is not None:
        places += [(split_dir, f".{part}.txt.*.tmp") for part in ("classes", "train", "test")]
    removed = []
    for folder, pattern in places:
        for tmp in folder.glob(pattern):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def is_done(root: Path, name: str) -> bool:
    """Whether the video ``name`` is finished: its marker, and its three folders or two packs."""
    layout = Layout()
    dirs = (layout.rgb_dir, layout.flow_x_dir, layout.flow_y_dir)
    marker = root / STATE_DIR / "done" / f"{name}.json"
    return marker.is_file() and (
        all((root / d / name).is_dir() for d in dirs)
        or all(p.is_file() for p in _pack_places(root, name))
    )


def _saved_state(root: Path) -> dict | None:
    """``.extract/settings.json``: the settings, and ``pack`` (true: the root holds packs)."""
    path = root / STATE_DIR / "settings.json"
    return json.loads(path.read_text()) if path.is_file() else None


def read_root_settings(root: Path) -> ExtractionSettings | None:
    """The settings the videos of ``root`` were extracted with; None before the first video."""
    saved = _saved_state(root)
    return None if saved is None else ExtractionSettings.from_dict(saved)


def root_packed(root: Path) -> bool:
    """Whether the videos of ``root`` are extracted into packs (--pack), not folders."""
    return bool((_saved_state(root) or {}).get("pack", False))


def check_settings(root: Path, settings: ExtractionSettings, pack: bool = False) -> None:
    """Refuse to mix frames made with different options, or packs and folders, in one ROOT."""
    saved = read_root_settings(root)
    if saved is not None and root_packed(root) != pack:
        holds, fix = ("frame folders", "leave --pack out") if pack else ("packs", "add --pack")
        raise UserError(f"{root} holds {holds}; {fix} to continue it, or use another --out")
    if saved is not None:
        old = saved.as_dict()
        if old != settings.as_dict():
            diff = ", ".join(
                f"--{k.replace('_', '-')} {old.get(k)} (now {v})"
                for k, v in settings.as_dict().items()
                if old.get(k) != v
            )
            raise UserError(
                f"{root} was extracted with {diff}; rerun with the same options or use another --out"
            )
    else:
        state = dict(settings.as_dict(), pack=pack)
        write_text(root / STATE_DIR / "settings.json", json.dumps(state))


def write_index(root: Path, settings: ExtractionSettings, sources: dict[str, str]) -> int:
    """ROOT/index.json from the markers of all finished videos (this run's and earlier ones)."""
    videos = {}
    for marker in sorted((root / STATE_DIR / "done").glob("*.json")):
        name = marker.stem
        if is_done(root, name):
            entry = json.loads(marker.read_text())
            if name in sources:
                entry["source"] = sources[name]
            videos[name] = entry
    index = {
        "settings": settings.as_dict(),
        "storage": "packs" if root_packed(root) else "folders",
        "flow": "flow file i is the motion from frame i to frame i+1; N frames, N-1 flow frames",
        "videos": videos,
    }
    write_text(root / INDEX_NAME, json.dumps(index, indent=1))
    return len(videos)


def shard_of(name: str, shards: int) -> int:
    """The shard (1..shards) a video belongs to: a stable hash of its name (not Python's hash,
    which changes between processes)."""
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1
