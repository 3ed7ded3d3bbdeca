"""S3 listing: the dataset folders and the episodes' source folders.

The rarity folders and source folders are listed by obstore, several at once, as Arrow tables: no Python
object per key. Listing never hides an error as "no files": a listing that fails after the retries raises
`InventoryError` (a source folder: an error for its episode), so nothing is planned from a partial view.

Keys obstore cannot name exactly are listed by boto3 instead, one folder at a time: a folder with a key that
has an empty, `.` or `..` segment or a control character (`ML/train/Rare//x.jpg`; obstore refuses the whole
listing), with any key that has a '/' after the folder (a sub-folder, a folder marker `ML/train/Rare/x/`, a
botched upload `ML/train/Rare/<frame>.jpg/` of any size: obstore names a key without its trailing '/', so
`<frame>.jpg/` would pass for the frame), or with an object of 0 bytes. obstore lists each folder with '/' as the
delimiter, so every such key shows as a common prefix. Every key is then reported as S3 names it, and nothing
the job did not write is touched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import BotoCoreError, ClientError

from ..core.frame_table import RARITIES
from ..core.plan import KeyLayout
from ..errors import InventoryError
from . import s3_dataplane
from .aws import describe
from .s3_bucket import S3Bucket, progress, run_bounded
from .s3_dataplane import LIST_SCHEMA, list_folders, unnameable

log = logging.getLogger(__name__)

#: folders listed at once (each is a sequence of pages; S3 pages cannot be fetched in parallel)
FOLDERS_AT_ONCE = 16
#: a source listing's rows; `etag` is S3's (quoted), `last_modified` a UTC timestamp
SOURCE_COLUMNS = ["episode_id", "frame", "etag", "size", "last_modified"]
#: the dataset objects' columns of a listing (`Inventory.objects`): what the refresh compares with the sources
OBJECT_COLUMNS = ("path", "size", "e_tag", "last_modified")


@dataclass
class Inventory:
    """The listed state of the dataset folders."""

    #: every key of the rarity folders (a pandas Series of Arrow-backed strings)
    keys: pd.Series
    #: keys and folders under the ML prefix outside the rarity folders, as S3 names them; reported, never touched
    unexpected: list[str]
    #: size in bytes of each key in `keys` (only when listed with `with_sizes=True`)
    sizes: dict[str, int] = field(default_factory=dict)
    #: the rarity folders (`<ML>/<dataset>/<rarity>/`) the '/'-delimited discovery listings named
    folders: list[str] = field(default_factory=list)
    #: the listed objects (OBJECT_COLUMNS: path, size, e_tag, last_modified), rows in the order of `keys`
    objects: pa.Table | None = None

    def every_key(self) -> pd.Series:
        """`keys` and then `unexpected`, for the key parser (the keys' Arrow buffers are not copied)."""
        keys = pa.chunked_array(pa.array(self.keys.array))
        chunks = [*keys.chunks, pa.array(self.unexpected, keys.type)]
        return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array(chunks, keys.type)))


def list_page_keys(
    store: S3Bucket,
    prefix: str,
    delimiter: str | None = None,
    sizes: dict[str, int] | None = None,
    on_page: Callable[[int], Any] | None = None,
) -> tuple[list[str], list[str]]:
    """Every key (and common prefix, with a delimiter) under `prefix`, through boto3; InventoryError on any
    failure. `sizes`, if given, receives each key's size; `on_page(n)` is called with each page's key count."""
    keys, folders, _ = _boto3_listing(store, prefix, delimiter, sizes, on_page)
    return keys, folders


def _boto3_listing(
    store: S3Bucket,
    prefix: str,
    delimiter: str | None = None,
    sizes: dict[str, int] | None = None,
    on_page: Callable[[int], Any] | None = None,
) -> tuple[list[str], list[str], list[tuple[int, str, Any]]]:
    kwargs: dict[str, Any] = {"Bucket": store.bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    keys: list[str] = []
    folders: list[str] = []
    details: list[tuple[int, str, Any]] = []
    try:
        for page in store.client.get_paginator("list_objects_v2").paginate(**kwargs):
            contents = page.get("Contents", ())
            keys.extend(obj["Key"] for obj in contents)
            details.extend((obj.get("Size", 0), obj.get("ETag", ""), obj.get("LastModified")) for obj in contents)
            folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
            if sizes is not None:
                sizes.update((obj["Key"], obj["Size"]) for obj in contents)
            if on_page is not None:
                on_page(len(contents))
    except (ClientError, BotoCoreError) as exc:
        raise InventoryError(f"listing s3://{store.bucket}/{prefix} failed: {describe(exc)}") from None
    return keys, folders, details


def _boto3_table(store: S3Bucket, folder: str, on_page: Callable[[int], Any] | None = None) -> pa.Table:
    keys, _, details = _boto3_listing(store, folder, on_page=on_page)
    return pa.table(
        {
            "path": pa.array(keys, pa.string()),
            "size": pa.array([size for size, _, _ in details], pa.uint64()),
            "e_tag": pa.array([etag for _, etag, _ in details], pa.string()),
            "last_modified": pa.array([when for _, _, when in details], pa.timestamp("us", tz="UTC")),
        },
        schema=LIST_SCHEMA,
    )


def list_folder_tables(
    store: S3Bucket,
    folders: list[str],
    on_batch: Callable[[int], Any] | None = None,
    columns: tuple[str, ...] = tuple(LIST_SCHEMA.names),
) -> dict[str, pa.Table | InventoryError]:
    """Every object under each folder (`a/b/`, recursively) as a table of `columns` (of LIST_SCHEMA: path, size,
    e_tag), listed by obstore, several folders at once; a folder holding a key obstore cannot name exactly (or a
    key with a '/' after the folder, which obstore would name without a trailing '/') is listed again by boto3.
    A folder whose listing failed maps to an InventoryError naming it."""
    wanted = tuple(dict.fromkeys(("size", *columns)))  # the sizes show folder markers
    listed = list_folders(store.data_plane, folders, FOLDERS_AT_ONCE, on_batch, wanted)
    outcomes: dict[str, pa.Table | InventoryError] = {}
    again: list[str] = []
    for folder in folders:
        outcome = listed[folder]
        if unnameable(outcome) or (isinstance(outcome, pa.Table) and _has_empty_objects(outcome)):
            again.append(folder)
        elif isinstance(outcome, BaseException):
            message = f"listing s3://{store.bucket}/{folder} failed: {s3_dataplane.describe(outcome)}"
            outcomes[folder] = InventoryError(message)
        else:
            outcomes[folder] = outcome.select(list(columns))
    for folder in again:
        log.info("s3://%s/%s holds a key obstore cannot name exactly; listed with boto3", store.bucket, folder)
    for folder, table in run_bounded(lambda f: _boto3_table(store, f), again, store.threads):
        if isinstance(table, InventoryError):
            outcomes[folder] = table
        elif isinstance(table, BaseException):
            raise table
        else:
            outcomes[folder] = table.select(list(columns))
    return outcomes


def _has_empty_objects(table: pa.Table) -> bool:
    return table.num_rows > 0 and pc.min(table["size"]).as_py() == 0


def list_sources(store: S3Bucket, folders: dict[str, str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """List each episode's source folder: SOURCE_COLUMNS rows (episode_id, frame, etag, size, last_modified) of
    its `<frame>.jpg` objects, and an error message by episode whose folder could not be listed."""
    outcomes = list_folder_tables(store, list(dict.fromkeys(folders.values()))) if folders else {}
    parts: list[pa.Table] = []
    errors: dict[str, str] = {}
    for episode_id, folder in folders.items():
        outcome = outcomes[folder]
        if isinstance(outcome, BaseException):
            errors[episode_id] = str(outcome)
            continue
        names = pc.utf8_slice_codeunits(outcome["path"], len(folder))
        frames = pc.and_(pc.ends_with(names, ".jpg"), pc.invert(pc.match_substring(names, "/")))
        frame_names = pc.utf8_slice_codeunits(names.filter(frames), 0, -4)
        parts.append(
            pa.table(
                {
                    "episode_id": pa.repeat(pa.scalar(episode_id, pa.string()), len(frame_names)),
                    "frame": frame_names,
                    "etag": outcome["e_tag"].filter(frames),
                    "size": outcome["size"].filter(frames).cast(pa.int64()),
                    "last_modified": outcome["last_modified"].filter(frames),
                }
            )
        )
    if not parts:
        return empty_sources(), errors
    # strings stay in Arrow (no Python object per frame: every planned episode's folder is listed each night)
    return pa.concat_tables(parts).to_pandas(types_mapper=_arrow_strings), errors


def _arrow_strings(kind: pa.DataType) -> Any:
    return pd.StringDtype("pyarrow") if kind == pa.string() else None


def empty_sources() -> pd.DataFrame:
    """A source listing with no rows (SOURCE_COLUMNS)."""
    kinds = {"size": "int64", "last_modified": "datetime64[us, UTC]"}
    return pd.DataFrame({c: pd.Series(dtype=kinds.get(c, "str")) for c in SOURCE_COLUMNS})


def list_datasets(
    store: S3Bucket, layout: KeyLayout, with_sizes: bool = False, with_objects: bool = False
) -> Inventory:
    """List the ML prefix once: discover folders with '/' listings (boto3), then every rarity folder (obstore,
    in parallel). A progress bar counts the listed objects on a terminal. `with_sizes` also records each key's
    size; `with_objects` keeps each object's size, ETag and time (`Inventory.objects`) for the refresh."""
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
    tables: list[pa.Table] = []
    with progress(None, "list") as bar:
        bar_lock = threading.Lock()

        def count(n: int) -> None:
            with bar_lock:
                bar.update(n)

        # a million ETags are 40 MB: kept only when the caller compares the objects with their sources
        columns = OBJECT_COLUMNS if with_objects else ("path", "size") if with_sizes else ("path",)
        outcomes = list_folder_tables(store, leaves, count, columns) if leaves else {}
        for folder in leaves:
            outcome = outcomes[folder]
            if isinstance(outcome, BaseException):
                raise outcome
            tables.append(outcome)
    listing = pa.concat_tables(tables) if tables else LIST_SCHEMA.empty_table().select(list(columns))
    sizes: dict[str, int] = {}
    if with_sizes:
        sizes = dict(zip(listing["path"].to_pylist(), listing["size"].to_pylist(), strict=True))
    objects = listing if with_objects else None
    return Inventory(
        keys=listing["path"].to_pandas(), unexpected=sorted(unexpected), sizes=sizes, folders=leaves, objects=objects
    )
