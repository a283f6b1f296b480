"""Named fault points for the fault suite (tests/test_faults_*.py): a process that reaches the
point named by ``TWO_STREAM_FAULT`` kills itself there, or fails as a full disk would.

    TWO_STREAM_FAULT=<point>[:<action>[:<n>]]

``action``: kill (SIGKILL, the default), term (SIGTERM), int (SIGINT, as Ctrl-C) or enospc
(an OSError "No space left on device" raised at the point); ``n``: act the n-th time this
process reaches the point (default 1). Without the variable a point costs one dict lookup.
"""

import errno
import os
import signal

ENV = "TWO_STREAM_FAULT"
_SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}
_reached: dict[str, int] = {}  # per process: how often each named point was reached


def parse(value: str) -> tuple[str, str, int]:
    """(point, action, n) of a TWO_STREAM_FAULT value."""
    parts = value.split(":")
    point, action, n = parts[0], (parts[1:2] or ["kill"])[0], (parts[2:3] or ["1"])[0]
    if action not in (*_SIGNALS, "enospc"):
        raise ValueError(f"{ENV}={value}: the action must be kill, term, int or enospc")
    return point, action, int(n)


def fault_point(name: str) -> None:
    """Act here if ``TWO_STREAM_FAULT`` names this point (see the module's docstring)."""
    value = os.environ.get(ENV)
    if not value:
        return
    point, action, n = parse(value)
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] != n:
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"<fault point {name}>")
    os.kill(os.getpid(), _SIGNALS[action])
