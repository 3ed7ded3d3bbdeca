"""S3 at the edge: reading manifests and CSV sheets, listing the inventory, applying a plan.

Listing never hides an error as "no files": a listing that fails after botocore's retries raises
`InventoryError`, so nothing is planned from a partial view. Applying copies before it deletes, and
deletes the source of a move only after its copy succeeded.
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
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from .aws import describe, make_client
from .errors import InventoryError, SheetError
from .frame_table import RARITIES
from .manifests import select_manifest_keys
from .plan import KeyLayout, Plan

log = logging.getLogger(__name__)

DELETE_BATCH = 1000  # the DeleteObjects limit
#: with several worker processes, plans with at least this many copies and listings of at least this many keys
#: use them: one process's botocore tops out near 1,000 copies/s and 30,000 listed keys/s on the GIL
#: (benchmarks/bench_sync.py), and starting the processes costs about a second
PROCESS_MIN_COPIES = 2000
PROCESS_MIN_KEYS = 100_000
COPY_CHUNK = 500
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


class CopyProcessError(BotoCoreError):
    """A copy that failed in a worker process, after botocore's retries there; carries botocore's description."""

    fmt = "{description}"


_process_store: S3Store | None = None


def _start_worker_process(bucket: str, threads: int) -> None:
    """Initializer of a worker process: its own client (clients don't cross processes); Ctrl-C is the parent's."""
    global _process_store
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _process_store = S3Store(make_client("s3", max_pool=threads), bucket, threads)


def _worker_store() -> S3Store:
    if _process_store is None:
        raise RuntimeError("this runs only in a worker process started by _start_worker_process")
    return _process_store


def _list_in_process(prefixes: list[str]) -> dict[str, list[str] | BaseException]:
    """Run in a worker process: every key under each prefix (listed on threads), or the listing's error."""
    store = _worker_store()
    return dict(run_bounded(lambda p: store.list_page_keys(p)[0], prefixes, min(store.workers, 16)))


def _copy_in_process(jobs: list[tuple[str, str, str]]) -> list[str | None]:
    """Run in a worker process: each (action, src, dst) job's outcome, None or botocore's description of the error."""
    store = _worker_store()
    outcomes: list[str | None] = [None] * len(jobs)
    for index, outcome in run_bounded(lambda i: store._copy(jobs[i][1:]), range(len(jobs)), store.workers):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, (ClientError, BotoCoreError)):
                raise outcome
            outcomes[index] = describe(outcome)
    return outcomes


@dataclass
class Failure:
    """One S3 operation that failed after retries."""

    action: str
    key: str
    error: str


@dataclass
class ApplyResult:
    """What applying a plan did."""

    copied: int = 0
    moved: int = 0
    deleted: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: plain deletes not attempted (a copy failed, or the delete guard refused them)
    deletes_held_back: int = 0
    #: why no delete at all ran (the run lost its lock before the delete phase), else None
    deletes_stopped: str | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)


@dataclass
class Inventory:
    """The listed state of the dataset folders."""

    keys: list[str]
    #: keys and folders under the ML prefix that are not dataset objects; reported, never touched
    unexpected: list[str]
    #: size in bytes of each key in `keys` (only when listed with `with_sizes=True`)
    sizes: dict[str, int] = field(default_factory=dict)


class S3Store:
    """One bucket, one client (shared by all threads: boto3 clients are thread-safe).

    `processes` > 1 spreads the copies of large plans (PROCESS_MIN_COPIES) and large listings (PROCESS_MIN_KEYS)
    over that many worker processes, each with its own client made by `aws.make_client` from the environment,
    and `workers` threads in all. They start on first use and stop when `apply` ends or on `close`.
    """

    def __init__(self, client: Any, bucket: str, workers: int = 32, processes: int = 1) -> None:
        self.client = client
        self.bucket = bucket
        self.workers = max(1, workers)
        self.processes = max(1, min(processes, self.workers))
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _worker_pool(self) -> ProcessPoolExecutor | None:
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

    def _list_in_processes(
        self, pool: ProcessPoolExecutor, prefixes: list[str]
    ) -> Iterator[tuple[str, list[str] | BaseException]]:
        """Every key under each prefix, the prefixes dealt out to the worker processes; yield (prefix, keys or
        error), each process's share together."""
        shares = [prefixes[i :: self.processes] for i in range(self.processes) if prefixes[i :: self.processes]]
        for share, outcome in run_bounded(_list_in_process, shares, self.processes, pool):
            for prefix in share:
                yield prefix, (outcome if isinstance(outcome, BaseException) else outcome[prefix])

    # ---- reading -------------------------------------------------------------------------------

    def fetch(self, bucket: str, key: str) -> bytes:
        """Read one object; SheetError naming the URL if it can't (used for CSV sheet exports)."""
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise SheetError(f"s3://{bucket}/{key}: cannot read ({describe(exc)})") from None

    def list_page_keys(
        self,
        prefix: str,
        delimiter: str | None = None,
        sizes: dict[str, int] | None = None,
        on_page: Callable[[int], Any] | None = None,
    ) -> tuple[list[str], list[str]]:
        """Every key (and common prefix, with a delimiter) under `prefix`; InventoryError on any failure.

        `sizes`, if given, receives each key's size; `on_page(n)` is called with each page's key count.
        """
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        keys: list[str] = []
        folders: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                contents = page.get("Contents", ())
                keys.extend(obj["Key"] for obj in contents)
                folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
                if sizes is not None:
                    sizes.update((obj["Key"], obj["Size"]) for obj in contents)
                if on_page is not None:
                    on_page(len(contents))
        except (ClientError, BotoCoreError) as exc:
            raise InventoryError(f"listing s3://{self.bucket}/{prefix} failed: {describe(exc)}") from None
        return keys, folders

    def read_manifests(
        self, prefix: str, ignored: list[str] | None = None
    ) -> tuple[list[tuple[str, bytes]], list[str]]:
        """Every `*-episodes.json` directly under `prefix` as (s3://bucket/key, bytes), plus an error per unreadable
        file. `ignored`, if given, receives a message (by full key) per look-alike file that is not read."""
        keys, _ = self.list_page_keys(prefix)
        selected, left_out = select_manifest_keys(keys, prefix)
        if ignored is not None:
            ignored.extend(f"s3://{self.bucket}/{key}: ignored, {why}" for key, why in left_out)
        files, errors = [], []
        for key in selected:
            where = f"s3://{self.bucket}/{key}"
            try:
                files.append((where, self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()))
            except (ClientError, BotoCoreError) as exc:
                errors.append(f"{where}: cannot read the manifest ({describe(exc)})")
        return files, errors

    def list_sources(self, folders: dict[str, str], expected_keys: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
        """List each episode's source folder in parallel: (episode_id, frame) rows, and errors by episode.

        With `expected_keys` >= PROCESS_MIN_KEYS the worker processes list, if the store has them.
        """
        rows: list[tuple[str, str]] = []
        errors: dict[str, str] = {}
        listings: Iterator[tuple[str, list[str] | BaseException]]
        if expected_keys >= PROCESS_MIN_KEYS and (pool := self._worker_pool()) is not None:
            episode_of_folder = {folder: episode_id for episode_id, folder in folders.items()}
            listings = ((episode_of_folder[f], o) for f, o in self._list_in_processes(pool, list(episode_of_folder)))
        else:
            listings = run_bounded(lambda e: self.list_page_keys(folders[e])[0], folders, min(self.workers, 16))
        for episode_id, outcome in listings:
            if isinstance(outcome, BaseException):
                errors[episode_id] = str(outcome)
                continue
            start = len(folders[episode_id])
            rows.extend(
                (episode_id, key[start:-4]) for key in outcome if key.endswith(".jpg") and "/" not in key[start:]
            )
        return pd.DataFrame(rows, columns=["episode_id", "frame"]), errors

    def list_datasets(self, layout: KeyLayout, with_sizes: bool = False, expected_keys: int = 0) -> Inventory:
        """List the ML prefix once: discover folders with '/' listings, then each rarity folder in parallel.

        A progress bar counts the listed objects on a terminal. `with_sizes` also records each key's size.
        Without it, and with `expected_keys` >= PROCESS_MIN_KEYS, the worker processes list, if the store has them.
        """
        top_keys, dataset_folders = self.list_page_keys(layout.ml_prefix, "/")
        unexpected = list(top_keys)
        known = {f"{layout.ml_prefix}{d}/" for d in layout.datasets}
        wanted_dataset_folders = [f for f in dataset_folders if f in known]
        unexpected += [f"{f} (folder of no configured dataset; not listed)" for f in dataset_folders if f not in known]
        leaves: list[str] = []
        rarity_names = set(RARITIES)
        for folder, outcome in run_bounded(lambda f: self.list_page_keys(f, "/"), wanted_dataset_folders, 8):
            if isinstance(outcome, BaseException):
                raise outcome
            keys, subfolders = outcome
            unexpected += keys
            for sub in subfolders:
                if sub[len(folder) :].rstrip("/") in rarity_names:
                    leaves.append(sub)
                else:
                    unexpected.append(f"{sub} (not a rarity folder; not listed)")
        keys: list[str] = []
        sizes: dict[str, int] = {}
        with progress(None, "list") as bar:
            bar_lock = threading.Lock()  # pages arrive on several threads

            def count(n: int) -> None:
                with bar_lock:
                    bar.update(n)

            def list_leaf(folder: str) -> tuple[list[str], dict[str, int] | None]:
                leaf_sizes: dict[str, int] | None = {} if with_sizes else None
                return self.list_page_keys(folder, sizes=leaf_sizes, on_page=count)[0], leaf_sizes

            if expected_keys >= PROCESS_MIN_KEYS and not with_sizes and (pool := self._worker_pool()) is not None:
                for _, listed in self._list_in_processes(pool, leaves):
                    if isinstance(listed, BaseException):
                        raise listed
                    keys.extend(listed)
                    count(len(listed))
            else:
                for _, outcome in run_bounded(list_leaf, leaves, min(self.workers, 16)):
                    if isinstance(outcome, BaseException):
                        raise outcome
                    keys.extend(outcome[0])
                    sizes.update(outcome[1] or {})
        return Inventory(keys=keys, unexpected=sorted(unexpected), sizes=sizes)

    # ---- writing -------------------------------------------------------------------------------

    def _copy(self, src_dst: tuple[str, str]) -> None:
        src, dst = src_dst
        self.client.copy_object(Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src})

    def _copy_jobs(self, jobs: list[tuple[str, str, str]]) -> Iterator[tuple[tuple[str, str, str], Any]]:
        """Run each (action, src, dst) copy; yield (job, None or the error), in any order."""
        if len(jobs) >= PROCESS_MIN_COPIES and (pool := self._worker_pool()) is not None:
            chunks = [jobs[i : i + COPY_CHUNK] for i in range(0, len(jobs), COPY_CHUNK)]
            for chunk, outcomes in run_bounded(_copy_in_process, chunks, self.processes, pool):
                if isinstance(outcomes, BaseException):
                    raise outcomes  # a crashed worker process: nothing is deleted, the next run re-plans
                for job, error in zip(chunk, outcomes, strict=True):
                    yield job, (None if error is None else CopyProcessError(description=error))
        else:
            yield from run_bounded(lambda j: self._copy(j[1:]), jobs, self.workers)

    def _delete_batch(self, keys: list[str]) -> list[Failure]:
        response = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
        return [
            Failure("delete", e.get("Key", "?"), f"{e.get('Code', 'error')}: {e.get('Message', '')}".rstrip(": "))
            for e in response.get("Errors", ())
        ]

    def delete_keys(self, keys: list[str], desc: str = "delete") -> tuple[int, list[Failure]]:
        """Delete in batches of 1,000, checking every per-key error; return (deleted, failures)."""
        batches = [keys[i : i + DELETE_BATCH] for i in range(0, len(keys), DELETE_BATCH)]
        failures: list[Failure] = []
        with progress(len(keys), desc) as bar:
            for batch, outcome in run_bounded(self._delete_batch, batches, min(self.workers, 8)):
                if isinstance(outcome, BaseException):
                    failures += [Failure("delete", k, describe(outcome)) for k in batch]
                else:
                    failures += outcome
                bar.update(len(batch))
        return len(keys) - len(failures), failures

    def apply(
        self,
        plan: Plan,
        plain_deletes: bool = True,
        on_progress: Callable[[str], None] | None = None,
        before_deletes: Callable[[], str | None] | None = None,
    ) -> ApplyResult:
        """Copies and moves in parallel, then deletes: move sources whose copy succeeded, and, only if
        every copy succeeded and `plain_deletes` is true, the plain deletes.

        `before_deletes()` is asked right before the delete phase; a message from it means no delete runs
        (the copies made stay: the next run cleans up)."""
        result = ApplyResult()
        copies = plan.of("copy")
        moves = plan.of("move")
        jobs = [("copy", s, d) for s, d in zip(copies["src_key"], copies["dst_key"], strict=True)]
        jobs += [("move", s, d) for s, d in zip(moves["src_key"], moves["dst_key"], strict=True)]
        moved_sources: list[str] = []
        with progress(len(jobs), "copy") as bar:
            try:
                for (action, src, dst), outcome in self._copy_jobs(jobs):
                    bar.update(1)
                    if isinstance(outcome, BaseException):
                        if not isinstance(outcome, (ClientError, BotoCoreError)):
                            raise outcome
                        result.failures.append(Failure(action, dst, f"copy from {src}: {describe(outcome)}"))
                    elif action == "copy":
                        result.copied += 1
                    else:
                        moved_sources.append(src)
            finally:
                self.close()  # copies under way finish; the deletes run here, on threads
        if on_progress:
            on_progress(f"copied {result.copied + len(moved_sources)} of {len(jobs)} objects")
        deletes = plan.of("delete")["src_key"].tolist()
        if before_deletes is not None and (stopped := before_deletes()) is not None:
            result.deletes_stopped = stopped
            result.deletes_held_back = len(deletes)
            return result
        copy_failed = bool(result.failures)
        to_delete = list(moved_sources)
        if plain_deletes and not copy_failed:
            to_delete += deletes
        else:
            result.deletes_held_back = len(deletes)
        if to_delete:
            _, failures = self.delete_keys(to_delete)
            failed = {f.key for f in failures}
            result.moved = sum(1 for k in moved_sources if k not in failed)
            result.deleted = sum(1 for k in to_delete[len(moved_sources) :] if k not in failed)
            result.failures += failures
        return result
