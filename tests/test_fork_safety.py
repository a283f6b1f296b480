"""A DataLoader's decoding workers start even when the parent process used OpenCV's thread pool
first (a second run in one Python process, a notebook): forked children used to hang forever."""

import multiprocessing

import cv2
import numpy as np

from dataloader.datasets import before_workers, worker_init


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
