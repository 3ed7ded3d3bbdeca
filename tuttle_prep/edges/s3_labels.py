"""The labels index objects in S3: read them, write them only when their bytes change, update them after a sync.

After a real sync `<ML prefix>labels.csv` and `<ML prefix>labels.parquet` (the same table) are rewritten only
when their bytes change: each object carries the SHA-256 of its content in its user metadata, so an unchanged
run costs a HEAD each and no write.

Which objects the index lists after a sync:
- the apply succeeded (or there was nothing to apply): the listing the plan was made from, minus the
  deleted keys (moved sources; plain deletes unless they were held back), plus the copy and move
  destinations. This is exact without a second listing of the whole ML prefix;
- some operation failed: a failed request may still have taken effect, so the plan cannot say what
  the bucket holds; the ML prefix is listed again and the index describes that listing. If that
  listing fails too, the old index is left as it is and the run reports an error.

Metadata comes from the sheets read in this run; frames whose sheet was not read (other episodes with
`--episode`, a sheet that failed, orphans) keep the metadata the previous index gave them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from ..core.labels import (
    METADATA_COLUMNS,
    build_labels,
    catalogue_after_apply,
    labels_csv,
    labels_key,
    labels_parquet,
    labels_parquet_key,
    merge_metadata,
    needs_previous_metadata,
    parse_labels_csv,
)
from ..core.plan import KeyLayout, Plan
from ..core.run_report import RunReport
from ..errors import InventoryError
from .aws import describe, error_code
from .s3_apply import ApplyResult
from .s3_bucket import S3Bucket
from .s3_listing import list_datasets

log = logging.getLogger(__name__)

#: user-metadata field holding the hex SHA-256 of the index's bytes
SHA256_FIELD = "sha256"
#: user-metadata field: SHA-256 of the data findings of the last data digest sent (see `data_digest`)
FINDINGS_FIELD = "data-findings-sha256"
#: user-metadata fields a rewrite of the index keeps
KEPT_METADATA = (FINDINGS_FIELD,)
CSV_TYPE = "text/csv; charset=utf-8"
PARQUET_TYPE = "application/vnd.apache.parquet"
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


def read_labels_object(store: S3Bucket, key: str) -> bytes | None:
    """The index's bytes, or None if there is none; ClientError/BotoCoreError on any other failure."""
    try:
        return store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            return None
        raise


@dataclass
class PendingWrite:
    """One index object about to be written: its key, bytes, content type and the user metadata to put."""

    key: str
    data: bytes
    content_type: str
    metadata: dict[str, str]


def pending_write(
    store: S3Bucket, key: str, data: bytes, previous: bytes | None = None, content_type: str = CSV_TYPE
) -> PendingWrite | None:
    """The write `data` at `key` needs, or None if the object already holds exactly it (HEAD, SHA-256).

    `previous` is the object's content when the caller already read it (then equal bytes cost no HEAD).
    A rewrite keeps the object's KEPT_METADATA fields (the data digest's record).
    """
    digest = hashlib.sha256(data).hexdigest()
    if previous is not None and previous == data:
        return None
    head = None
    try:
        head = store.client.head_object(Bucket=store.bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) not in _NOT_FOUND:
            raise
    if head is not None and previous is None:
        stored = head.get("Metadata", {}).get(SHA256_FIELD)
        if stored == digest:
            return None
        if stored is None and head.get("ContentLength") == len(data):
            # written by something else: compare the bytes themselves
            existing = read_labels_object(store, key)
            if existing == data:
                return None
    kept = {k: v for k, v in (head or {}).get("Metadata", {}).items() if k in KEPT_METADATA}
    return PendingWrite(key, data, content_type, {**kept, SHA256_FIELD: digest})


def put(store: S3Bucket, write: PendingWrite) -> None:
    """PUT one index object; ClientError/BotoCoreError if it fails."""
    store.client.put_object(
        Bucket=store.bucket, Key=write.key, Body=write.data, ContentType=write.content_type, Metadata=write.metadata
    )


def write_labels_if_changed(
    store: S3Bucket, key: str, data: bytes, previous: bytes | None = None, content_type: str = CSV_TYPE
) -> bool:
    """Put `data` at `key` unless the object already holds exactly it; return True if it was written."""
    write = pending_write(store, key, data, previous, content_type)
    if write is not None:
        put(store, write)
    return write is not None


def _saved(store: S3Bucket, key: str) -> PendingWrite | None:
    """The object at `key` as a write that puts it back (bytes, type, metadata), None if there is none."""
    try:
        answer = store.client.get_object(Bucket=store.bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            return None
        raise
    data = answer["Body"].read()
    return PendingWrite(key, data, answer.get("ContentType") or PARQUET_TYPE, dict(answer.get("Metadata", {})))


def _landed(store: S3Bucket, write: PendingWrite) -> bool | None:
    """After a failed PUT (a failed request may still have taken effect): does the object hold the new bytes
    (its SHA-256 field)? None if that cannot be told either."""
    try:
        head = store.client.head_object(Bucket=store.bucket, Key=write.key)
    except ClientError as exc:
        return False if error_code(exc) in _NOT_FOUND else None
    except BotoCoreError:
        return None
    return head.get("Metadata", {}).get(SHA256_FIELD) == write.metadata[SHA256_FIELD]


def _put_checked(store: S3Bucket, write: PendingWrite) -> str | None:
    """PUT `write`; None if the object holds it afterwards, else why not (a failed PUT that took effect is
    found by a HEAD and counts as written)."""
    try:
        put(store, write)
        return None
    except (ClientError, BotoCoreError) as exc:
        landed = _landed(store, write)
        if landed:
            return None
        unknown = "" if landed is False else "; whether it took effect cannot be told (the HEAD failed too)"
        return f"writing s3://{store.bucket}/{write.key} failed ({describe(exc)}){unknown}"


def write_both_or_neither(
    store: S3Bucket,
    csv_key: str,
    parquet_key: str,
    csv_write: PendingWrite | None,
    parquet_write: PendingWrite | None,
) -> tuple[bool, bool, str | None]:
    """Write the index's two objects so that both change or neither does; (csv written, parquet written, the
    error: one sentence saying exactly what was and was not updated, None if all went well).

    Parquet goes first: if its PUT fails, nothing changed. When the CSV must change too, the Parquet object as
    it was is read first; if the CSV's PUT then fails, that object is put back (or, if there was none, the one
    just written is deleted), so both are as they were. Only if putting it back fails too do the two differ,
    and the error says so. ClientError/BotoCoreError of the reads before any write propagate (nothing changed).
    """
    csv_url, parquet_url = f"s3://{store.bucket}/{csv_key}", f"s3://{store.bucket}/{parquet_key}"
    saved = _saved(store, parquet_key) if parquet_write is not None and csv_write is not None else None
    if parquet_write is not None:
        failed = _put_checked(store, parquet_write)
        if failed is not None:
            return False, False, f"{failed}; neither {parquet_url} nor {csv_url} was updated: both are as they were"
    if csv_write is None:
        return False, parquet_write is not None, None
    failed = _put_checked(store, csv_write)
    if failed is None:
        return True, parquet_write is not None, None
    if parquet_write is None:
        return False, False, f"{failed}; neither was updated ({parquet_url} already held this run's index)"
    try:
        if saved is not None:
            put(store, saved)
            undone = f"{parquet_url}, written first, was put back as it was"
        else:
            store.client.delete_object(Bucket=store.bucket, Key=parquet_key)
            undone = f"{parquet_url}, written first where there was none, was deleted again"
    except (ClientError, BotoCoreError) as undo:
        return (
            False,
            True,
            f"{failed} after {parquet_url} was written, and putting that back failed too ({describe(undo)}): "
            f"{parquet_url} is updated, {csv_url} is not; they differ until the next run rewrites them",
        )
    return False, False, f"{failed}; {undone}: neither is updated, both are as they were"


def update_labels_index(
    store: S3Bucket, layout: KeyLayout, plan: Plan, report: RunReport, result: ApplyResult | None = None
) -> pd.DataFrame | None:
    """After a real sync: work out the catalogue, write `<ML prefix>labels.csv` and `labels.parquet` where they
    changed; return the index (None if it could not be worked out).

    `result` is None when there was nothing to apply. Problems become errors on `report` (exit 1);
    the previous index then stays as it was.
    """
    key = labels_key(layout.ml_prefix)
    where = f"s3://{store.bucket}/{key}"
    if result is not None and result.failed:
        try:
            inventory = list_datasets(store, layout)
        except InventoryError as exc:
            report.error(f"labels index {where} not updated: {exc}")
            return None
        catalogue, _ = layout.parse_dataset_keys(inventory.keys)
    else:
        catalogue = catalogue_after_apply(plan, layout, result is None or result.deletes_held_back == 0)
    sheet_metadata = plan.metadata.reindex(columns=METADATA_COLUMNS)
    previous_bytes: bytes | None = None
    previous: pd.DataFrame | None = None
    try:
        if needs_previous_metadata(catalogue, sheet_metadata):
            previous_bytes = read_labels_object(store, key)
            if previous_bytes is not None:
                try:
                    previous = parse_labels_csv(previous_bytes, where)
                except ValueError as exc:
                    report.warn(f"{exc}; frames whose sheet was not read this run lose their metadata")
        labels = build_labels(catalogue, merge_metadata(sheet_metadata, previous))
        parquet_key = labels_parquet_key(layout.ml_prefix)
        csv_write = pending_write(store, key, labels_csv(labels), previous_bytes)
        parquet_bytes = labels_parquet(labels, layout.datasets)
        parquet_write = pending_write(store, parquet_key, parquet_bytes, content_type=PARQUET_TYPE)
        written, parquet_written, problem = write_both_or_neither(store, key, parquet_key, csv_write, parquet_write)
    except (ClientError, BotoCoreError) as exc:  # before any write
        report.error(
            f"labels index not updated: {describe(exc)}; {where} and "
            f"s3://{store.bucket}/{labels_parquet_key(layout.ml_prefix)} are as they were"
        )
        return None
    if problem is not None:
        report.error(f"labels index: {problem}")
        return None
    log.info(
        "labels index %s: %d rows, %s; %s %s",
        where,
        len(labels),
        "written" if written else "unchanged",
        parquet_key.rsplit("/", 1)[-1],
        "written" if parquet_written else "unchanged",
    )
    return labels
