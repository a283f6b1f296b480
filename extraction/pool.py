"""The processes of an extraction, from the parent's side: how many, started how, fed and
watched how (the code they run: extraction/workers.py).

On the CPU each worker solves its own pairs with ``cores // workers`` OpenCV threads (at least
one) and one torch thread, so N workers on N cores spend no more CPU time per pair than one
(bench/extraction_cpu_bench.py). On GPUs one solver process per device holds the device and
solves the pairs the workers send it; one worker on the CPU runs in this process.

Ctrl-C reaches the parent alone (workers and solvers ignore SIGINT): ``run`` sets the stop
event, each worker drops its video within a frame (its temporary folder removed), and what is
still alive after a few seconds is terminated. Workers and solvers end with their parent however
it ends (kill -9 included). A full disk stops the run: ``run`` raises OutOfSpace.

Fault point (utils/faults.py): ``extract.done``, in the parent each time a video is done.
"""

import multiprocessing
import os
import queue
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from extraction.locks import RunFolder
from extraction.root import STATE_DIR, TMP_DIR, extract_video
from extraction.settings import ExtractionSettings
from extraction.workers import (
    POLL_S,
    LocalSolver,
    disk_full_error,
    limit_threads,
    solver_main,
    worker_main,
    written_file,
)
from utils.cores import usable_cores
from utils.errors import UserError
from utils.faults import fault_point

GRACE_S = 5.0  # how long stopped processes get to finish before they are terminated


def worker_threads(workers: int, method: str = "opencv", cores: int | None = None) -> int:
    """Threads per worker so that the workers together use the cores once; one for the torch
    TV-L1, whose small operations gain nothing from a second thread and cost 5x the CPU time
    on a busy machine (bench/extraction_cpu_bench.py)."""
    if method == "torch":
        return 1
    cores = cores or usable_cores()
    return max(1, cores // workers)


class OutOfSpace(Exception):
    """The disk filled up while ``name`` was written (``path``: the file, when known)."""

    def __init__(self, name: str, path: str | None):
        super().__init__(f"the disk is full: could not write {path or 'the files'} of {name}")
        self.name, self.path = name, path


@dataclass
class Plan:
    """How to run: ``workers`` CPU processes (1 with no ``devices``: this process);
    ``devices`` one solver process each (empty: the workers solve on ``device``); ``batch``
    pairs per solve; ``threads`` per worker; ``pack``: write packs, not folders (--pack)."""

    workers: int
    devices: list[str] = field(default_factory=list)
    device: str = "cpu"
    batch: int = 1
    threads: int = 1
    pack: bool = False


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
    from extraction.tvl1 import make_flow

    limit_threads(plan.threads, settings.method)
    solver = LocalSolver(make_flow(settings.preset, settings.method, plan.device, plan.batch))
    for name, path in todo:
        on_event("start", name, None)

        def report(kind, value, name=name):
            on_event(kind, name, value)

        try:
            entry = extract_video(
                path, name, root, settings, solver, plan.batch, report,
                run_dir=run_dir, pack=plan.pack,
            )  # fmt: skip
        except Exception as err:
            full = disk_full_error(err)
            if full is not None:
                raise OutOfSpace(name, written_file(full)) from err
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
        run = (run_folder.path, run_folder.lock, plan.pack)
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
