"""Files that must survive a kill: write a temp file beside the target, then rename it.

The one atomic writer of the toolkit: checkpoints, score files, JSON and text outputs, the
extraction index and the frame-count cache all go through ``atomic_write``.
"""

import errno
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

from utils.errors import UserError
from utils.faults import fault_point
from utils.locks import pid_alive

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(UserError):
    """A write failed for want of space: one line naming the file; what was there is intact."""


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` or an error it arose from is "no space left" (torch.save, for one, turns
    the file's OSError into a RuntimeError of its own and keeps the OSError as its context)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL:
            return True
        err = err.__cause__ or err.__context__
    return False


def tmp_name(path: Path) -> Path:
    """The temporary file beside ``path`` that atomic_write renames onto it."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_tmp(folder, name: str = "*") -> list[Path]:
    """Remove the temporary files (``tmp_name``) and folders (the same name, ``.tmpdir``) that
    killed writers of the output ``name`` (default: any) left in ``folder``: those whose writer
    process is gone. Call it holding the output's lock."""
    removed = []
    for tmp in sorted(Path(folder).glob(f".{name}.*.tmp*")):
        pid = tmp.name.split(".")[-3]
        if tmp.suffix not in (".tmp", ".tmpdir") or not pid.isdigit():
            continue
        if int(pid) != os.getpid() and pid_alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


@contextmanager
def atomic_write(path):
    """Yield a binary file; on success it replaces ``path`` whole, on any error it vanishes.

    A kill at any moment leaves either the old file or the new one, never half of one. A full
    disk is a DiskFull naming the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)  # not mkstemp: that would leave the file readable by its owner only
    try:
        with open(tmp, "xb") as file:
            yield file
            fault_point(f"write.{path.name}")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if disk_full(err):
            raise DiskFull(
                f"the disk is full: could not write {path}"
                + (" (the previous file is intact)" if path.exists() else "")
            ) from err
        raise


def write_text(path, text: str) -> Path:
    """UTF-8 text, written atomically; the parent folder is created."""
    with atomic_write(path) as file:
        file.write(text.encode("utf-8"))
    return Path(path)


def write_json(path, data, indent: int | None = 2) -> Path:
    """JSON, written atomically; the parent folder is created."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")
