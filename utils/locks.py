"""One writer per output: an exclusive OS lock (``flock``) on a small file, held while the
process runs and released by the kernel when it ends, however it ends (kill -9 included), so a
killed run never blocks the next one.

The lock file also says who holds it (process id, host, command, start time), so the run that
is refused can name the one that is running. Where the file system has no locks (some network
file systems) one warning says so and the run goes on unlocked.
"""

import datetime
import errno
import os
import socket
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

from utils.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no locks, said once per lock
    fcntl = None

LOCK_NAME = ".lock"  # the lock file of a folder
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)

# Lock descriptors held by this process. A forked child (a DataLoader or extraction worker)
# closes its copies at once: a copy would keep the lock after its parent died.
_held: set[int] = set()


def _close_in_child() -> None:
    for fd in list(_held):
        with suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def _holder() -> str:
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]) if sys.argv else "python"
    return f"process {os.getpid()} on {socket.gethostname()} since {started}: {command}\n"


def _warn_unlocked(path: Path, err: OSError) -> None:
    print(
        f"warning: cannot lock {path} ({err.strerror or err}): this file system has no locks, "
        "so nothing stops a second run from writing to the same place at once; make sure only "
        "one does",
        file=sys.stderr,
        flush=True,
    )


def acquire(path, what: str, fix: str) -> int | None:
    """Take the exclusive lock of the file ``path`` (created if missing); the descriptor to
    ``release``, or None where the file system has no locks. ``what``: the output it guards
    (e.g. "the record dir record/spatial"); ``fix``: what the refused user can do instead."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        os.close(fd)
        _warn_unlocked(path, OSError(errno.ENOSYS, "no fcntl on this system"))
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd) or "another process"
        os.close(fd)
        raise UserError(f"{what} is being written by {holder.strip()}; {fix}") from None
    except OSError as err:
        os.close(fd)
        if err.errno not in _NO_LOCKS:
            raise
        _warn_unlocked(path, err)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, _holder().encode())
    _held.add(fd)
    return fd


def release(fd: int | None) -> None:
    """Give the lock back (the process's end does the same)."""
    if fd is None or fd not in _held:
        return
    _held.discard(fd)
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 1000, 0).decode(errors="replace")
    except OSError:
        return ""


@contextmanager
def output_lock(path, what: str, fix: str):
    """``acquire`` for the length of a ``with`` block."""
    fd = acquire(path, what, fix)
    try:
        yield fd
    finally:
        release(fd)


def folder_lock(folder, what: str, fix: str):
    """The lock of an output folder: its ``.lock`` file (see ``output_lock``)."""
    return output_lock(Path(folder) / LOCK_NAME, what, fix)


def file_lock(path, what: str, fix: str):
    """The lock of one output file: ``.<name>.lock`` beside it (see ``output_lock``)."""
    path = Path(path)
    return output_lock(path.with_name(f".{path.name}.lock"), what, fix)
