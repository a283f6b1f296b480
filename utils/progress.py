"""Progress for a terminal, and for a log only where a task is long.

tqdm redraws its bar with carriage returns many times a second; in a file that is one line per
step. Every phase that shows a bar prints its own summary line when it ends (the epoch line,
"extracted N videos ..."), so off a terminal the bar is switched off, unless ``log`` asks
for a plain line every minute: one long video in predict shows nothing else for minutes.
"""

import os
import sys
import threading
import time

from tqdm import tqdm

LOG_EVERY = 60.0  # seconds between a long task's lines in a log


def _own_lock() -> None:
    tqdm.set_lock(threading.RLock())


# tqdm's defaults share one lock with forked children (a multiprocessing RLock) and run a monitor
# thread that takes it every few seconds: a child killed while its monitor held it (an extraction
# worker, a fault test's child) left it taken for good, and the parent hung at its next bar. Bars
# are drawn by one process: a lock of its own, none left taken in a forked child, no monitor.
_own_lock()
os.register_at_fork(after_in_child=_own_lock)
tqdm.monitor_interval = 0


def progress(iterable=None, *, desc=None, total=None, unit="it", show=True, leave=False,
             log=False):  # fmt: skip
    """A tqdm bar on stderr when it is a terminal and ``show`` holds (pass ``is_main()`` under
    torchrun); else a silent tqdm (the same calls: update, set_postfix, write; no output), or
    with ``log`` a LogProgress, a line every LOG_EVERY seconds (update, reset and close only)."""
    stream = sys.stderr
    terminal = show and hasattr(stream, "isatty") and stream.isatty()
    if show and not terminal and log:
        return LogProgress(desc=desc, total=total, unit=unit, every=LOG_EVERY)
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=leave,
        file=stream,
        dynamic_ncols=True,
        disable=not terminal,
    )


class LogProgress:
    """tqdm's calls for a log file: "DESC: N of TOTAL UNITs done, M:SS so far, about M:SS left"
    on stderr once ``every`` seconds have passed since the last line (none for a short task)."""

    def __init__(self, *, desc=None, total=None, unit="it", every=60.0):
        self.desc, self.unit, self.every, self.total = desc, unit, every, total
        self.reset()

    def reset(self, total=None) -> None:
        self.n, self.start = 0, time.monotonic()
        self.last, self.total = self.start, self.total if total is None else total

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(self.line(now - self.start), file=sys.stderr, flush=True)

    def line(self, elapsed: float) -> str:
        done = f"{self.n} of {self.total}" if self.total else f"{self.n}"
        text = f"{self.desc + ': ' if self.desc else ''}{done} {self.unit}s done, "
        text += f"{tqdm.format_interval(elapsed)} so far"
        if self.total and self.n:
            left = elapsed / self.n * (self.total - self.n)
            text += f", about {tqdm.format_interval(left)} left"
        return text

    def close(self) -> None:
        """Nothing to clear: lines are final."""
