"""Frames packed one file per video and modality: the frame files' JPEG bytes in an uncompressed
zip, which ``unzip -l`` lists and ``unzip`` unpacks into the frame folders (dataloader.layout
says where a pack sits and how its members are named).

The zip comment holds the frame count of each part as JSON, ``{"format": "two-stream-pack",
"version": 1, "frames": {"v_X/frame%06d.jpg": 186}}`` (a member template of
``Layout.pack_templates`` -> how many members it names), so the frame index reads a few
kilobytes per pack. Every member's date is 1980-01-01: a pack's bytes depend on its frames only.

A frame is read by offset: a process keeps its last ``_MAX_OPEN`` packs open, each with its
central directory read once, and looks a member's name up in it (a pack replaced since, as a
rerun of the converter does, is opened again). Forked DataLoader workers open their own (the
handles are kept per process id). Zips made by other tools read too (deflated
members are inflated; a zip64 directory goes through ``zipfile``).
"""

import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from contextlib import suppress

import numpy as np

from dataloader.layout import frame_numbers, pattern_regex
from dataloader.open_files import OpenFiles
from utils.atomic import atomic_write
from utils.errors import UserError
from utils.faults import fault_point

FORMAT, VERSION = "two-stream-pack", 1
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # a central directory entry, before its name
_LOCAL = struct.Struct("<4s5H3L2H")  # a member's local header, before its name
_EOCD_SIG, _CENTRAL_SIG, _LOCAL_SIG = b"PK\x05\x06", b"PK\x01\x02", b"PK\x03\x04"
_SHORT_TAIL = 4096  # read first: the end record and a short comment
_SLACK = 256  # read past a member's name for its local extra field (ours have none)
_MAX_OPEN = 64  # packs a process keeps open (a worker reads one video per item)
_DATE = (1980, 1, 1, 0, 0, 0)


class PackError(Exception):
    """A file that is not a readable pack, or a frame a pack lacks."""


class Pack:
    """One pack opened for reading: ``read(name)`` gives a member's bytes."""

    def __init__(self, path):
        self.path = str(path)
        self.fd = os.open(self.path, os.O_RDONLY)
        try:
            stat = os.fstat(self.fd)
            self.identity = (stat.st_ino, stat.st_mtime_ns)  # a pack replaced since is reopened
            self._read_end(stat.st_size)
        except BaseException:
            os.close(self.fd)
            raise
        self._directory: bytes | None = None
        self._table: dict | None = None  # name -> (offset, size, method); zip64 only

    def _read_end(self, size: int) -> None:
        for length in (min(size, _SHORT_TAIL), min(size, _EOCD.size + 0xFFFF)):
            tail = os.pread(self.fd, length, size - length)
            at = tail.rfind(_EOCD_SIG)
            if at >= 0 and at + _EOCD.size <= len(tail):
                break
        else:
            raise PackError("not a zip file (no end of central directory)")
        _, _, _, _, entries, cd_size, cd_offset, comment = _EOCD.unpack_from(tail, at)
        self.comment = tail[at + _EOCD.size : at + _EOCD.size + comment]
        self.zip64 = 0xFFFFFFFF in (cd_size, cd_offset) or entries == 0xFFFF
        self._cd = (cd_offset, cd_size)

    def directory(self) -> bytes:
        if self._directory is None:
            offset, size = self._cd
            self._directory = os.pread(self.fd, size, offset)
            if len(self._directory) != size:
                raise PackError("truncated (its central directory is cut short)")
        return self._directory

    def frames(self) -> dict[str, int]:
        """{member template: frame count} as the pack's comment records it ({} if it does not)."""
        with suppress(ValueError, AttributeError):
            found = json.loads(self.comment)
            if found.get("format") == FORMAT:
                return {str(k): int(v) for k, v in found["frames"].items()}
        return {}

    def names(self) -> list[str]:
        """Every member's name, in the directory's order."""
        if self.zip64:
            return list(self._zip64_table())
        cd, names, i = self.directory(), [], 0
        while i + _CENTRAL.size <= len(cd) and cd[i : i + 4] == _CENTRAL_SIG:
            fields = _CENTRAL.unpack_from(cd, i)
            start = i + _CENTRAL.size
            names.append(cd[start : start + fields[10]].decode("utf-8", "surrogateescape"))
            i = start + fields[10] + fields[11] + fields[12]
        return names

    def _zip64_table(self) -> dict:
        if self._table is None:
            with zipfile.ZipFile(self.path) as archive:
                self._table = {
                    i.filename: (i.header_offset, i.compress_size, i.compress_type)
                    for i in archive.infolist()
                }
        return self._table

    def _locate(self, name: bytes) -> tuple[int, int, int]:
        """(local header offset, stored size, method) of the member ``name``."""
        if self.zip64:
            return self._zip64_table()[name.decode("utf-8", "surrogateescape")]
        cd = self.directory()
        at = cd.find(name, _CENTRAL.size)
        while at >= 0:  # a match must be a whole name, right after its entry's fixed part
            entry = at - _CENTRAL.size
            if cd[entry : entry + 4] == _CENTRAL_SIG:
                fields = _CENTRAL.unpack_from(cd, entry)
                if fields[10] == len(name):
                    return fields[16], fields[8], fields[4]
            at = cd.find(name, at + 1)
        raise KeyError(name)

    def read(self, name: str) -> np.ndarray:
        """The bytes of member ``name`` as a uint8 array; KeyError when there is none."""
        encoded = name.encode("utf-8", "surrogateescape")
        offset, size, method = self._locate(encoded)
        head = _LOCAL.size + len(encoded) + _SLACK
        data = os.pread(self.fd, head + size, offset)
        if data[:4] != _LOCAL_SIG or len(data) < _LOCAL.size:
            raise PackError(f"member {name} has no local header at byte {offset}")
        start = _LOCAL.size + sum(_LOCAL.unpack_from(data)[-2:])
        if start + size > len(data):
            data = data[:start] + os.pread(self.fd, start + size - len(data), offset + len(data))
        if start + size > len(data):
            raise PackError(f"member {name} is cut short ({len(data) - start} of {size} bytes)")
        if method == zipfile.ZIP_DEFLATED:
            try:
                return np.frombuffer(zlib.decompress(data[start : start + size], -15), np.uint8)
            except zlib.error as err:
                raise PackError(f"member {name} does not inflate ({err})") from None
        if method != zipfile.ZIP_STORED:
            raise PackError(f"member {name} is compressed with zip method {method}")
        return np.frombuffer(data, np.uint8, count=size, offset=start)

    def close(self) -> None:
        with suppress(OSError):
            os.close(self.fd)


def _identity(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns


def _current(pack: "Pack") -> bool:
    """Whether the open ``pack`` is still the file at its path (not replaced, moved or gone)."""
    try:
        return pack.identity == _identity(pack.path)
    except OSError:
        return False  # opening it again says what is wrong


_OPEN = OpenFiles(_MAX_OPEN, close_inherited=True)


def read_member(path: str, name: str) -> np.ndarray:
    """Member ``name`` of the pack at ``path`` (kept open for the next read); KeyError when the
    pack lacks it, PackError or OSError when the pack cannot be read."""
    return _OPEN.get(path, Pack, _current).read(name)


def member_names(path: str) -> list[str]:
    """Every member's name in the pack at ``path``; PackError or OSError when it is unreadable."""
    return _OPEN.get(path, Pack, _current).names()


def pack_counts(path: str, templates: list[str]) -> list[int]:
    """How many frames the pack at ``path`` holds under each member template: from its comment,
    else (a zip another tool made) by matching its member names; zeros when it is unreadable."""
    try:
        pack = _OPEN.get(path, Pack, _current)
        recorded = pack.frames()
        if all(t in recorded for t in templates):
            return [recorded[t] for t in templates]
        names = pack.names()
    except (OSError, PackError):
        return [0] * len(templates)
    return [len(numbered(names, t)) for t in templates]


def numbered(names: list[str], template: str) -> list[int]:
    """The frame numbers of the members ``names`` that ``template`` names, sorted."""
    folder, pattern = template.rsplit("/", 1)
    prefix, regex = folder.replace("%%", "%") + "/", pattern_regex(pattern)
    found = (regex.match(n[len(prefix) :]) for n in names if n.startswith(prefix))
    return sorted(int(m.group(1)) for m in found if m)


def write_pack(
    path,
    frames: dict[str, int],
    members: Iterable[tuple[str, bytes]],
    check: Callable[[str], None] | None = None,
) -> None:
    """Write the pack ``path`` whole: ``members`` (name, JPEG bytes) stored uncompressed in
    order, ``frames`` ({template: count}) in its comment. ``check(tmp_path)`` runs on the
    finished file before it replaces ``path`` (an exception leaves ``path`` as it was)."""
    with atomic_write(path) as file:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
            archive.comment = json.dumps(
                {"format": FORMAT, "version": VERSION, "frames": frames}
            ).encode()
            for name, data in members:
                fault_point("pack.member")
                info = zipfile.ZipInfo(name, _DATE)
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
        if check is not None:
            file.flush()
            check(file.name)


def _file_bytes(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def folder_members(parts: list[tuple[str, str, str]]) -> list[list[tuple[str, str]]]:
    """For each of ``parts`` (folder, file pattern, member template of
    ``Layout.pack_templates``): (member name, file path) of its frame files in frame order."""
    return [
        [
            (template % n, os.path.join(folder, pattern % n))
            for n in frame_numbers(folder, pattern_regex(pattern))
        ]
        for folder, pattern, template in parts
    ]


def pack_folders(pack, parts: list[tuple[str, str, str]]) -> int:
    """Pack frame folders into the pack ``pack``, written whole: the files of ``parts`` (see
    ``folder_members``) become its members. Before the pack replaces ``pack`` every member is
    read back as the loaders read it and compared with its file: a difference is a UserError
    and leaves ``pack`` as it was. Returns how many frames were packed."""
    listed = folder_members(parts)
    frames = {part[2]: len(found) for part, found in zip(parts, listed, strict=True)}
    files = [pair for found in listed for pair in found]

    def check(tmp: str) -> None:
        written = Pack(tmp)
        try:
            if written.names() != [name for name, _ in files]:
                raise UserError(f"{pack} was written with other members than {parts[0][0]} holds")
            for name, path in files:
                if written.read(name).tobytes() != _file_bytes(path):
                    raise UserError(
                        f"{name} packed into {pack} differs from its source {path} (did the "
                        "file change meanwhile?); run the same command again"
                    )
        finally:
            written.close()

    write_pack(pack, frames, ((name, _file_bytes(path)) for name, path in files), check)
    return len(files)
