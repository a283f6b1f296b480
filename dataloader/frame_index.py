"""Find each split video's frame folders and count their frames, with an on-disk cache.

Counting 13,320 videos x 3 folders by listing them takes seconds on a cold disk; the cache keeps
each folder's count with its modification time, so a second start only stats the folders.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dataloader.layout import Layout, pattern_regex
from dataloader.splits import Video, video_key
from utils.errors import UserError

CACHE_NAME = ".frame_index.json"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class IndexedVideo:
    """A split video found on disk: its frame folders (one for rgb, x and y for flow)."""

    name: str
    label: int
    dirs: tuple[Path, ...]
    num_frames: int


def _count(folder: Path, regex) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if regex.match(e.name))


class FrameCounter:
    """Frame counts per folder, remembered across runs in a JSON cache.

    The cache sits in the data root (``.frame_index.json``) or, where that is read-only, under
    ``~/.cache/two-stream``. A folder whose modification time changed is counted again.
    """

    def __init__(self, data_root: Path, cache: bool = True):
        self.data_root = data_root
        self.cache_path = self._cache_location(data_root) if cache else None
        self.entries: dict[str, list[int]] = {}
        self.dirty = False
        if self.cache_path and self.cache_path.is_file():
            try:
                data = json.loads(self.cache_path.read_text())
                if data.get("version") == _CACHE_VERSION:
                    self.entries = data["entries"]
            except (OSError, ValueError, KeyError):
                self.entries = {}

    @staticmethod
    def _cache_location(data_root: Path) -> Path:
        if os.access(data_root, os.W_OK):
            return data_root / CACHE_NAME
        digest = hashlib.sha1(str(data_root.resolve()).encode()).hexdigest()[:16]
        return Path.home() / ".cache" / "two-stream" / f"frame_index_{digest}.json"

    def count(self, folder: Path, pattern: str, regex) -> int:
        mtime = folder.stat().st_mtime_ns
        key = f"{folder.relative_to(self.data_root)}|{pattern}"
        cached = self.entries.get(key)
        if cached and cached[0] == mtime:
            return cached[1]
        n = _count(folder, regex)
        self.entries[key] = [mtime, n]
        self.dirty = True
        return n

    def save(self) -> None:
        if not (self.cache_path and self.dirty):
            return
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_name(self.cache_path.name + f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"version": _CACHE_VERSION, "entries": self.entries}))
            os.replace(tmp, self.cache_path)
        except OSError:
            pass  # a cache we cannot write only costs time on the next start
        self.dirty = False


def _folder_names(parent: Path) -> dict[str, str]:
    """Spelling-insensitive map from video key to the folder's real name."""
    with os.scandir(parent) as entries:
        return {video_key(e.name): e.name for e in entries if e.is_dir()}


def index_videos(
    data_root: str | Path,
    videos: list[Video],
    modality: str,
    layout: Layout = Layout(),
    cache: bool = True,
) -> list[IndexedVideo]:
    """Locate every video's folders for ``modality`` ('rgb' or 'flow') and count its frames.

    A flow video's count is the smaller of its x and y counts. Videos listed in the split but
    absent on disk are an error naming them: a silently smaller dataset gives wrong accuracies.
    """
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise UserError(f"--data-root {data_root} does not exist; point it at the extracted frames")
    parts = layout.modality(modality)
    parents = [data_root / folder for folder, _ in parts]
    for parent, (folder, _) in zip(parents, parts, strict=True):
        if not parent.is_dir():
            flag = "--rgb-dir" if modality == "rgb" else "--flow-x-dir/--flow-y-dir"
            raise UserError(
                f"no {modality} folder {parent}; extract frames with tools/extract_frames_flow.py "
                f"or set {flag} (now {folder!r})"
            )
    names = [_folder_names(p) for p in parents]
    regexes = [pattern_regex(pattern) for _, pattern in parts]
    counter = FrameCounter(data_root, cache)

    found, missing = [], []
    for video in videos:
        key = video_key(video.name)
        dirs = []
        for parent, table in zip(parents, names, strict=True):
            if key in table:
                dirs.append(parent / table[key])
            else:
                missing.append(f"{parent / video.name}")
                break
        else:
            counts = [
                counter.count(d, pattern, regex)
                for d, (_, pattern), regex in zip(dirs, parts, regexes, strict=True)
            ]
            found.append(IndexedVideo(video.name, video.label, tuple(dirs), min(counts)))
    counter.save()
    if missing:
        others = f" and {len(missing) - 1} other videos" if len(missing) > 1 else ""
        raise UserError(
            f"{modality} frames missing for {missing[0]}{others} of the split; "
            "check --data-root and the layout options, or extract the missing videos"
        )
    return found
