"""The output files of one command: one writer each, and no temp files left by killed runs.

predict (--csv, --json) and fusion (--out, --json) lock each output file they write
(utils.locks.file_lock: ``.NAME.lock`` beside it): two runs into different files of one folder
both work, a second run into the same file is refused at once, naming the first. Holding the
lock, a run removes the temp files that killed writers of that file left beside it, and only
those: the folder may hold other outputs, written by other runs.
"""

import re
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path

from utils.atomic import DiskFull
from utils.locks import file_lock


def stale_tmp(path) -> list[Path]:
    """The temp files and folders of ``path`` beside it: ``.NAME.PID.HEX.tmp`` (utils.atomic's
    tmp_name) and ``.NAME.PID.HEX.tmpdir`` (a folder of files written before being moved)."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.\d+\.[0-9a-f]+\.tmp(dir)?")
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def remove_stale_tmp(path) -> None:
    """Remove what ``stale_tmp`` finds; call it holding the lock of ``path``."""
    for tmp in stale_tmp(path):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


@contextmanager
def locked_outputs(outputs: dict):
    """Hold the lock of each output file ``{path: option}`` (path None: not asked for) for a
    ``with`` block, and remove the temp files killed runs left beside it."""
    with ExitStack() as stack:
        seen = set()
        for path, option in outputs.items():
            if path is None or Path(path).resolve() in seen:
                continue
            seen.add(Path(path).resolve())
            fix = f"wait for it to end, or give another {option}"
            stack.enter_context(file_lock(path, str(path), fix))
            remove_stale_tmp(path)
        yield


@contextmanager
def on_full_disk(kept: str):
    """A full disk in the block (DiskFull: could not write PATH) is one line that also says
    what is ``kept`` and how to go on."""
    try:
        yield
    except DiskFull as err:
        raise DiskFull(f"{err}; {kept}: free some space and run the same command again") from err
