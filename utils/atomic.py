"""Files that must survive a kill: write a temp file beside the target, then rename it.

The one atomic writer of the toolkit: checkpoints, score files, JSON and text outputs, the
extraction index and the frame-count cache all go through ``atomic_write``.
"""

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path):
    """Yield a binary file; on success it replaces ``path`` whole, on any error it vanishes.

    A kill at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not mkstemp: that would leave the file readable by its owner only
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> Path:
    """UTF-8 text, written atomically; the parent folder is created."""
    with atomic_write(path) as file:
        file.write(text.encode("utf-8"))
    return Path(path)


def write_json(path, data, indent: int | None = 2) -> Path:
    """JSON, written atomically; the parent folder is created."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")
