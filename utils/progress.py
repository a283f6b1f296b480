"""Progress bars for a terminal only: a log file (``> log 2>&1``, nohup, CI) gets none.

tqdm redraws its bar with carriage returns many times a second; in a file that is one line per
step. Every phase that shows a bar prints its own summary line when it ends (the epoch line,
"extracted N videos ..."), so off a terminal the bar is simply switched off.
"""

import sys

from tqdm import tqdm


def progress(iterable=None, *, desc=None, total=None, unit="it", show=True, leave=False):
    """A tqdm bar on stderr when it is a terminal and ``show`` holds (pass ``is_main()`` under
    torchrun); else a silent tqdm: same calls (update, set_postfix, write), no output."""
    stream = sys.stderr
    terminal = show and hasattr(stream, "isatty") and stream.isatty()
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
