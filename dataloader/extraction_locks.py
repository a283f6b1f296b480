"""Who writes an extraction root, and where: the locks of tools/extract_frames_flow.py and each
run's own temporary folder. All are ``flock`` locks, which the kernel drops when a process ends,
however it ends (kill -9 included), so a killed run never blocks the next one.

- A run of the whole root holds ``.extract/run.lock`` exclusively. A run of ``--shard I/N``
  holds ``.extract/shard-I-of-N.lock`` exclusively and ``run.lock`` shared. So a second run of
  the root, or of the same shard, is refused at once with one line naming the running process;
  the shards of one N run side by side; a run of the whole root and a shard exclude each other.
- ``.extract/state.lock``, held for a moment (waited for, not refused), orders the writes of the
  files the shards share: settings.json, index.json, the split and the failure lists.
- Each run writes its videos under its own folder ``.extract/tmp/run-<host>-<pid>-<random>/``,
  with ``run-...lock`` beside it, held shared by the run and by each of its workers. A run
  clears the folders whose lock no one holds (those of killed runs), never a live one's; where
  the file system has no locks, only those of ended processes of its own machine.
"""

import errno
import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager, suppress
from pathlib import Path

from utils import locks
from utils.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: no locks (utils.locks says so once)
    fcntl = None

RUN_LOCK = "run.lock"
STATE_LOCK = "state.lock"
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_HOLDER = re.compile(r"process (\d+) on (\S+) since")

# Descriptors of the locks this module holds; a forked child closes its copies at once (a copy
# would keep the lock after its parent died). Spawned workers inherit none.
_held: set[int] = set()


def _close_in_child() -> None:
    for fd in list(_held):
        with suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def _flock(fd: int, shared: bool, wait: bool) -> bool:
    """Lock ``fd``; False where the file system has no locks; BlockingIOError when ``wait`` is
    False and another process holds a lock that excludes this one."""
    if fcntl is None:
        return False
    flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, flags)
    except BlockingIOError:
        raise
    except OSError as err:
        if err.errno in _NO_LOCKS:
            return False
        raise
    return True


def _close(fd: int) -> None:
    _held.discard(fd)
    with suppress(OSError):
        os.close(fd)


def _alive(text: str) -> bool:
    """Whether the holder a lock file names may still run (a killed one leaves its text)."""
    match = _HOLDER.search(text)
    if not match or match.group(2) != socket.gethostname():
        return True  # another machine's: cannot tell
    return _pid_alive(int(match.group(1)))


def _host() -> str:
    """This machine's name, as a folder name may hold it."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def shard_lock_name(shard: tuple[int, int]) -> str:
    return f"shard-{shard[0]}-of-{shard[1]}.lock"


class RootLocks:
    """The locks of one run over ``root`` (its state folder ``state``): of the whole root, or of
    ``shard`` (I, N). ``with RootLocks(...)``: taken or refused (UserError, one line)."""

    def __init__(self, root: Path, state: Path, shard: tuple[int, int] | None):
        self.root, self.state, self.shard = Path(root), Path(state), shard
        self._utils_fds: list[int | None] = []
        self._own_fds: list[int] = []

    def __enter__(self) -> "RootLocks":
        self.state.mkdir(parents=True, exist_ok=True)
        try:
            if self.shard is None:
                self._whole()
            else:
                self._shard()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for fd in self._own_fds:
            _close(fd)
        for fd in reversed(self._utils_fds):
            locks.release(fd)
        self._own_fds, self._utils_fds = [], []

    def _whole(self) -> None:
        fix = (
            "wait for it to end (or stop it) and run again; to extract on several machines at "
            "once, give each its own --shard I/N"
        )
        try:
            self._utils_fds.append(locks.acquire(self.state / RUN_LOCK, f"--out {self.root}", fix))
        except UserError:
            text = _read(self.state / RUN_LOCK)
            shards = self._live_shards()
            if text or not shards:  # another run of the whole root (it wrote its name)
                raise
            raise UserError(
                f"--out {self.root} is being written by {shards}; {fix.split(';')[0]}"
            ) from None

    def _shard(self) -> None:
        index, count = self.shard
        fix = "wait for it to end (or stop it) and run again, or run another shard"
        what = f"shard {index}/{count} of --out {self.root}"
        path = self.state / shard_lock_name(self.shard)
        self._utils_fds.append(locks.acquire(path, what, fix))
        fd = os.open(self.state / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        _held.add(fd)
        self._own_fds.append(fd)  # closed by __exit__, also when refused
        try:
            locked = _flock(fd, shared=True, wait=False)
        except BlockingIOError:
            holder = _read(self.state / RUN_LOCK).strip() or "another process"
            raise UserError(
                f"--out {self.root} is being written by {holder} (a run of all its videos); "
                "wait for it to end (or stop it) and run again"
            ) from None
        if locked:
            os.ftruncate(fd, 0)  # the name a killed run of the whole root left there

    def _live_shards(self) -> str:
        found = []
        for path in sorted(self.state.glob("shard-*-of-*.lock")):
            text = _read(path).strip()
            if text and _alive(text):
                shard = path.stem.removeprefix("shard-").replace("-of-", "/")
                found.append(f"shard {shard} ({text})")
        return "; ".join(found) or "a shard (--shard I/N)"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@contextmanager
def state_lock(state: Path):
    """Hold ``state``/state.lock for a ``with`` block (waiting for another run to let it go):
    around the writes of the files all shards share."""
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / STATE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    _held.add(fd)
    try:
        _flock(fd, shared=False, wait=True)
        yield
    finally:
        _close(fd)


class RunFolder:
    """This run's temporary folder ``tmp_root/run-<host>-<pid>-<random>`` and its lock beside
    it, held shared by the run (here) and by each worker (``join_run``). ``close`` removes
    both."""

    def __init__(self, tmp_root: Path):
        tmp_root = Path(tmp_root)
        tmp_root.mkdir(parents=True, exist_ok=True)
        while True:
            name = f"run-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
            lock = tmp_root / f"{name}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _flock(fd, shared=True, wait=True)
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False  # a run clearing folders took it for a dead one's: another name
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)
        _held.add(fd)
        self.path, self.lock, self._fd = tmp_root / name, lock, fd
        self.path.mkdir()

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock.unlink(missing_ok=True)
        _close(self._fd)

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def join_run(lock: Path) -> None:
    """In a worker: hold its run's lock (shared) until this process ends, so that the run's
    folder is not cleared while the worker lives, even if its parent is gone."""
    fd = os.open(lock, os.O_RDWR)
    _flock(fd, shared=True, wait=True)
    _held.add(fd)


def _dead_here(name: str) -> bool:
    """Whether the run folder ``name`` is that of a process of this machine that has ended."""
    match = re.fullmatch(r"run-(.+)-(\d+)-[0-9a-f]+", name)
    return bool(match) and match.group(1) == _host() and not _pid_alive(int(match.group(2)))


def clear_dead_runs(tmp_root: Path) -> list[str]:
    """Remove the folders (and locks) under ``tmp_root`` of runs that are no longer alive, and
    anything else there that is no live run's; return their names."""
    tmp_root = Path(tmp_root)
    if not tmp_root.is_dir():
        return []
    cleared = []
    for name in sorted({p.name.removesuffix(".lock") for p in tmp_root.iterdir()}):
        lock, folder = tmp_root / f"{name}.lock", tmp_root / name
        try:
            fd = os.open(lock, os.O_RDWR)
        except (FileNotFoundError, IsADirectoryError):
            fd = None  # no lock: no live run's (a run locks before it makes its folder)
        try:
            if fd is not None:
                try:
                    locked = _flock(fd, shared=False, wait=False)
                except BlockingIOError:
                    continue  # a live run's
                if not locked and not _dead_here(name):
                    continue  # no locks here: only a run of this machine is known to be dead
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
            else:
                folder.unlink(missing_ok=True)
            if fd is not None:
                lock.unlink(missing_ok=True)
            cleared.append(name)
        finally:
            if fd is not None:
                os.close(fd)
    return cleared
