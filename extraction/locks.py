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

import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from utils import locks
from utils.errors import UserError

RUN_LOCK = "run.lock"
STATE_LOCK = "state.lock"


def _host() -> str:
    """This machine's name, as a folder name may hold it."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"


def shard_lock_name(shard: tuple[int, int]) -> str:
    return f"shard-{shard[0]}-of-{shard[1]}.lock"


class RootLocks:
    """The locks of one run over ``root`` (its state folder ``state``): of the whole root, or of
    ``shard`` (I, N). ``with RootLocks(...)``: taken or refused (UserError, one line)."""

    def __init__(self, root: Path, state: Path, shard: tuple[int, int] | None):
        self.root, self.state, self.shard = Path(root), Path(state), shard
        self._fds: list[int | None] = []

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
        for fd in reversed(self._fds):
            locks.release(fd)
        self._fds = []

    def _whole(self) -> None:
        fix = (
            "wait for it to end (or stop it) and run again; to extract on several machines at "
            "once, give each its own --shard I/N"
        )
        try:
            self._fds.append(locks.acquire(self.state / RUN_LOCK, f"--out {self.root}", fix))
        except locks.Busy as err:
            shards = self._live_shards()
            if err.holder or not shards:  # another run of the whole root (it wrote its name)
                raise
            raise UserError(
                f"--out {self.root} is being written by {shards}; {fix.split(';')[0]}"
            ) from None

    def _shard(self) -> None:
        index, count = self.shard
        fix = "wait for it to end (or stop it) and run again"
        what = f"shard {index}/{count} of --out {self.root}"
        path = self.state / shard_lock_name(self.shard)
        self._fds.append(locks.acquire(path, what, f"{fix}, or run another shard"))
        try:  # shared with the other shards, against a run of the whole root
            run = locks.acquire(self.state / RUN_LOCK, f"--out {self.root}", fix, shared=True)
            self._fds.append(run)
        except locks.Busy as err:  # named as a run of the whole root
            raise UserError(
                f"--out {self.root} is being written by {err.holder or 'another process'} (a "
                f"run of all its videos); {fix}"
            ) from None

    def _live_shards(self) -> str:
        found = []
        for path in sorted(self.state.glob("shard-*-of-*.lock")):
            holder = locks.live_holder(path)
            if holder:
                shard = path.stem.removeprefix("shard-").replace("-of-", "/")
                found.append(f"shard {shard} ({holder})")
        return "; ".join(found) or "a shard (--shard I/N)"


@contextmanager
def state_lock(state: Path):
    """Hold ``state``/state.lock for a ``with`` block (waiting for another run to let it go):
    around the writes of the files all shards share."""
    what = f"the files the shards of {state.parent} share"
    with locks.output_lock(state / STATE_LOCK, what, "", wait=True):
        yield


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
                locks.lock(fd, shared=True, wait=True)
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False  # a run clearing folders took it for a dead one's: another name
            except BaseException:
                locks.release(fd)
                raise
            if same:
                break
            locks.release(fd)
        self.path, self.lock, self._fd = tmp_root / name, lock, fd
        self.path.mkdir()

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock.unlink(missing_ok=True)
        locks.release(self._fd)

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def join_run(lock: Path) -> None:
    """In a worker: hold its run's lock (shared) until this process ends, so that the run's
    folder is not cleared while the worker lives, even if its parent is gone."""
    locks.lock(os.open(lock, os.O_RDWR), shared=True, wait=True)


def _dead_here(name: str) -> bool:
    """Whether the run folder ``name`` is that of a process of this machine that has ended."""
    match = re.fullmatch(r"run-(.+)-(\d+)-[0-9a-f]+", name)
    return bool(match) and match.group(1) == _host() and not locks.pid_alive(int(match.group(2)))


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
                    locked = locks.lock(fd)
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
            locks.release(fd)
    return cleared
