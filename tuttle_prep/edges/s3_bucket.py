"""One S3 bucket as the job works on it: the client, the thread budget and the worker processes.

The listing (`s3_listing`), applying (`s3_apply`) and small-object (`s3_objects`) edges take an `S3Bucket`;
this module also holds what they share: bounded parallel work on threads and the progress bar.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import nullcontext
from typing import Any, TypeVar

from tqdm import tqdm

from .aws import make_client

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def progress(total: int | None, desc: str) -> tqdm:
    """A progress bar on a terminal; silent (and nearly free) in cron logs."""
    return tqdm(total=total, desc=desc, unit="obj", disable=None, leave=False, mininterval=0.5)


def run_bounded(
    fn: Callable[[T], R], items: Iterable[T], workers: int, executor: Executor | None = None
) -> Iterator[tuple[T, R | BaseException]]:
    """Run `fn` over `items` on `workers` threads (or on `executor`), at most 4×workers in flight; yield (item,
    result or error)."""
    items = iter(items)
    limit = max(1, workers) * 4
    own_pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="s3") if executor is None else None
    with own_pool or nullcontext(executor) as pool:
        running: dict[Future, T] = {}
        try:
            while True:
                while len(running) < limit:
                    item = next(items, _DONE)
                    if item is _DONE:
                        break
                    running[pool.submit(fn, item)] = item
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    item = running.pop(future)
                    error = future.exception()
                    yield item, (error if error is not None else future.result())
        finally:
            # stopped early (an error, SIGTERM, the caller gave up): queued work never starts
            for future in running:
                future.cancel()


_DONE: Any = object()


def default_processes() -> int:
    """Worker processes for large listings and plans: one per core, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


_process_bucket: S3Bucket | None = None


def _start_worker_process(bucket: str, threads: int) -> None:
    """Initializer of a worker process: its own client (clients don't cross processes); Ctrl-C is the parent's."""
    global _process_bucket
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _process_bucket = S3Bucket(make_client("s3", max_pool=threads), bucket, threads)


def worker_bucket() -> S3Bucket:
    """The bucket of this worker process (for functions the worker pool runs)."""
    if _process_bucket is None:
        raise RuntimeError("this runs only in a worker process started by _start_worker_process")
    return _process_bucket


class S3Bucket:
    """One bucket, one client (shared by all threads: boto3 clients are thread-safe).

    `processes` > 1 lets large plans (`s3_apply.PROCESS_MIN_COPIES`) and large listings
    (`s3_listing.PROCESS_MIN_KEYS`) spread over that many worker processes, each with its own client made by
    `aws.make_client` from the environment, and `workers` threads in all. They start on first use and stop when
    `apply_plan` ends or on `close`.
    """

    def __init__(self, client: Any, bucket: str, workers: int = 32, processes: int = 1) -> None:
        self.client = client
        self.bucket = bucket
        self.workers = max(1, workers)
        self.processes = max(1, min(processes, self.workers))
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def worker_pool(self) -> ProcessPoolExecutor | None:
        """The worker processes (started now if need be), or None where there are none."""
        with self._pool_lock:
            if self._pool is None and self.processes > 1:
                try:
                    self._pool = ProcessPoolExecutor(
                        self.processes,
                        mp_context=multiprocessing.get_context("spawn"),  # never fork a process that has threads
                        initializer=_start_worker_process,
                        initargs=(self.bucket, math.ceil(self.workers / self.processes)),
                    )
                except (OSError, NotImplementedError) as exc:  # no semaphores (some sandboxes): threads still work
                    log.warning("working on threads only: cannot start worker processes (%s)", exc)
                    self.processes = 1
            return self._pool

    def close(self) -> None:
        """Stop the worker processes, if any started."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
