"""An extraction root on disk: each video's frames and flow written whole, the done markers, the
settings every video of the root shares, and ``index.json``.

tools/extract_frames_flow.py drives it (options, workers, shards, summary). A video is written
under ``ROOT/.extract/tmp/`` and moved into the layout only when whole; a marker in
``ROOT/.extract/done/`` then records it, so a killed run leaves no half video and a rerun skips
finished ones. Folders in the layout this code did not write are never replaced. PyAV and
OpenCV are imported when a video is written, so a command line can import this at once.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

from dataloader.extraction_settings import INDEX_NAME, ExtractionSettings
from dataloader.layout import Layout
from utils.atomic import write_text
from utils.errors import UserError

STATE_DIR = ".extract"


def _imwrite(path: Path, image, quality: int) -> None:
    import cv2

    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"cannot write {path}")


class Stopped(Exception):
    """Extraction was asked to stop (Ctrl-C) while a video was being written."""


def extract_video(
    path: Path,
    name: str,
    root: Path,
    settings: ExtractionSettings,
    solver,
    chunk: int = 8,
    report=None,
    stop=None,
) -> dict:
    """Write one video's RGB and flow folders under ``root``; return its index entry.

    Everything goes to ROOT/.extract/tmp/<name> first; the three folders are moved into the
    layout only when complete, then the marker ROOT/.extract/done/<name>.json is written.
    ``solver`` (dataloader.extraction_pool) takes ``chunk`` consecutive pairs at a time and may
    keep ``solver.depth`` of them in flight while frames are decoded. ``report(kind, value)``
    hears ``("start", frames expected)`` and ``("frames", frames decoded since)``; a set
    ``stop`` event (multiprocessing) raises Stopped between frames. A video that decodes to
    fewer frames than its container declares raises TruncatedVideo.
    """
    from collections import deque

    from dataloader.extraction import (  # here: PyAV and OpenCV take a while to import
        DecodeError,
        check_complete,
        flow_to_uint8,
        probe_video,
    )

    report = report or (lambda kind, value: None)
    layout = Layout()
    tmp = root / STATE_DIR / "tmp" / name
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run
    parts = {
        "rgb": (tmp / "rgb", root / layout.rgb_dir / name, layout.rgb_pattern),
        "u": (tmp / "u", root / layout.flow_x_dir / name, layout.flow_x_pattern),
        "v": (tmp / "v", root / layout.flow_y_dir / name, layout.flow_y_pattern),
    }
    pending = deque()  # (ticket, number of its first flow file)

    def write_flows(limit: int) -> None:
        """Write the answers of the oldest requests until at most ``limit`` are in flight."""
        while len(pending) > limit:
            ticket, first = pending.popleft()
            for j, f in enumerate(solver.result(ticket)):
                for key, channel in (("u", 0), ("v", 1)):
                    folder, _, pattern = parts[key]
                    image = flow_to_uint8(f[..., channel], settings.bound)
                    _imwrite(folder / (pattern % (first + j)), image, settings.jpeg_quality)

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
        entry = {
            "frames": count,
            "fps": info.fps,
            "width": size[0],
            "height": size[1],
        }
        _move_into_place(root, name, parts, entry)
    finally:
        solver.forget(ticket for ticket, _ in pending)
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def _write_frames(path, name, settings, parts, solver, pending, write_flows, chunk, report, stop):
    """Decode the video, write its RGB frames and send its gray pairs to ``solver`` ``chunk`` at
    a time (their flows are written by ``write_flows``); return the frames decoded and their size."""
    import numpy as np

    from dataloader.extraction import iter_frames, to_gray

    count, size, grays, unreported = 0, None, [], 0
    for rgb in iter_frames(path, settings.short_side, settings.max_frames):
        if stop is not None and stop.is_set():
            raise Stopped(name)
        count += 1
        size = (rgb.shape[1], rgb.shape[0])
        folder, _, pattern = parts["rgb"]
        _imwrite(folder / (pattern % count), rgb[..., ::-1], settings.jpeg_quality)
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


def _move_into_place(root: Path, name: str, parts: dict, entry: dict) -> None:
    """Move a video's finished folders (``parts``: work, final, pattern) into the layout, then
    write its done marker holding ``entry``."""
    # "moving" marks the few renames below, so a rerun after a kill among them knows the
    # folders already in place are ours to replace; folders without a marker are not.
    moving, done = (
        root / STATE_DIR / "moving" / name,
        root / STATE_DIR / "done" / f"{name}.json",
    )
    for _, final, _ in parts.values():
        if final.exists() and not (moving.exists() or done.exists()):
            raise FileExistsError(
                f"{final} exists but was not written by this tool; remove it or use another --out"
            )
    moving.parent.mkdir(parents=True, exist_ok=True)
    moving.touch()
    for work, final, _ in parts.values():
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work, final)
    done.parent.mkdir(parents=True, exist_ok=True)
    write_text(done, json.dumps(entry))
    moving.unlink()


def is_done(root: Path, name: str) -> bool:
    layout = Layout()
    dirs = (layout.rgb_dir, layout.flow_x_dir, layout.flow_y_dir)
    marker = root / STATE_DIR / "done" / f"{name}.json"
    return marker.is_file() and all((root / d / name).is_dir() for d in dirs)


def read_root_settings(root: Path) -> ExtractionSettings | None:
    """The settings the videos of ``root`` were extracted with; None before the first video."""
    path = root / STATE_DIR / "settings.json"
    if not path.is_file():
        return None
    return ExtractionSettings.from_dict(json.loads(path.read_text()))


def check_settings(root: Path, settings: ExtractionSettings) -> None:
    """Refuse to mix frames made with different options in one ROOT."""
    saved = read_root_settings(root)
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
        write_text(root / STATE_DIR / "settings.json", json.dumps(settings.as_dict()))


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
