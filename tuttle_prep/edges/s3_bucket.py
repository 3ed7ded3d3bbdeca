"""One S3 bucket as the job works on it: the boto3 client, the obstore data plane, the request budget.

The listing (`s3_listing`), applying (`s3_apply`) and small-object (`s3_objects`) edges take an `S3Bucket`;
this module also holds what they share: bounded parallel work on threads and the progress bar.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from typing import Any, TypeVar

from tqdm import tqdm

from . import aws
from .s3_dataplane import DataPlane, open_object_store, retries_from

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

#: boto3 threads for what stays on boto3 (deletes, small objects, folder discovery, listing fallbacks)
BOTO3_THREADS = 16


class S3Bucket:
    """One bucket: a boto3 `client` (thread-safe) and an obstore data plane for listings and copies.

    `workers` is the number of copy requests in flight. The data plane is built on first use from `session`
    (the boto3 session the client came from; a fresh `aws.new_session()` if None) and the client's endpoint
    and region, so both clients use one configuration. `data_plane` replaces it (tests).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        workers: int = 256,
        session: Any = None,
        data_plane: DataPlane | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.workers = max(1, workers)
        self._session = session
        self._data_plane = data_plane
        self._lock = threading.Lock()

    @property
    def threads(self) -> int:
        """Threads for the boto3 side."""
        return min(self.workers, BOTO3_THREADS)

    @property
    def data_plane(self) -> DataPlane:
        """The obstore data plane (built now if need be)."""
        with self._lock:
            if self._data_plane is None:
                session = self._session or aws.new_session()
                store = open_object_store(
                    self.bucket,
                    session,
                    self.client,
                    workers=self.workers,
                    retries=retries_from(os.environ, aws.DEFAULT_RETRIES),
                )
                self._data_plane = DataPlane(store)
            return self._data_plane
