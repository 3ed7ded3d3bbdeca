"""The content hash store in S3: source frames fetched by obstore (many in flight), hashed, kept per episode.

`<ML prefix>_content/<episode>.parquet` holds, for each listed source frame of the episode, its key, the ETag
of the bytes that were hashed and their dHash (`core.content`). A (key, ETag) hashed once is never fetched
again; a re-rendered source (new ETag) is fetched and hashed once. An object that is no picture gets a row
with its problem and no hash: a data finding, never a job failure, and not fetched again until it changes.
Each episode's object is written only when its rows changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import obstore
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from ..core.content import (
    UndecodableImage,
    content_key,
    content_prefix,
    dhash_bytes,
    empty_hashes,
    episode_of_content_key,
    hashes_frame,
    hashes_from_parquet,
    hashes_to_parquet,
    to_hash,
)
from ..core.versions import normalize_etag
from ..errors import InventoryError
from .aws import describe
from .s3_bucket import S3Bucket, run_bounded
from .s3_dataplane import REQUEST_ERRORS, DataPlane, bounded, run_async
from .s3_dataplane import describe as describe_obstore
from .s3_listing import list_page_keys

log = logging.getLogger(__name__)

#: GET requests in flight while hashing (each a ~30 KB thumbnail: latency-bound, not bandwidth-bound)
FETCHES_IN_FLIGHT = 128
#: threads decoding (Pillow releases the GIL while it decodes)
DECODE_THREADS = max(2, min(4, os.cpu_count() or 2))


@dataclass
class Fetched:
    """What hashing one object gave: its hash or why none, and the ETag of the bytes hashed."""

    hash: int | None
    etag: str | None
    problem: str | None = None
    #: the GET itself failed (a 404, a 5xx after retries): not stored, tried again next run
    failed: str | None = None


async def _get(plane: DataPlane, key: str) -> tuple[bytes, str | None]:
    response = await obstore.get_async(plane.store, key)
    data = await response.bytes_async()
    return bytes(data), normalize_etag(response.meta.get("e_tag"))


def fetch_hashes(
    plane: DataPlane,
    keys: list[str],
    in_flight: int = FETCHES_IN_FLIGHT,
    get: Callable[[DataPlane, str], Any] | None = None,
) -> list[Fetched]:
    """GET each key (`in_flight` at once) and dHash its bytes on a few threads; one `Fetched` per key."""
    getter = get or _get
    results: list[Fetched | None] = [None] * len(keys)

    async def work(stop: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="dhash") as pool:

            async def one(index: int) -> None:
                try:
                    data, etag = await getter(plane, keys[index])
                except REQUEST_ERRORS as exc:
                    results[index] = Fetched(None, None, failed=describe_obstore(exc))
                    return
                try:
                    value = await loop.run_in_executor(pool, dhash_bytes, data)
                except UndecodableImage as exc:
                    results[index] = Fetched(None, etag, problem=f"not a picture Pillow can decode ({exc})")
                    return
                results[index] = Fetched(value, etag)

            await bounded(range(len(keys)), one, in_flight, stop)

    if keys:
        run_async(work)
    return [r if r is not None else Fetched(None, None, failed="not fetched") for r in results]


def stored_episodes(store: S3Bucket, ml_prefix: str) -> set[str]:
    """The episodes with a hash store object (one listing); InventoryError if it cannot be listed."""
    keys, _ = list_page_keys(store, content_prefix(ml_prefix))
    return {e for e in (episode_of_content_key(k, ml_prefix) for k in keys) if e is not None}


def read_hashes(store: S3Bucket, ml_prefix: str, episode_ids: list[str]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Each episode's stored hash table (absent ones are left out) and a warning per object that is unreadable."""
    warnings: list[str] = []
    tables: dict[str, pd.DataFrame] = {}

    def read(episode_id: str) -> pd.DataFrame | None:
        key = content_key(ml_prefix, episode_id)
        try:
            data = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return hashes_from_parquet(data, f"s3://{store.bucket}/{key}")

    for episode_id, outcome in run_bounded(read, episode_ids, store.threads):
        if isinstance(outcome, ValueError):
            warnings.append(f"{outcome}; its frames are hashed again")
        elif isinstance(outcome, (ClientError, BotoCoreError)):
            key = content_key(ml_prefix, episode_id)
            warnings.append(f"s3://{store.bucket}/{key}: not read ({describe(outcome)})")
        elif isinstance(outcome, BaseException):
            raise outcome
        elif outcome is not None:
            tables[episode_id] = outcome
    return tables, warnings


def read_all_hashes(store: S3Bucket, ml_prefix: str) -> tuple[pd.DataFrame, list[str]]:
    """Every stored hash row of every episode (with an episode_id column) and the warnings reading them."""
    try:
        episodes = sorted(stored_episodes(store, ml_prefix))
    except InventoryError as exc:
        return empty_hashes().assign(episode_id=pd.Series(dtype=object)), [f"{exc}; no content hashes read"]
    tables, warnings = read_hashes(store, ml_prefix, episodes)
    parts = [t.assign(episode_id=e) for e, t in sorted(tables.items())]
    if not parts:
        return empty_hashes().assign(episode_id=pd.Series(dtype=object)), warnings
    return pd.concat(parts, ignore_index=True), warnings


@dataclass
class HashRun:
    """What updating the hash store did."""

    #: every hash row of the episodes updated (episode_id added), as stored after the run
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    fetched: int = 0
    reused: int = 0
    written: list[str] = field(default_factory=list)
    #: (episode_id, key, problem) of objects that are no picture (data findings)
    undecodable: list[tuple[str, str, str]] = field(default_factory=list)
    #: (episode_id, key, error) of GETs that failed (tried again next run)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def update_hashes(
    store: S3Bucket,
    ml_prefix: str,
    listed: pd.DataFrame,
    *,
    write: bool = True,
    in_flight: int = FETCHES_IN_FLIGHT,
) -> HashRun:
    """Bring the hash store in line with `listed` (episode_id, frame, source_key, source_etag: a source listing).

    Each listed episode's stored table is read; rows whose (key, ETag) it holds are kept, the others fetched and
    hashed; the table (the listed frames only) is written back when it changed, unless `write` is False.
    """
    run = HashRun()
    if listed.empty:
        return run
    listed = listed.assign(source_etag=listed["source_etag"].map(normalize_etag))
    episodes = sorted(set(listed["episode_id"]))
    stored, run.warnings = read_hashes(store, ml_prefix, episodes)
    parts: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    fetch_rows: list[pd.DataFrame] = []
    for episode_id in episodes:
        rows = listed[listed["episode_id"] == episode_id]
        kept, missing = to_hash(rows, stored.get(episode_id, empty_hashes()))
        parts[episode_id] = (kept, missing)
        fetch_rows.append(missing.assign(episode_id=episode_id))
        run.reused += len(kept)
    wanted = pd.concat(fetch_rows, ignore_index=True) if fetch_rows else pd.DataFrame()
    keys = wanted["source_key"].tolist() if len(wanted) else []
    if keys:
        log.info("content hashes: fetching %d source frames (%d already hashed)", len(keys), run.reused)
    results = fetch_hashes(store.data_plane, keys, in_flight)
    run.fetched = sum(1 for r in results if r.failed is None)
    by_key = dict(zip(keys, results, strict=True))
    for episode_id in episodes:
        kept, missing = parts[episode_id]
        frames, skeys, etags, hashes, problems = [], [], [], [], []
        columns = (missing["frame"], missing["source_key"], missing["source_etag"])
        for frame, key, listed_etag in zip(*columns, strict=True):
            got = by_key[key]
            if got.failed is not None:
                run.failed.append((episode_id, key, got.failed))
                continue
            if got.problem is not None:
                run.undecodable.append((episode_id, key, got.problem))
            frames.append(frame)
            skeys.append(key)
            etags.append(got.etag or listed_etag)  # the bytes hashed: their ETag, as the GET answered it
            hashes.append(got.hash)
            problems.append(got.problem)
        new = hashes_frame(frames, skeys, etags, hashes, problems)
        table = pd.concat([kept[new.columns], new], ignore_index=True) if len(kept) else new
        table = table.sort_values("frame", kind="stable").reset_index(drop=True)
        for row in kept[kept["problem"].notna()].itertuples(index=False):
            run.undecodable.append((episode_id, row.source_key, row.problem))
        before = stored.get(episode_id)
        changed = before is None or not _same(before, table)
        if changed and write:
            key = content_key(ml_prefix, episode_id)
            try:
                store.client.put_object(Bucket=store.bucket, Key=key, Body=hashes_to_parquet(table))
                run.written.append(episode_id)
            except (ClientError, BotoCoreError) as exc:
                run.warnings.append(f"s3://{store.bucket}/{key}: not written ({describe(exc)}); hashed again next run")
        run.tables[episode_id] = table.assign(episode_id=episode_id)
    return run


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    columns = ["frame", "source_key", "source_etag", "hash", "problem"]
    left = a[columns].sort_values("frame", kind="stable").reset_index(drop=True)
    right = b[columns].sort_values("frame", kind="stable").reset_index(drop=True)
    return left.astype(object).fillna("").equals(right.astype(object).fillna(""))
