"""The output files of one command: one writer each, and no temp files left by killed runs.

predict (--csv, --json) and fusion (--out, --json) lock each output file they write
(utils.locks.file_lock: ``.NAME.lock`` beside it): two runs into different files of one folder
both work, a second run into the same file is refused at once, naming the first. Holding the
lock, a run removes the temp files that killed writers of that file left beside it, and only
those: the folder may hold other outputs, written by other runs.
"""

from contextlib import ExitStack, contextmanager
from pathlib import Path

from utils.atomic import DiskFull, remove_stale_tmp
from utils.locks import file_lock


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
            remove_stale_tmp(Path(path).parent, Path(path).name)
        yield


@contextmanager
def on_full_disk(kept: str):
    """A full disk in the block (DiskFull: could not write PATH) is one line that also says
    what is ``kept`` and how to go on."""
    try:
        yield
    except DiskFull as err:
        raise DiskFull(f"{err}; {kept}: free some space and run the same command again") from err
