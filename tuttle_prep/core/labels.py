"""The labels index, the pure part: one row per dataset object, so training jobs read one table instead of listing.

`<ML prefix>labels.csv` has LABEL_COLUMNS, one row per dataset object, sorted by `s3_key`; `labels.parquet`
beside it holds the same table as Parquet. This module builds, serialises and parses it and works out which
objects it lists after a sync; reading and writing the objects is `tuttle_prep.edges.s3_labels`.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import columns as col
from .content import content_prefix
from .plan import INVENTORY_COLUMNS, KeyLayout, Plan
from .text import csv_data_read, csv_data_safe
from .versions import versions_prefix

LABEL_COLUMNS = ["frame", "episode_id", "dataset", "rarity", "metadata", "s3_key"]
METADATA_COLUMNS = ["episode_id", "frame", "metadata"]
LABELS_NAME = "labels.csv"
#: the same index as Parquet (zstd, all strings): typed, a fraction of the CSV's size, fast to read
PARQUET_NAME = "labels.parquet"


def labels_key(ml_prefix: str) -> str:
    """`tuttle_twins/ML/labels.csv`."""
    return f"{ml_prefix}{LABELS_NAME}"


def labels_parquet_key(ml_prefix: str) -> str:
    """`tuttle_twins/ML/labels.parquet`."""
    return f"{ml_prefix}{PARQUET_NAME}"


def is_job_key(key: str, ml_prefix: str) -> bool:
    """True for what the job keeps under the ML prefix beside the datasets, so never an unexpected key: the
    labels index (CSV and Parquet), the dataset versions folder and the content hashes folder (a key in one, or
    the folder itself as a '/' listing names it)."""
    if key in (labels_key(ml_prefix), labels_parquet_key(ml_prefix)):
        return True
    return key.startswith((versions_prefix(ml_prefix), content_prefix(ml_prefix)))


def build_labels(inventory: pd.DataFrame, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """One LABEL_COLUMNS row per dataset object (INVENTORY_COLUMNS in), sorted by s3_key.

    `metadata` (episode_id, frame, metadata) is joined by frame (a frame number names its episode);
    frames it does not cover get "".
    """
    labels = {name: col.strings(inventory[name]) for name in INVENTORY_COLUMNS}
    labels["s3_key"] = labels.pop("key")
    frames = labels["frame"]
    if metadata is not None and len(metadata):
        first = col.first_of_each(col.strings(metadata["frame"]))
        by_frame = col.take(col.strings(metadata["frame"]), first)
        text = col.take(col.strings(metadata["metadata"].fillna("").astype(str)), first)
        found = pc.index_in(frames, value_set=col._one_array(by_frame))
        labels["metadata"] = pc.fill_null(pc.take(col._one_array(text), found), "")
    else:
        labels["metadata"] = pa.chunked_array([col.constant("", len(frames))], type=col.TYPE)
    order = pc.sort_indices(labels["s3_key"])  # stable
    return col.frame({name: pc.take(labels[name], order) for name in LABEL_COLUMNS}, LABEL_COLUMNS)


def labels_csv(labels: pd.DataFrame) -> bytes:
    """The index as UTF-8 CSV bytes (deterministic for equal tables)."""
    return csv_data_safe(labels[LABEL_COLUMNS]).to_csv(index=False, lineterminator="\n").encode("utf-8")


def labels_parquet(labels: pd.DataFrame) -> bytes:
    """The index as zstd Parquet bytes, LABEL_COLUMNS as strings (the same bytes for equal tables)."""
    table = pa.table({c: pa.array(labels[c], type=pa.string(), from_pandas=True) for c in LABEL_COLUMNS})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=["episode_id", "dataset", "rarity", "metadata"])
    return sink.getvalue()


def parse_labels_csv(data: bytes, where: str) -> pd.DataFrame:
    """Read an index written by `labels_csv`; ValueError naming `where` if it is not one."""
    try:
        table = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{where}: not a readable labels CSV ({exc})") from None
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: not a labels index (no column {', '.join(missing)})")
    return csv_data_read(table[LABEL_COLUMNS])


def catalogue_after_apply(plan: Plan, layout: KeyLayout, plain_deletes_done: bool = True) -> pd.DataFrame:
    """The dataset objects after every copy, move and (unless held back) delete of `plan` succeeded."""
    removed = [plan.of("move")["src_key"]]
    if plain_deletes_done:
        removed.append(plan.of("delete")["src_key"])
    added_keys = col.chain(col.strings(plan.of("copy")["dst_key"]), col.strings(plan.of("move")["dst_key"]))
    added, _ = layout.parse_dataset_keys(added_keys)
    current = plan.current.reindex(columns=INVENTORY_COLUMNS)
    removed_keys = col.chain(*(col.strings(r) for r in removed))
    kept = current[~col.is_in(col.strings(current["key"]), removed_keys)]
    both = pd.concat([kept.astype(col.STR), added], ignore_index=True)
    return both[col.first_of_each(col.strings(both["key"]))].reset_index(drop=True)


def needs_previous_metadata(catalogue: pd.DataFrame, sheet_metadata: pd.DataFrame) -> bool:
    """True if some dataset object's frame is not in the sheets read this run."""
    return not col.is_in(col.strings(catalogue["frame"]), col.strings(sheet_metadata["frame"])).all()


def merge_metadata(sheet_metadata: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """The sheets' metadata, plus the previous index's for frames the sheets read this run do not give."""
    sheet_metadata = sheet_metadata.reindex(columns=METADATA_COLUMNS)
    if previous is None or previous.empty:
        return sheet_metadata
    carried = previous.reindex(columns=METADATA_COLUMNS)
    both = pd.concat([sheet_metadata, carried], ignore_index=True)
    return both[col.first_of_each(col.strings(both["frame"]))]
