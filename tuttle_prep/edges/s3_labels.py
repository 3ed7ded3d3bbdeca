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


def write_labels_if_changed(
    store: S3Bucket, key: str, data: bytes, previous: bytes | None = None, content_type: str = CSV_TYPE
) -> bool:
    """Put `data` at `key` unless the object already holds exactly it; return True if it was written.

    `previous` is the object's content when the caller already read it (then equal bytes cost no HEAD).
    A rewrite keeps the object's KEPT_METADATA fields (the data digest's record).
    """
    digest = hashlib.sha256(data).hexdigest()
    if previous is not None and previous == data:
        return False
    head = None
    try:
        head = store.client.head_object(Bucket=store.bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) not in _NOT_FOUND:
            raise
    if head is not None and previous is None:
        stored = head.get("Metadata", {}).get(SHA256_FIELD)
        if stored == digest:
            return False
        if stored is None and head.get("ContentLength") == len(data):
            # written by something else: compare the bytes themselves
            existing = read_labels_object(store, key)
            if existing == data:
                return False
    kept = {k: v for k, v in (head or {}).get("Metadata", {}).items() if k in KEPT_METADATA}
    store.client.put_object(
        Bucket=store.bucket,
        Key=key,
        Body=data,
        ContentType=content_type,
        Metadata={**kept, SHA256_FIELD: digest},
    )
    return True


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
        data = labels_csv(labels)
        written = write_labels_if_changed(store, key, data, previous_bytes)
        parquet_key = labels_parquet_key(layout.ml_prefix)
        parquet_written = write_labels_if_changed(
            store, parquet_key, labels_parquet(labels, layout.datasets), content_type=PARQUET_TYPE
        )
    except (ClientError, BotoCoreError) as exc:
        report.error(f"labels index {where} not updated: {describe(exc)}")
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
