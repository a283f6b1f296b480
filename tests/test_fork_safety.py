"""A DataLoader's decoding workers start even when the parent process used OpenCV's thread pool
first (a second run in one Python process, a notebook): forked children used to hang forever.
A forked child killed while it held the progress bars' lock leaves the parent's bars working."""

import multiprocessing
import os
import signal
import threading

import cv2
import numpy as np

from dataloader.datasets import before_workers, worker_init
from utils.progress import progress


def _child(queue) -> None:
    worker_init(0)  # what every DataLoader worker runs first
    cv2.GaussianBlur(np.zeros((512, 512, 3), np.uint8), (15, 15), 0)
    queue.put("started")


def test_workers_start_after_the_parent_used_opencvs_threads():
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        image = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
        for _ in range(10):  # the parent's pool is live
            cv2.GaussianBlur(image, (15, 15), 0)
        before_workers(1)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child, args=(queue,))
        child.start()
        child.join(timeout=30)
        hung = child.is_alive()
        if hung:
            child.kill()
        assert not hung and queue.get(timeout=1) == "started"
    finally:
        cv2.setNumThreads(threads)


def test_a_child_killed_holding_the_bar_lock_leaves_the_parents_bars_working():
    """tqdm's default lock was shared with forked children: a worker killed while holding it
    (its monitor thread took it every few seconds) hung the parent at its next bar."""
    progress(range(1)).close()  # the lock exists before the fork, as in a run
    pid = os.fork()
    if pid == 0:  # the child: take the lock and die with it
        progress(range(1)).get_lock().acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    done = threading.Event()
    bar = threading.Thread(target=lambda: (progress(range(3)).close(), done.set()), daemon=True)
    bar.start()
    assert done.wait(timeout=10), "the parent's next progress bar hung on the dead child's lock"
