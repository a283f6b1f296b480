"""The worker and solver processes of an extraction (extraction/pool.py starts
them): CPU workers that decode videos and write JPEGs, and the TV-L1 solvers they use.

On the CPU each worker solves its own pairs (``LocalSolver``); on GPUs one solver process per
device (``solver_main``) holds the device, the workers send it their gray pairs
(``RemoteSolver``) and keep decoding while it works, and it solves the pairs of several workers,
so of several videos, in one batch. Workers and solvers ignore SIGINT (Ctrl-C is the parent's),
stop within a frame when the stop event is set, and end with their parent however it ends
(kill -9 included): on Linux the kernel kills them (PR_SET_PDEATHSIG), and elsewhere they see
it gone between frames.
"""

import ctypes
import errno
import os
import queue
import signal
import sys
import time

from extraction.locks import join_run
from extraction.root import Stopped, extract_video

GATHER_S = 0.05  # how long a solver waits for more pairs to fill its batch
POLL_S = 0.2


def limit_threads(threads: int, method: str) -> None:
    """Give this process ``threads`` OpenCV (and, for the torch method, torch) threads."""
    import cv2

    cv2.setNumThreads(threads)
    if method == "torch":
        import torch

        torch.set_num_threads(threads)


class LocalSolver:
    """Solves pairs in this process, at once: ``submit`` then ``result``."""

    depth = 0  # requests kept in flight by extract_video

    def __init__(self, flows):
        self._flows, self._done, self._next = flows, {}, 0

    def submit(self, grays):
        """Consecutive gray frames [K+1, H, W] -> a ticket for their K flows."""
        self._next += 1
        self._done[self._next] = self._flows(grays[:-1], grays[1:])
        return self._next

    def result(self, ticket):
        return self._done.pop(ticket)

    def forget(self, tickets) -> None:
        for ticket in tickets:
            self._done.pop(ticket, None)


class FlowError(Exception):
    """The solver process could not solve a request (message from there)."""


class RemoteSolver:
    """Sends pairs to a solver process and waits for its answers (a worker's end)."""

    depth = 2  # requests in flight: the worker decodes the next frames while they are solved

    def __init__(self, worker: int, requests, replies, stop):
        self._worker, self._requests, self._replies, self._stop = worker, requests, replies, stop
        self._next, self._got, self._forgotten = 0, {}, set()

    def submit(self, grays):
        self._next += 1
        self._requests.put((self._worker, self._next, grays))
        return self._next

    def result(self, ticket):
        while ticket not in self._got:
            try:
                got, flows, error = self._replies.get(timeout=POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    raise Stopped("waiting for the solver") from None
                continue
            if got in self._forgotten:
                self._forgotten.discard(got)
            else:
                self._got[got] = (flows, error)
        flows, error = self._got.pop(ticket)
        if error is not None:
            raise FlowError(error)
        return flows

    def forget(self, tickets) -> None:
        for ticket in tickets:
            if self._got.pop(ticket, None) is None:
                self._forgotten.add(ticket)


def disk_full_error(err: BaseException) -> OSError | None:
    """The "no space left" OSError that ``err`` is or arose from, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        err = err.__cause__ or err.__context__
    return None


def written_file(err: OSError) -> str | None:
    """The file a full disk refused, where ``err`` names it (a fault point's name is none)."""
    if err.filename is not None and not str(err.filename).startswith("<"):
        return str(err.filename)
    return None


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Have this process killed when its parent ends, however it ends (Linux: the kernel's
    PR_SET_PDEATHSIG; elsewhere ``_Stop`` sees the parent gone between frames)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it ended before the line above
        os._exit(1)


class _Stop:
    """The stop event, also set when the parent ``parent`` is gone."""

    def __init__(self, event, parent: int):
        self._event, self._parent = event, parent

    def is_set(self) -> bool:
        if os.getppid() != self._parent:
            os._exit(1)  # no one to report to: end at once (its run's folder is cleared later)
        return self._event.is_set()


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _polled(q, stop):
    """The items of ``q`` until its None, waking every POLL_S to see ``stop`` set."""
    while not stop.is_set():
        try:
            item = q.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if item is None:
            return
        yield item


def solver_main(device, settings, batch, threads, requests, replies, stop, parent) -> None:
    """A solver process: gather requests of all workers until ``batch`` pairs (or GATHER_S
    passes), solve those of one frame size together, answer each worker."""
    _die_with_parent(parent)
    stop = _Stop(stop, parent)
    _ignore_interrupts()
    limit_threads(threads, settings.method)
    from extraction.tvl1 import make_flow

    for reply in replies:
        reply.cancel_join_thread()  # a worker that was stopped no longer reads its answers
    flows = make_flow(settings.preset, settings.method, device, batch)
    closing = False
    for first in _polled(requests, stop):
        items, pairs = [first], len(first[2]) - 1
        deadline = time.monotonic() + GATHER_S
        while pairs < batch:
            try:
                item = requests.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                closing = True
                break
            items.append(item)
            pairs += len(item[2]) - 1
        answer(flows, items, replies)
        if closing:
            break


def answer(flows, items, replies) -> None:
    """Solve requests ``(worker, ticket, grays)`` with ``flows``, those of one frame size in
    one call, and put ``(ticket, flows or None, error or None)`` to ``replies[worker]``."""
    import numpy as np

    by_size: dict[tuple, list] = {}
    for item in items:
        by_size.setdefault(item[2].shape[1:], []).append(item)
    for group in by_size.values():
        try:
            prevs = np.concatenate([grays[:-1] for _, _, grays in group])
            nexts = np.concatenate([grays[1:] for _, _, grays in group])
            out, error = flows(prevs, nexts), None
        except Exception as err:
            out, error = None, f"{type(err).__name__}: {err}"
        start = 0
        for worker, ticket, grays in group:
            count = len(grays) - 1
            replies[worker].put(
                (ticket, None if out is None else out[start : start + count], error)
            )
            start += count


def worker_main(index, tasks, events, stop, root, settings, threads, solver, run, parent) -> None:
    """A worker process: extract the videos of ``tasks`` until a None, sending ``run``'s events
    to ``events``; ``solver`` is (device, batch) to solve here, else (requests, replies, chunk);
    ``run`` is (folder, lock, pack) of its run (pack: write packs, not folders); ``parent`` the
    pid of the process that started it."""
    _die_with_parent(parent)
    stop = _Stop(stop, parent)
    run_dir, run_lock, pack = run
    join_run(run_lock)
    _ignore_interrupts()
    local = len(solver) == 2
    limit_threads(threads, settings.method if local else "opencv")  # torch: the solver's
    if local:
        from extraction.tvl1 import make_flow

        device, chunk = solver
        flows = LocalSolver(make_flow(settings.preset, settings.method, device, chunk))
    else:
        requests, replies, chunk = solver
        flows = RemoteSolver(index, requests, replies, stop)
    for name, path in _polled(tasks, stop):
        events.put(("start", index, name, None))

        def report(kind, value, name=name):
            events.put((kind, index, name, value))

        try:
            entry = extract_video(
                path, name, root, settings, flows, chunk, report, stop, run_dir=run_dir, pack=pack
            )
        except Stopped:
            events.put(("stopped", index, name, None))
            break
        except Exception as err:
            full = disk_full_error(err)
            if full is not None:
                events.put(("full", index, name, written_file(full)))
                break
            events.put(("failed", index, name, f"{type(err).__name__}: {err}"))
        else:
            events.put(("done", index, name, entry))
    events.put(("exit", index, None, None))
