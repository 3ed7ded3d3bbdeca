"""The labels index, the pure part: one row per dataset object, so training jobs read one table instead of listing.

`<ML prefix>labels.csv` has LABEL_COLUMNS, one row per dataset object, sorted by `s3_key`; `labels.parquet`
beside it holds the same table as Parquet. This module builds, serialises and parses it and works out which
objects it lists after a sync; reading and writing the objects is `tuttle_prep.edges.s3_labels`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import columns as col
from .content import content_prefix
from .label_schema import CLASSES, episode_column, fixed_dictionary, rarity_column, season_column, seconds_column
from .plan import INVENTORY_COLUMNS, KeyLayout, Plan
from .text import csv_data_read, csv_data_safe
from .versions import versions_prefix

LABEL_COLUMNS = ["frame", "episode_id", "dataset", "rarity", "metadata", "s3_key"]
METADATA_COLUMNS = ["episode_id", "frame", "metadata"]
LABELS_NAME = "labels.csv"
#: the same index as Parquet (zstd, the label schema of `label_schema`): typed, a fraction of the CSV's size
PARQUET_NAME = "labels.parquet"
#: labels.parquet's columns (in a pull's DEST, `file_name` first: the file's path relative to DEST)
PARQUET_COLUMNS = ["frame", "episode_id", "season", "seconds", "dataset", "rarity", "metadata", "s3_key"]
FILE_NAME = "file_name"
#: labels.parquet's schema metadata key: JSON with the class order and, in a pull's DEST, the version pulled
LABELS_INFO_KEY = b"tuttle_prep.labels"


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


def labels_table(
    labels: pd.DataFrame,
    datasets: Sequence[str] = (),
    file_names: bool = False,
    info: Mapping[str, object] | None = None,
) -> pa.Table:
    """The index in the label schema: PARQUET_COLUMNS (with `file_name`, `<dataset>/<rarity>/<frame>.jpg`, first
    when `file_names`), `dataset` in the order `datasets` (TUTTLE_SPLIT), `rarity` in the fixed class order.

    The schema metadata LABELS_INFO_KEY holds `{"classes": [...], **info}` (e.g. the version a pull took)."""

    def strings(name: str) -> pa.Array:
        return pa.array(labels[name], type=pa.string(), from_pandas=True)

    frames, datasets_, rarities = strings("frame"), strings("dataset"), strings("rarity")
    columns: dict[str, pa.Array] = {}
    if file_names:
        columns[FILE_NAME] = pc.binary_join_element_wise(datasets_, rarities, frames, "/")
        columns[FILE_NAME] = pc.binary_join_element_wise(columns[FILE_NAME], ".jpg", "")
    episodes = strings("episode_id")
    columns |= {
        "frame": frames,
        "episode_id": episode_column(episodes),
        "season": season_column(episodes),
        "seconds": seconds_column(frames),
        "dataset": fixed_dictionary(datasets_, tuple(datasets)),
        "rarity": rarity_column(rarities),
        "metadata": strings("metadata"),
        "s3_key": strings("s3_key"),
    }
    meta = {"classes": list(CLASSES), **(info or {})}
    table = pa.table(columns)
    return table.replace_schema_metadata({LABELS_INFO_KEY: json.dumps(meta, sort_keys=True).encode()})


def labels_parquet(
    labels: pd.DataFrame,
    datasets: Sequence[str] = (),
    file_names: bool = False,
    info: Mapping[str, object] | None = None,
) -> bytes:
    """The index as zstd Parquet bytes in the label schema (`labels_table`; the same bytes for equal tables)."""
    return table_parquet(labels_table(labels, datasets, file_names, info))


def table_parquet(table: pa.Table) -> bytes:
    """A `labels_table` as zstd Parquet bytes (deterministic)."""
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=["episode_id", "season", "dataset", "rarity", "metadata"],
    )
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


# ---- what Hugging Face `datasets` reads in a pull's DEST -----------------------------------------------

#: per dataset folder: one row per frame file, `file_name` relative to the folder (imagefolder's metadata)
HF_METADATA_NAME = "metadata.parquet"
#: DEST/README.md: the dataset card whose YAML names the splits and the features (rarity a ClassLabel)
CARD_NAME = "README.md"
#: the card's first line after its YAML; a README.md without it is someone else's and is left alone
CARD_MARK = "<!-- written by tuttle-prep pull; rewritten by every pull -->"
#: the metadata's fields, in the card's features order (`file_name` becomes the `image` feature)
HF_FIELDS = ["file_name", "frame", "episode_id", "season", "seconds", "rarity", "metadata"]


def imagefolder_metadata(table: pa.Table, dataset: str) -> bytes:
    """`DEST/<dataset>/metadata.parquet` from a `labels_table(..., file_names=True)`: the HF_FIELDS of the rows of
    `dataset`, each `file_name` relative to `DEST/<dataset>/` (`Rare/<frame>.jpg`); Parquet keeps every value
    exact (no CSV quoting or formula escapes, no rounding of `seconds`) and is written at Arrow speed."""
    rows = table.filter(pc.equal(table["dataset"].cast(pa.string()), dataset)).select(HF_FIELDS)
    relative = pc.utf8_slice_codeunits(rows["file_name"], len(dataset) + 1)
    rows = rows.set_column(0, "file_name", relative)
    sink = io.BytesIO()
    pq.write_table(rows.replace_schema_metadata(None), sink, compression="zstd")
    return sink.getvalue()


def dataset_card(datasets: Sequence[str]) -> bytes:
    """DEST/README.md: `load_dataset(DEST)` reads its YAML and gets one split per dataset folder (train, validate,
    test: `imagefolder` alone knows no split named `validate`) and `rarity` as a ClassLabel in the fixed order."""
    splits = "".join(f"  - split: {d}\n    path: {d}/**\n" for d in datasets)
    names = "".join(f"          '{i}': {name}\n" for i, name in enumerate(CLASSES))
    features = (
        "  - name: image\n    dtype: image\n"
        "  - name: frame\n    dtype: string\n"
        "  - name: episode_id\n    dtype: string\n"
        "  - name: season\n    dtype: string\n"
        "  - name: seconds\n    dtype: float64\n"
        f"  - name: rarity\n    dtype:\n      class_label:\n        names:\n{names}"
        "  - name: metadata\n    dtype: string\n"
    )
    text = (
        f"---\nconfigs:\n- config_name: default\n  data_files:\n{splits}  features:\n{features}---\n{CARD_MARK}\n\n"
        "# Tuttle Twins rarity frames\n\n"
        "`<dataset>/<rarity>/<frame>.jpg`; `labels.parquet` and `labels.csv` list every file. In Python:\n\n"
        "    from datasets import load_dataset\n"
        "    splits = load_dataset(DEST)   # this folder; rarity is a ClassLabel: "
        f"{', '.join(f'{i} {n}' for i, n in enumerate(CLASSES))}\n"
    )
    return text.encode("utf-8")
