"""One writer per output: an exclusive OS lock (``flock``) on a small file, held while the
process runs and released by the kernel when it ends, however it ends (kill -9 included), so a
killed run never blocks the next one.

The lock file also says who holds it (process id, host, command, start time), so the run that
is refused can name the one that is running. Where the file system has no locks (some network
file systems) one warning says so and the run goes on unlocked.

A lock may also be shared (several readers, or runs that each write their own part, against one
that needs the whole) and may be waited for instead of refused (a short critical section).
"""

import datetime
import errno
import os
import re
import socket
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

from utils.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no locks, said once
    fcntl = None

LOCK_NAME = ".lock"  # the lock file of a folder
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_NAMED = re.compile(r"process (\d+) on (\S+) since")  # what _holder writes

# Lock descriptors held by this process -> whether the lock file names this process (an
# exclusive ``acquire``; ``release`` clears the name). A forked child (a DataLoader or extraction
# worker) closes its copies at once: a copy would keep the lock after its parent died.
_held: dict[int, bool] = {}
_warned: set[int] = set()  # the devices (file systems) whose missing locks were said


def _close_in_child() -> None:
    for fd in list(_held):
        with suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class Busy(UserError):
    """A lock another process holds; ``holder``: who, as its lock file says ("" if it says
    nothing: a shared holder, or one that has not written its name yet)."""

    def __init__(self, message: str, holder: str):
        super().__init__(message)
        self.holder = holder


def _holder() -> str:
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:]) if sys.argv else "python"
    return f"process {os.getpid()} on {socket.gethostname()} since {started}: {command}\n"


def _warn_unlocked(path: Path, err: OSError) -> None:
    """Say once per file system that it has no locks."""
    try:
        device = os.stat(path.parent).st_dev
    except OSError:
        device = -1
    if device in _warned:
        return
    _warned.add(device)
    print(
        f"warning: cannot lock {path} ({err.strerror or err}): this file system has no locks, "
        "so nothing stops a second run from writing to the same place at once; make sure only "
        "one does",
        file=sys.stderr,
        flush=True,
    )


def _flock(fd: int, shared: bool, wait: bool) -> OSError | None:
    """``flock`` ``fd``; the error where the file system has no locks (None once locked)."""
    if fcntl is None:
        return OSError(errno.ENOSYS, "no fcntl on this system")
    flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, flags)
    except OSError as err:
        if err.errno not in _NO_LOCKS:  # BlockingIOError included
            raise
        return err
    return None


def lock(fd: int, *, shared: bool = False, wait: bool = False) -> bool:
    """Lock the open file ``fd`` (``release`` closes it; a forked child closes its copy):
    exclusively, or ``shared`` with other shared holders. True once locked; False where the file
    system has no locks (said by ``acquire``, not here); BlockingIOError when another process
    holds a lock that excludes this one and ``wait`` is False (else it waits)."""
    _held.setdefault(fd, False)
    return _flock(fd, shared, wait) is None


def acquire(path, what: str, fix: str, *, shared: bool = False, wait: bool = False) -> int | None:
    """Lock the file ``path`` (created if missing); the descriptor to ``release``, or None
    where the file system has no locks (one warning per file system). Exclusive by default:
    the file then names this process; ``shared``: with other shared holders (the name a killed
    exclusive holder left is cleared). Held by another process: ``Busy`` at once, "``what``
    (the output it guards, e.g. "the record dir record/spatial") is being written by <holder>;
    ``fix`` (what the refused user can do instead)", or with ``wait`` until it is let go."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    _held[fd] = False
    try:
        unlocked = _flock(fd, shared, wait)
    except BlockingIOError:
        holder = _read(fd).strip()
        release(fd)
        message = f"{what} is being written by {holder or 'another process'}; {fix}"
        raise Busy(message, holder) from None
    except BaseException:
        release(fd)
        raise
    if unlocked is not None:
        release(fd)
        _warn_unlocked(path, unlocked)
        return None
    os.ftruncate(fd, 0)
    if not shared:
        os.write(fd, _holder().encode())
        _held[fd] = True
    return fd


def release(fd: int | None) -> None:
    """Give the lock back (the process's end does the same) and close ``fd``."""
    if fd is None or fd not in _held:
        return
    named = _held.pop(fd)
    try:
        if named:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 1000, 0).decode(errors="replace")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """Whether the process ``pid`` of this machine runs (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def live_holder(path) -> str:
    """The holder the lock file ``path`` names, or "" where it names none or one of this
    machine that has ended (a killed holder's name stays in the file; another machine's
    holder is taken to run)."""
    try:
        text = Path(path).read_text(errors="replace").strip()
    except OSError:
        return ""
    match = _NAMED.match(text)
    if match and match.group(2) == socket.gethostname() and not pid_alive(int(match.group(1))):
        return ""
    return text


@contextmanager
def output_lock(path, what: str, fix: str, *, shared: bool = False, wait: bool = False):
    """``acquire`` for the length of a ``with`` block."""
    fd = acquire(path, what, fix, shared=shared, wait=wait)
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
