"""How many CPU cores this process may use."""

import os


def usable_cores() -> int:
    """The cores the process is allowed to run on (its affinity, which a cluster's job or
    ``taskset`` narrows) where the OS says (Linux); else every core (macOS, Windows)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
