"""S3 listing: the dataset folders and the episodes' source folders.

Listing never hides an error as "no files": a listing that fails after botocore's retries raises
`InventoryError`, so nothing is planned from a partial view.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from ..core.frame_table import RARITIES
from ..core.plan import KeyLayout
from ..errors import InventoryError
from .aws import describe
from .s3_bucket import S3Bucket, progress, run_bounded, worker_bucket

#: with several worker processes, listings of at least this many keys use them: one process's botocore tops out
#: near 30,000 listed keys/s on the GIL (benchmarks/bench_sync.py), and starting the processes costs about a second
PROCESS_MIN_KEYS = 100_000
#: a listing: its keys, and each key's (ETag, size)
Listed = tuple[list[str], dict[str, tuple[str, int]]]


@dataclass
class Inventory:
    """The listed state of the dataset folders."""

    keys: list[str]
    #: keys and folders under the ML prefix that are not dataset objects; reported, never touched
    unexpected: list[str]
    #: size in bytes of each key in `keys` (only when listed with `with_sizes=True`)
    sizes: dict[str, int] = field(default_factory=dict)


def list_page_keys(
    store: S3Bucket,
    prefix: str,
    delimiter: str | None = None,
    sizes: dict[str, int] | None = None,
    on_page: Callable[[int], Any] | None = None,
    details: dict[str, tuple[str, int]] | None = None,
) -> tuple[list[str], list[str]]:
    """Every key (and common prefix, with a delimiter) under `prefix`; InventoryError on any failure.

    `sizes`, if given, receives each key's size, `details` each key's (ETag, size); `on_page(n)` is called
    with each page's key count.
    """
    kwargs: dict[str, Any] = {"Bucket": store.bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    keys: list[str] = []
    folders: list[str] = []
    try:
        for page in store.client.get_paginator("list_objects_v2").paginate(**kwargs):
            contents = page.get("Contents", ())
            keys.extend(obj["Key"] for obj in contents)
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
            if sizes is not None:
                sizes.update((obj["Key"], obj["Size"]) for obj in contents)
            if details is not None:
                details.update((obj["Key"], (obj.get("ETag", ""), obj["Size"])) for obj in contents)
            if on_page is not None:
                on_page(len(contents))
    except (ClientError, BotoCoreError) as exc:
        raise InventoryError(f"listing s3://{store.bucket}/{prefix} failed: {describe(exc)}") from None
    return keys, folders


def list_objects(store: S3Bucket, prefix: str) -> Listed:
    """Every key under `prefix` with its (ETag, size); InventoryError on any failure."""
    details: dict[str, tuple[str, int]] = {}
    keys, _ = list_page_keys(store, prefix, details=details)
    return keys, details


def _list_in_process(prefixes: list[str]) -> dict[str, Listed | BaseException]:
    """Run in a worker process: every key under each prefix with its (ETag, size), listed on threads, or the
    listing's error."""
    store = worker_bucket()
    return dict(run_bounded(lambda p: list_objects(store, p), prefixes, min(store.workers, 16)))


def _list_in_processes(
    store: S3Bucket, pool: ProcessPoolExecutor, prefixes: list[str]
) -> Iterator[tuple[str, Listed | BaseException]]:
    """Every key under each prefix, the prefixes dealt out to the worker processes; yield (prefix, keys or
    error), each process's share together."""
    shares = [prefixes[i :: store.processes] for i in range(store.processes) if prefixes[i :: store.processes]]
    for share, outcome in run_bounded(_list_in_process, shares, store.processes, pool):
        for prefix in share:
            yield prefix, (outcome if isinstance(outcome, BaseException) else outcome[prefix])


def list_sources(
    store: S3Bucket, folders: dict[str, str], expected_keys: int = 0
) -> tuple[pd.DataFrame, dict[str, str]]:
    """List each episode's source folder in parallel: (episode_id, frame, etag, size) rows, errors by episode.

    With `expected_keys` >= PROCESS_MIN_KEYS the worker processes list, if the bucket has them.
    """
    rows: list[tuple[str, str, str, int]] = []
    errors: dict[str, str] = {}
    listings: Iterator[tuple[str, Listed | BaseException]]
    if expected_keys >= PROCESS_MIN_KEYS and (pool := store.worker_pool()) is not None:
        episode_of_folder = {folder: episode_id for episode_id, folder in folders.items()}
        listings = ((episode_of_folder[f], o) for f, o in _list_in_processes(store, pool, list(episode_of_folder)))
    else:
        listings = run_bounded(lambda e: list_objects(store, folders[e]), folders, min(store.workers, 16))
    for episode_id, outcome in listings:
        if isinstance(outcome, BaseException):
            errors[episode_id] = str(outcome)
            continue
        start = len(folders[episode_id])
        keys, details = outcome
        rows.extend(
            (episode_id, key[start:-4], *details[key])
            for key in keys
            if key.endswith(".jpg") and "/" not in key[start:]
        )
    return pd.DataFrame(rows, columns=["episode_id", "frame", "etag", "size"]), errors


def list_datasets(store: S3Bucket, layout: KeyLayout, with_sizes: bool = False, expected_keys: int = 0) -> Inventory:
    """List the ML prefix once: discover folders with '/' listings, then each rarity folder in parallel.

    A progress bar counts the listed objects on a terminal. `with_sizes` also records each key's size.
    Without it, and with `expected_keys` >= PROCESS_MIN_KEYS, the worker processes list, if the bucket has them.
    """
    top_keys, dataset_folders = list_page_keys(store, layout.ml_prefix, "/")
    unexpected = list(top_keys)
    known = {f"{layout.ml_prefix}{d}/" for d in layout.datasets}
    wanted_dataset_folders = [f for f in dataset_folders if f in known]
    unexpected += [f"{f} (folder of no configured dataset; not listed)" for f in dataset_folders if f not in known]
    leaves: list[str] = []
    rarity_names = set(RARITIES)
    for folder, outcome in run_bounded(lambda f: list_page_keys(store, f, "/"), wanted_dataset_folders, 8):
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
            return list_page_keys(store, folder, sizes=leaf_sizes, on_page=count)[0], leaf_sizes

        if expected_keys >= PROCESS_MIN_KEYS and not with_sizes and (pool := store.worker_pool()) is not None:
            for _, listed in _list_in_processes(store, pool, leaves):
                if isinstance(listed, BaseException):
                    raise listed
                keys.extend(listed[0])
                count(len(listed[0]))
        else:
            for _, outcome in run_bounded(list_leaf, leaves, min(store.workers, 16)):
                if isinstance(outcome, BaseException):
                    raise outcome
                keys.extend(outcome[0])
                sizes.update(outcome[1] or {})
    return Inventory(keys=keys, unexpected=sorted(unexpected), sizes=sizes)
