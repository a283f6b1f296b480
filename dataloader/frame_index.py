"""Find each split video's frame folders, or its pack, and count their frames, with an on-disk cache.

Counting 13,320 videos x 3 folders by listing them takes seconds on a cold disk; the cache keeps
each folder's (or pack's) count with its modification time, so a second start only stats them.
A video whose folders are absent is looked for as a pack (dataloader.layout, dataloader.packs).
"""

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dataloader.layout import PACK_SUFFIXES, Layout, pattern_regex
from dataloader.packs import pack_counts
from dataloader.splits import Video
from utils.atomic import write_json
from utils.errors import UserError
from utils.video_names import video_key

CACHE_NAME = ".frame_index.json"
_CACHE_VERSION = 2


@dataclass(frozen=True)
class IndexedVideo:
    """A split video found on disk: its frame folders (one for rgb, x and y for flow); for a
    packed video, where they would be, its ``pack`` and each folder's member ``templates``."""

    name: str
    label: int
    dirs: tuple[str, ...]
    num_frames: int
    pack: str = ""
    templates: tuple[str, ...] = ()


def _count(folder: str, regex) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if regex.match(e.name))


class FrameCounter:
    """Frame counts per folder, remembered across runs in a JSON cache.

    The cache sits in the data root (``.frame_index.json``) or, where that is read-only, under
    ``~/.cache/two-stream``. A folder whose modification time changed is counted again. Plain
    strings, not Path objects, keep a start over 40,000 folders fast.
    """

    def __init__(self, data_root: Path, cache: bool = True):
        self.cache_path = self._cache_location(data_root) if cache else None
        self.tables: dict[str, dict[str, list[int]]] = {}
        self.dirty = False
        if self.cache_path and self.cache_path.is_file():
            try:
                data = json.loads(self.cache_path.read_text())
                if data.get("version") == _CACHE_VERSION:
                    self.tables = data["tables"]
            except (OSError, ValueError, KeyError):
                self.tables = {}

    @staticmethod
    def _cache_location(data_root: Path) -> Path:
        if os.access(data_root, os.W_OK):
            return data_root / CACHE_NAME
        digest = hashlib.sha1(str(data_root.resolve()).encode()).hexdigest()[:16]
        return Path.home() / ".cache" / "two-stream" / f"frame_index_{digest}.json"

    def table(self, folder: str, pattern: str) -> dict[str, list[int]]:
        """The cached [mtime, count] of every video folder under ``folder`` for ``pattern``."""
        return self.tables.setdefault(f"{folder}|{pattern}", {})

    def count(self, table: dict, parent: str, name: str, how) -> int:
        """The frames of the folder or pack ``name`` in ``parent``: cached, else ``how(path)``."""
        path = os.path.join(parent, name)
        mtime = os.stat(path).st_mtime_ns
        cached = table.get(name)
        if cached and cached[0] == mtime:
            return cached[1]
        n = how(path)
        table[name] = [mtime, n]
        self.dirty = True
        return n

    def save(self) -> None:
        if not (self.cache_path and self.dirty):
            return
        with contextlib.suppress(OSError):  # a cache we cannot write only costs time next start
            write_json(self.cache_path, {"version": _CACHE_VERSION, "tables": self.tables}, None)
        self.dirty = False


def _listing(folder: str, suffix: str) -> tuple[dict[str, str], list[str]]:
    """({video key: name} of the video folders in ``folder``, or with a ``suffix`` of the packs
    (their names without it), [every sub-folder's name])."""
    videos, folders = {}, []
    with os.scandir(folder) as entries:
        for e in entries:
            if e.is_dir():
                folders.append(e.name)
            if suffix and e.name.endswith(suffix) and e.is_file():
                videos[video_key(e.name[: -len(suffix)])] = e.name[: -len(suffix)]
    if not suffix:
        videos = {video_key(name): name for name in folders}
    return videos, folders


def _folder_names(parent: Path, wanted: set[str], suffix: str = "") -> dict[str, str]:
    """Spelling-insensitive map from video key to the folder's (or, with a ``suffix``, the
    pack's, less the suffix) path relative to ``parent``.

    Video folders sit in ``parent`` or one class level deeper (mmaction2's nested rawframes,
    ``<class>/<video>``). The deeper level is listed only for videos not found at the top, and
    only in folders that are not wanted videos themselves, so the flat layout costs one listing.
    """
    names, folders = _listing(str(parent), suffix)
    if wanted <= names.keys():
        return names
    nested: dict[str, list[str]] = {}
    for top in folders:
        if video_key(top) in wanted:
            continue
        for key, name in _listing(os.path.join(parent, top), suffix)[0].items():
            nested.setdefault(key, []).append(f"{top}/{name}")
    for key in wanted - names.keys():
        paths = nested.get(key, [])
        if len(paths) > 1:
            raise UserError(
                f"video {paths[0].split('/')[-1]} is in {len(paths)} class folders of {parent} "
                f"({', '.join(sorted(paths)[:2])}); rename one so each video name is unique"
            )
        if paths:
            names[key] = paths[0]
    return names


class _Packs:
    """The packs of one modality in a data root, listed when a video's folders are absent."""

    def __init__(self, data_root: Path, modality: str, layout: Layout, wanted, counter):
        self.data_root, self.modality, self.layout = data_root, modality, layout
        self.folder = data_root / layout.pack_dir(modality)
        self.suffix = PACK_SUFFIXES[modality]
        self.wanted, self.counter, self.names = wanted, counter, None
        patterns = "|".join(pattern for _, pattern in layout.modality(modality))
        self.table = counter.table(layout.pack_dir(modality) + self.suffix, patterns)

    def find(self, video: Video) -> IndexedVideo | None:
        """The video as its pack holds it; None when it has none."""
        if self.names is None:
            found = self.folder.is_dir()
            self.names = _folder_names(self.folder, self.wanted, self.suffix) if found else {}
        name = self.names.get(video_key(video.name))
        if name is None:
            return None
        templates = self.layout.pack_templates(self.modality, name)
        count = self.counter.count(
            self.table,
            str(self.folder),
            name + self.suffix,
            lambda path: min(pack_counts(path, templates)),
        )
        dirs = tuple(str(self.data_root / d / name) for d, _ in self.layout.modality(self.modality))
        pack = str(self.folder / (name + self.suffix))
        return IndexedVideo(video.name, video.label, dirs, count, pack, tuple(templates))


def index_videos(
    data_root: str | Path,
    videos: list[Video],
    modality: str,
    layout: Layout = Layout(),
    cache: bool = True,
    missing: list[str] | None = None,
) -> list[IndexedVideo]:
    """Locate every video's folders for ``modality`` ('rgb' or 'flow') and count its frames.

    A flow video's count is the smaller of its x and y counts. Videos listed in the split but
    absent on disk are an error naming them: a silently smaller dataset gives wrong accuracies.
    Pass a ``missing`` list to collect their names instead.
    """
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise UserError(f"--data-root {data_root} does not exist; point it at the extracted frames")
    parts = layout.modality(modality)
    for folder, _ in parts:
        if (
            not (data_root / folder).is_dir()
            and not (data_root / layout.pack_dir(modality)).is_dir()
        ):
            flag = "--rgb-dir" if modality == "rgb" else "--flow-x-dir/--flow-y-dir"
            raise UserError(
                f"no {modality} folder {data_root / folder}; extract frames with "
                f"tools/extract_frames_flow.py or set {flag} (now {folder!r})"
            )
    counter = FrameCounter(data_root, cache)
    wanted = {video_key(video.name) for video in videos}
    sources = [
        (
            str(data_root / folder),
            _folder_names(data_root / folder, wanted) if (data_root / folder).is_dir() else {},
            pattern_regex(pattern),
            counter.table(folder, pattern),
        )
        for folder, pattern in parts
    ]
    packs = _Packs(data_root, modality, layout, wanted, counter)
    found, absent = [], []
    for video in videos:
        key = video_key(video.name)
        dirs, counts = [], []
        for parent, names, regex, table in sources:
            name = names.get(key)
            if name is None:
                break
            dirs.append(os.path.join(parent, name))
            counts.append(counter.count(table, parent, name, lambda path, r=regex: _count(path, r)))
        else:
            found.append(IndexedVideo(video.name, video.label, tuple(dirs), min(counts)))
            continue
        packed = packs.find(video)
        if packed is None:
            absent.append((video.name, os.path.join(parent, video.name)))
        else:
            found.append(packed)
    counter.save()
    if missing is not None:
        missing.extend(name for name, _ in absent)
    elif absent:
        others = f" and {len(absent) - 1} other videos" if len(absent) > 1 else ""
        raise UserError(
            f"{modality} frames missing for {absent[0][1]}{others} of the split; "
            "check --data-root and the layout options, or extract the missing videos"
        )
    return found
