"""One writer per output (utils.locks): a second writer is refused naming the first, a killed
writer never blocks the next one (not even through the workers it forked), and a file system
without locks is one warning, not a failure."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from utils import locks
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

# Takes the lock, forks a worker that outlives it, says so, then waits to be killed.
HOLDER = """
import os, sys, time
from utils.locks import folder_lock
with folder_lock(sys.argv[1], "the folder", "choose another"):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_killed_writer_frees_its_folder_even_while_its_worker_lives(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        busy = rf"the folder is being written by process {holder.pid} "
        with pytest.raises(UserError, match=busy), locks.folder_lock(tmp_path, "the folder", "y"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        time.sleep(0.1)
        with locks.folder_lock(tmp_path, "the folder", "choose another"):  # the worker lives on
            pass
    finally:
        holder.kill()
        subprocess.run(["pkill", "-f", str(tmp_path)], check=False)


def test_a_file_system_without_locks_is_one_warning(tmp_path, monkeypatch, capsys):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(locks.fcntl, "flock", no_locks)
    with locks.file_lock(tmp_path / "out.csv", "out.csv", "give another --csv") as fd:
        assert fd is None
    warning = capsys.readouterr().err.strip()
    assert warning.startswith(f"warning: cannot lock {tmp_path / '.out.csv.lock'}")
    assert "\n" not in warning and "only one does" in warning
