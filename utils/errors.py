"""User-facing errors: one clear line on stderr instead of a traceback."""

import signal
import sys
import threading
from contextlib import contextmanager


class UserError(Exception):
    """Bad input the user can fix (missing file, wrong option). Printed as one line, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with what was kept and how to continue (printed after "interrupted: ")."""


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def terminate_as_interrupt():
    """SIGTERM (a cluster job's time limit, scancel, torchrun stopping its workers) stops the
    block as Ctrl-C does, so the run can say how to continue instead of vanishing mid-line."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_line(err: Exception) -> str:
    """The message of ``err``; for one re-raised from a DataLoader worker, the original's."""
    text = str(err).strip()
    if "Original Traceback" in text:  # torch wraps a worker's exception with its traceback
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def run_cli(main, argv=None):
    """Run ``main(argv)``; turn UserError (and Ctrl-C) into one line on stderr and a non-zero exit.

    With ``--debug`` in argv the traceback is shown instead.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        return main(args)
    except UserError as err:
        if debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:
        if debug:
            raise
        print(
            f"interrupted: {err}" if isinstance(err, Interrupted) else "interrupted",
            file=sys.stderr,
        )
        sys.exit(130)
