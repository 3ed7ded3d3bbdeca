"""The labels index: one row per dataset object, so training jobs read one table instead of listing.

`<ML prefix>labels.csv` has LABEL_COLUMNS, one row per dataset object, sorted by `s3_key`. After a real
sync it is rewritten only when its bytes change: the object carries the SHA-256 of its content in its
user metadata, so an unchanged run costs one HEAD and no write.

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
import io
import logging
from typing import TYPE_CHECKING

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from .aws import describe, error_code
from .errors import InventoryError
from .plan import INVENTORY_COLUMNS, KeyLayout, Plan

if TYPE_CHECKING:
    from .report import RunReport
    from .s3_store import ApplyResult, S3Store

log = logging.getLogger(__name__)

LABEL_COLUMNS = ["frame", "episode_id", "dataset", "rarity", "metadata", "s3_key"]
METADATA_COLUMNS = ["episode_id", "frame", "metadata"]
LABELS_NAME = "labels.csv"
#: user-metadata field holding the hex SHA-256 of the index's bytes
SHA256_FIELD = "sha256"
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


def labels_key(ml_prefix: str) -> str:
    """`tuttle_twins/ML/labels.csv`."""
    return f"{ml_prefix}{LABELS_NAME}"


# ---- pure ----------------------------------------------------------------------------------------


def build_labels(inventory: pd.DataFrame, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """One LABEL_COLUMNS row per dataset object (INVENTORY_COLUMNS in), sorted by s3_key.

    `metadata` (episode_id, frame, metadata) is joined by frame (a frame number names its episode);
    frames it does not cover get "".
    """
    labels = inventory.reindex(columns=INVENTORY_COLUMNS).rename(columns={"key": "s3_key"})
    if metadata is not None and len(metadata):
        by_frame = metadata.drop_duplicates("frame").set_index("frame")["metadata"]
        labels["metadata"] = labels["frame"].map(by_frame).fillna("").astype(str)
    else:
        labels["metadata"] = ""
    return labels[LABEL_COLUMNS].astype(str).sort_values("s3_key", kind="stable").reset_index(drop=True)


def labels_csv(labels: pd.DataFrame) -> bytes:
    """The index as UTF-8 CSV bytes (deterministic for equal tables)."""
    return labels[LABEL_COLUMNS].to_csv(index=False, lineterminator="\n").encode("utf-8")


def parse_labels_csv(data: bytes, where: str) -> pd.DataFrame:
    """Read an index written by `labels_csv`; ValueError naming `where` if it is not one."""
    try:
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{where}: not a readable labels CSV ({exc})") from None
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: not a labels index (no column {', '.join(missing)})")
    return table[LABEL_COLUMNS]


def catalogue_after_apply(plan: Plan, layout: KeyLayout, plain_deletes_done: bool = True) -> pd.DataFrame:
    """The dataset objects after every copy, move and (unless held back) delete of `plan` succeeded."""
    removed = set(plan.of("move")["src_key"])
    if plain_deletes_done:
        removed |= set(plan.of("delete")["src_key"])
    added_keys = pd.concat([plan.of("copy")["dst_key"], plan.of("move")["dst_key"]]).tolist()
    added, _ = layout.parse_dataset_keys(added_keys)
    current = plan.current.reindex(columns=INVENTORY_COLUMNS)
    kept = current[~current["key"].isin(removed)]
    return pd.concat([kept, added], ignore_index=True).drop_duplicates("key").reset_index(drop=True)


def needs_previous_metadata(catalogue: pd.DataFrame, sheet_metadata: pd.DataFrame) -> bool:
    """True if some dataset object's frame is not in the sheets read this run."""
    return not catalogue["frame"].isin(set(sheet_metadata["frame"])).all()


def merge_metadata(sheet_metadata: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The sheets' metadata, plus the previous index's for frames the sheets read this run do not give."""
    sheet_metadata = sheet_metadata.reindex(columns=METADATA_COLUMNS)
    if previous is None or previous.empty:
        return sheet_metadata
    carried = previous.reindex(columns=METADATA_COLUMNS)
    return pd.concat([sheet_metadata, carried], ignore_index=True).drop_duplicates("frame")


# ---- S3 ------------------------------------------------------------------------------------------


def read_labels_object(store: S3Store, key: str) -> bytes | None:
    """The index's bytes, or None if there is none; ClientError/BotoCoreError on any other failure."""
    try:
        return store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            return None
        raise


def write_labels_if_changed(store: S3Store, key: str, data: bytes, previous: bytes | None = None) -> bool:
    """Put `data` at `key` unless the object already holds exactly it; return True if it was written.

    `previous` is the object's content when the caller already read it (skips the HEAD).
    """
    digest = hashlib.sha256(data).hexdigest()
    if previous is not None:
        if previous == data:
            return False
    else:
        try:
            head = store.client.head_object(Bucket=store.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise
        else:
            stored = head.get("Metadata", {}).get(SHA256_FIELD)
            if stored == digest:
                return False
            if stored is None and head.get("ContentLength") == len(data):
                # written by something else: compare the bytes themselves
                existing = read_labels_object(store, key)
                if existing == data:
                    return False
    store.client.put_object(
        Bucket=store.bucket,
        Key=key,
        Body=data,
        ContentType="text/csv; charset=utf-8",
        Metadata={SHA256_FIELD: digest},
    )
    return True


def update_labels_index(
    store: S3Store, layout: KeyLayout, plan: Plan, report: RunReport, result: ApplyResult | None = None
) -> None:
    """After a real sync: work out the catalogue, write `<ML prefix>labels.csv` if it changed.

    `result` is None when there was nothing to apply. Problems become errors on `report` (exit 1);
    the previous index then stays as it was.
    """
    key = labels_key(layout.ml_prefix)
    where = f"s3://{store.bucket}/{key}"
    if result is not None and result.failed:
        try:
            inventory = store.list_datasets(layout)
        except InventoryError as exc:
            report.error(f"labels index {where} not updated: {exc}")
            return
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
    except (ClientError, BotoCoreError) as exc:
        report.error(f"labels index {where} not updated: {describe(exc)}")
        return
    log.info("labels index %s: %d rows, %s", where, len(labels), "written" if written else "unchanged")
