"""Processes of an extraction: CPU workers that decode videos and write JPEGs, and the TV-L1
solvers they use.

On the CPU each worker solves its own pairs (``LocalSolver``) with ``cores // workers``
OpenCV threads (at least one) and one torch thread, so N workers on N cores spend no more CPU
time per pair than one (bench/extraction_cpu_bench.py). On GPUs one solver process per device
(``solver_main``) holds the device; the workers send it their gray pairs (``RemoteSolver``)
and keep decoding while it works, and it solves the pairs of several workers, so of several
videos, in one batch.

Ctrl-C reaches the parent alone (workers and solvers ignore SIGINT): ``run`` sets the stop
event, each worker drops its video within a frame (its temporary folder removed), and what is
still alive after a few seconds is terminated. Workers and solvers end with their parent however
it ends (kill -9 included): on Linux the kernel kills them (PR_SET_PDEATHSIG), and elsewhere
they see it gone between frames. A full disk stops the run: ``run`` raises OutOfSpace.

Fault point (utils/faults.py): ``extract.done``, in the parent each time a video is done.
"""

import ctypes
import errno
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dataloader.extraction_locks import RunFolder, join_run
from dataloader.extraction_root import STATE_DIR, TMP_DIR, Stopped, extract_video
from dataloader.extraction_settings import ExtractionSettings
from utils.errors import UserError
from utils.faults import fault_point

GATHER_S = 0.05  # how long a solver waits for more pairs to fill its batch
GRACE_S = 5.0  # how long stopped processes get to finish before they are terminated
POLL_S = 0.2


def limit_threads(threads: int, method: str) -> None:
    """Give this process ``threads`` OpenCV (and, for the torch method, torch) threads."""
    import cv2

    cv2.setNumThreads(threads)
    if method == "torch":
        import torch

        torch.set_num_threads(threads)


def worker_threads(workers: int, method: str = "opencv", cores: int | None = None) -> int:
    """Threads per worker so that the workers together use the cores once; one for the torch
    TV-L1, whose small operations gain nothing from a second thread and cost 5x the CPU time
    on a busy machine (bench/extraction_cpu_bench.py)."""
    if method == "torch":
        return 1
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // workers)


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


class OutOfSpace(Exception):
    """The disk filled up while ``name`` was written (``path``: the file, when known)."""

    def __init__(self, name: str, path: str | None):
        super().__init__(f"the disk is full: could not write {path or 'the files'} of {name}")
        self.name, self.path = name, path


def _full(err: BaseException) -> OSError | None:
    """The "no space left" OSError that ``err`` is or arose from, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        err = err.__cause__ or err.__context__
    return None


def _written(err: OSError) -> str | None:
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
    from dataloader.extraction import make_flow

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
    ``run`` is (folder, lock) of its run; ``parent`` the pid of the process that started it."""
    _die_with_parent(parent)
    stop = _Stop(stop, parent)
    run_dir, run_lock = run
    join_run(run_lock)
    _ignore_interrupts()
    local = len(solver) == 2
    limit_threads(threads, settings.method if local else "opencv")  # torch: the solver's
    if local:
        from dataloader.extraction import make_flow

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
                path, name, root, settings, flows, chunk, report, stop, run_dir=run_dir
            )
        except Stopped:
            events.put(("stopped", index, name, None))
            break
        except Exception as err:
            full = _full(err)
            if full is not None:
                events.put(("full", index, name, _written(full)))
                break
            events.put(("failed", index, name, f"{type(err).__name__}: {err}"))
        else:
            events.put(("done", index, name, entry))
    events.put(("exit", index, None, None))


@dataclass
class Plan:
    """How to run: ``workers`` CPU processes (1 with no ``devices``: this process);
    ``devices`` one solver process each (empty: the workers solve on ``device``); ``batch``
    pairs per solve; ``threads`` per worker."""

    workers: int
    devices: list[str] = field(default_factory=list)
    device: str = "cpu"
    batch: int = 1
    threads: int = 1


def run(
    todo,
    root: Path,
    settings: ExtractionSettings,
    plan: Plan,
    on_event,
    debug=False,
    run_folder: RunFolder | None = None,
):
    """Extract ``todo`` ((name, path) pairs), calling ``on_event(kind, name, value)`` with:
    start, expect (frames the container declares), frames (decoded since the last), done (the
    index entry), failed (a message), stopped. A KeyboardInterrupt stops every process and
    removes the temporary folders of the videos in progress, then propagates; so does
    OutOfSpace, for a full disk. ``run_folder``: the run's own temporary folder (default: a new
    one under ROOT/.extract/tmp, removed at the end)."""
    own = run_folder is None
    if own:
        run_folder = RunFolder(root / STATE_DIR / TMP_DIR)
    try:
        if plan.workers == 1 and not plan.devices:
            _run_here(todo, root, settings, plan, on_event, debug, run_folder.path)
        else:
            _run_processes(todo, root, settings, plan, on_event, run_folder)
    finally:
        if own:
            run_folder.close()


def _run_here(todo, root, settings, plan, on_event, debug, run_dir) -> None:
    from dataloader.extraction import make_flow

    limit_threads(plan.threads, settings.method)
    solver = LocalSolver(make_flow(settings.preset, settings.method, plan.device, plan.batch))
    for name, path in todo:
        on_event("start", name, None)

        def report(kind, value, name=name):
            on_event(kind, name, value)

        try:
            entry = extract_video(
                path, name, root, settings, solver, plan.batch, report, run_dir=run_dir
            )
        except Exception as err:
            full = _full(err)
            if full is not None:
                raise OutOfSpace(name, _written(full)) from err
            if debug:
                raise
            on_event("failed", name, f"{type(err).__name__}: {err}")
        else:
            on_event("done", name, entry)
            fault_point("extract.done")


def _run_processes(todo, root, settings, plan, on_event, run_folder) -> None:
    context = multiprocessing.get_context("spawn")  # safe with OpenCV's, OpenMP's threads, CUDA
    stop, tasks, events = context.Event(), context.Queue(), context.Queue()
    for item in todo:
        tasks.put(item)
    for _ in range(plan.workers):
        tasks.put(None)
    solvers, requests, replies = [], [], []
    for device in plan.devices:
        requests.append(context.Queue())
        replies.append([context.Queue() for _ in range(plan.workers)])
        args = (device, settings, plan.batch, 1, requests[-1], replies[-1], stop, os.getpid())
        solvers.append(context.Process(target=solver_main, args=args, daemon=True))
    share = -(-plan.workers // max(1, len(plan.devices)))  # workers per solver
    workers = []
    for i in range(plan.workers):
        if plan.devices:
            s = i % len(plan.devices)
            solver = (requests[s], replies[s][i], max(1, -(-plan.batch // share)))
        else:
            solver = (plan.device, plan.batch)
        run = (run_folder.path, run_folder.lock)
        args = (i, tasks, events, stop, root, settings, plan.threads, solver, run, os.getpid())
        workers.append(context.Process(target=worker_main, args=args, daemon=True))
    current: dict[int, str] = {}
    running = set(range(plan.workers))
    full = None
    # Ctrl-C held while the children start: they inherit the mask, so one during their start
    # prints nothing there (they ignore it from worker_main on), and this process gets it when
    # the mask is lifted (ignoring it instead would lose a Ctrl-C that comes meanwhile).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        try:
            for process in solvers + workers:
                process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        while running:
            try:
                kind, index, name, value = events.get(timeout=POLL_S)
            except queue.Empty:
                _check_solvers(solvers, plan.devices)
                for index in [i for i in running if not workers[i].is_alive()]:
                    running.discard(index)  # killed (out of memory?) without a word
                    if index in current:
                        code = workers[index].exitcode
                        on_event("failed", current.pop(index), f"worker died (exit code {code})")
                continue
            if kind == "exit":
                running.discard(index)
                continue
            if kind == "full":
                full = OutOfSpace(name, value)
                break
            if kind == "start":
                current[index] = name
            elif kind in ("done", "failed", "stopped"):
                current.pop(index, None)
            on_event(kind, name, value)
            if kind == "done":
                fault_point("extract.done")
        for request_queue in requests:
            request_queue.put(None)
    finally:
        stop.set()
        _finish(solvers + workers, events)
        for name in current.values():
            shutil.rmtree(run_folder.path / name, ignore_errors=True)
    if full is not None:
        raise full


def _check_solvers(solvers, devices) -> None:
    """A solver that died leaves its workers waiting for ever: stop, and say so."""
    for process, device in zip(solvers, devices, strict=True):
        if process.exitcode not in (0, None):
            raise UserError(
                f"the flow solver process on {device} died (exit code {process.exitcode}); "
                "run the same command again to continue (finished videos are kept), with a "
                "smaller --flow-batch if it ran out of memory"
            )


def _finish(processes, events) -> None:
    """Join ``processes`` for up to GRACE_S in all (reading ``events``, so that none blocks on
    a full pipe at exit), then terminate the rest."""
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(p.is_alive() for p in processes):
        try:
            while True:
                events.get_nowait()
        except queue.Empty:
            pass
        time.sleep(0.05)
    for process in processes:
        if process.is_alive():
            process.terminate()
        if process.pid is not None:  # started
            process.join(timeout=1.0)
