"""Dataset versions (pure): the version table, its Parquet bytes, version ids, diffs and retention.

A version is one immutable Parquet object `<ML prefix>_versions/<UTC time>-<run id>.parquet`: one row per
dataset object (VERSION_COLUMNS) and, in the Parquet schema metadata, a JSON `VersionInfo` (run id, time,
split settings, counts, the change against the version before it and the digest of the outcome columns).
Nothing here does I/O: tables and bytes in, tables and bytes out.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import columns as col
from .frame_table import FRAME_PATTERN, RARITIES
from .label_schema import fixed_dictionary, rarity_column, season_column, seconds_column
from .plan import KeyLayout

VERSION_COLUMNS = [
    "frame",
    "episode_id",
    "dataset",
    "rarity",
    "metadata",
    "dataset_key",
    "source_key",
    "source_etag",
    "source_size",
    "dataset_etag",
    "dataset_size",
]
#: the labels and keys of a version's rows (the rows a diff compares)
OUTCOME_COLUMNS = VERSION_COLUMNS[:7]
#: what the dataset object held when the version was written (from the ML listing, or the copy made this run);
#: versions written before these columns existed have none, and are read with them empty
DATASET_OBJECT_COLUMNS = ["dataset_etag", "dataset_size"]
#: what a version's digest covers: the outcome and the bytes each dataset object held (its ETag), so a refreshed
#: picture makes a new version; a source's ETag or size alone makes none
DIGEST_COLUMNS = [*OUTCOME_COLUMNS, "dataset_etag"]
#: the columns every version object has
REQUIRED_COLUMNS = [c for c in VERSION_COLUMNS if c not in DATASET_OBJECT_COLUMNS]
#: the dHash (uint64) of the source bytes the version's ETag names, null when not hashed; versions written
#: before it existed lack the column and read back with nulls
CONTENT_COLUMN = "content_hash"
#: what is known of source objects, to fill a version's ETags and sizes
KNOWN_COLUMNS = ["frame", "source_key", "source_etag", "source_size"]
VERSIONS_FOLDER = "_versions/"
VERSION_SUFFIX = ".parquet"
#: Parquet schema metadata key holding the VersionInfo JSON
INFO_KEY = b"tuttle_prep.version"
FORMAT = 1
LATEST, PREVIOUS = "latest", "previous"
_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9]+$")
_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
CHANGE_KINDS = ("added", "removed", "moved", "reclassified", "metadata")
DIFF_COLUMNS = [
    "frame",
    "episode_id",
    "change",
    "from_dataset",
    "to_dataset",
    "from_rarity",
    "to_rarity",
    "from_metadata",
    "to_metadata",
]
#: the rarity of a frame not in a version, in the transition table
ABSENT = "(none)"

_SCHEMA = pa.schema(
    [
        ("frame", pa.string()),
        ("episode_id", pa.dictionary(pa.int32(), pa.string())),
        ("dataset", pa.dictionary(pa.int32(), pa.string())),
        ("rarity", pa.dictionary(pa.int32(), pa.string())),
        ("metadata", pa.string()),
        ("dataset_key", pa.string()),
        ("source_key", pa.string()),
        ("source_etag", pa.string()),
        ("source_size", pa.int64()),
        ("dataset_etag", pa.string()),
        ("dataset_size", pa.int64()),
        (CONTENT_COLUMN, pa.uint64()),
    ]
)
_INT_COLUMNS = ("source_size", "dataset_size")


class VersionError(ValueError):
    """A version object that cannot be used (not Parquet, a missing column, no version metadata)."""


class VersionNotFound(LookupError):
    """A version reference that matches no version, or more than one; the message says which are near."""


# ---- ids -------------------------------------------------------------------------------------------


def versions_prefix(ml_prefix: str) -> str:
    """`tuttle_twins/ML/_versions/`."""
    return f"{ml_prefix}{VERSIONS_FOLDER}"


def version_key(ml_prefix: str, version_id: str) -> str:
    return f"{versions_prefix(ml_prefix)}{version_id}{VERSION_SUFFIX}"


def new_version_id(when: datetime, run_id: str) -> str:
    """`20261201T210512Z-4f1c9a02b7e1`: sorts by time; the run id makes it unique."""
    return f"{when.astimezone(UTC).strftime(_TIME_FORMAT)}-{run_id}"


def version_id_of(key: str, prefix: str) -> str | None:
    """The id of a key under the versions folder, None if the key is not named like a version."""
    name = key[len(prefix) :] if key.startswith(prefix) else ""
    if not name.endswith(VERSION_SUFFIX):
        return None
    version_id = name[: -len(VERSION_SUFFIX)]
    return version_id if _ID.match(version_id) else None


def version_time(version_id: str) -> datetime:
    return datetime.strptime(version_id.split("-", 1)[0], _TIME_FORMAT).replace(tzinfo=UTC)


def resolve_version(ids: Sequence[str], reference: str, is_partial: Callable[[str], bool] | None = None) -> str:
    """The id `reference` names among `ids` (oldest first): an id, a unique prefix, `latest` or `previous`.

    With `is_partial` (id -> written by a run that failed), `latest` and `previous` are the newest and the
    one before among the other versions (asked newest first, only as far as needed); an id or a prefix may
    name a partial version. VersionNotFound with one sentence naming the nearest ids otherwise.
    """
    ordered = sorted(ids)
    text = reference.strip()
    if text.removesuffix(VERSION_SUFFIX) in ordered:
        return text.removesuffix(VERSION_SUFFIX)
    if text.lower() in (LATEST, PREVIOUS):
        wanted = 1 if text.lower() == LATEST else 2
        if not ordered:
            raise VersionNotFound("there is no version yet (a real sync writes the first one)")
        complete: list[str] = []
        skipped: list[str] = []
        for version_id in reversed(ordered):
            if is_partial is not None and is_partial(version_id):
                skipped.append(version_id)
                continue
            complete.append(version_id)
            if len(complete) == wanted:
                return version_id
        passed = (
            f"; {len(skipped)} partial versions (the newest {skipped[0]}) are skipped: name one, or --include-partial"
            if skipped
            else ""
        )
        if text.lower() == LATEST:
            raise VersionNotFound(f"there is no complete version{passed}")
        raise VersionNotFound(f"there is no previous version: {len(complete)} complete version(s) in all{passed}")
    matches = [v for v in ordered if text and v.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(matches[-5:])
        raise VersionNotFound(f"version '{text}' is ambiguous: {len(matches)} ids start with it ({shown})")
    if not ordered:
        raise VersionNotFound(f"no version matches '{text}': there is no version yet")
    near = nearest_ids(ordered, text)
    raise VersionNotFound(f"no version matches '{text}'; the nearest are {', '.join(near)}")


def nearest_ids(ids: Sequence[str], text: str, n: int = 3) -> list[str]:
    """The `n` ids most like `text` (by similarity; the newest when nothing is alike)."""
    near = difflib.get_close_matches(text, ids, n=n, cutoff=0.3)
    return near or list(reversed(sorted(ids)))[:n]


# ---- the version table -------------------------------------------------------------------------


def source_keys_of(
    layout: KeyLayout, episode_ids: pa.Array | pa.ChunkedArray, frames: pa.Array | pa.ChunkedArray
) -> pa.Array:
    """`layout.source_keys` in Arrow: `<source prefix><s01e01>/default_eng/v1/frames/<img size>/<frame>.jpg`."""
    head = layout.source_prefix
    tail = layout.source_folder("")[len(head) :]  # the folder's part after the episode
    lower = pc.utf8_lower(episode_ids.cast(pa.string()))
    return pc.binary_join_element_wise(head, lower, tail, frames.cast(pa.string()), ".jpg", "")


def build_version_table(
    labels: pd.DataFrame,
    layout: KeyLayout,
    known_sources: pa.Table | None = None,
    dataset_objects: pa.Table | None = None,
) -> pa.Table:
    """One VERSION_COLUMNS row per dataset object, as an Arrow table (strings stay in Arrow: no Python objects).

    `labels`: frame, episode_id, dataset, rarity, metadata, s3_key (the labels index, sorted by key);
    `known_sources` (KNOWN_COLUMNS): source objects known this run (a listing first, then the previous
    version); rows of other frames get a null ETag and size. `dataset_objects` (dataset_key, dataset_etag,
    dataset_size): what each dataset object holds (`dataset_objects_table`); rows of other keys get nulls.
    """

    def column(name: str) -> pa.Array:
        return pa.array(labels[name], type=pa.string(), from_pandas=True)

    frames, episode_ids = column("frame"), column("episode_id")
    table = pa.table(
        {
            "frame": frames,
            "episode_id": episode_ids,
            "dataset": column("dataset"),
            "rarity": column("rarity"),
            "metadata": column("metadata"),
            "dataset_key": column("s3_key"),
            "source_key": source_keys_of(layout, episode_ids, frames),
        }
    )
    return fill_dataset_objects(fill_sources(table, known_sources), dataset_objects)


def dataset_objects_table(keys: Sequence[str], etags: Sequence[str | None], sizes: Sequence[int | None]) -> pa.Table:
    """Dataset objects as (dataset_key, dataset_etag without S3's quotes, dataset_size)."""
    return pa.table(
        {
            "dataset_key": pa.array(keys, type=pa.string()),
            "dataset_etag": pc.utf8_trim(pa.array(etags, type=pa.string()), characters='" '),
            "dataset_size": pa.array(sizes, type=pa.int64()),
        }
    )


def fill_dataset_objects(table: pa.Table, dataset_objects: pa.Table | None) -> pa.Table:
    """Set dataset_etag / dataset_size of each row from `dataset_objects` by dataset key (the first row of a key
    wins); rows of keys it does not hold get nulls."""
    n = table.num_rows
    if dataset_objects is None or dataset_objects.num_rows == 0:
        etags, sizes = pa.nulls(n, pa.string()), pa.nulls(n, pa.int64())
    else:
        keys = dataset_objects["dataset_key"].cast(pa.string()).combine_chunks()
        position = pc.index_in(table["dataset_key"].cast(pa.string()), value_set=keys)
        etags = dataset_objects["dataset_etag"].cast(pa.string()).take(position)
        sizes = dataset_objects["dataset_size"].cast(pa.int64()).take(position)
    return _set(_set(table, "dataset_etag", etags), "dataset_size", sizes)


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`table` with column `name` replaced by `values` (appended if it has none)."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def _extra(table: pa.Table) -> list[str]:
    """The columns after the source ones that a version table carries along (the dataset objects')."""
    return [c for c in DATASET_OBJECT_COLUMNS if c in table.column_names]


def known_sources_table(
    layout: KeyLayout,
    episode_ids: Sequence[str],
    frames: Sequence[str],
    etags: Sequence[str | None],
    sizes: Sequence[int | None],
) -> pa.Table:
    """Listed source frames as KNOWN_COLUMNS: frame, source_key, source_etag (without S3's quotes), source_size."""
    frame_array = pa.array(frames, type=pa.string())
    return pa.table(
        {
            "frame": frame_array,
            "source_key": source_keys_of(layout, pa.array(episode_ids, type=pa.string()), frame_array),
            "source_etag": pc.utf8_trim(pa.array(etags, type=pa.string()), characters='" '),
            "source_size": pa.array(sizes, type=pa.int64()),
        }
    )


def normalize_etag(etag: str | None) -> str | None:
    """S3 quotes ETags (`"9b2cf5..."`); a version stores them bare."""
    return etag.strip().strip('" ') if etag else None


def fill_sources(table: pa.Table, known_sources: pa.Table | None) -> pa.Table:
    """Set source_etag / source_size of each row from `known_sources` (KNOWN_COLUMNS; the first row of a frame
    wins, and only if its source key is the row's: another image size is another object)."""
    extra = _extra(table)
    table = table.select([*OUTCOME_COLUMNS, *extra])
    n = table.num_rows
    if known_sources is None or known_sources.num_rows == 0:
        filled = table.select(OUTCOME_COLUMNS).append_column("source_etag", pa.nulls(n, pa.string()))
        filled = filled.append_column("source_size", pa.nulls(n, pa.int64()))
        return _carry(filled, table, extra)
    # by frame: hashing the 26-character frame numbers costs a third of hashing the keys
    frames = known_sources["frame"].cast(pa.string()).combine_chunks()
    position = pc.index_in(table["frame"], value_set=frames)
    same_key = pc.fill_null(
        pc.equal(known_sources["source_key"].cast(pa.string()).take(position), table["source_key"]), False
    )
    etags = pc.if_else(same_key, known_sources["source_etag"].cast(pa.string()).take(position), None)
    sizes = pc.if_else(same_key, known_sources["source_size"].cast(pa.int64()).take(position), None)
    filled = table.select(OUTCOME_COLUMNS).append_column("source_etag", etags).append_column("source_size", sizes)
    return _carry(filled, table, extra)


def _carry(filled: pa.Table, table: pa.Table, extra: list[str]) -> pa.Table:
    for name in extra:
        filled = filled.append_column(name, table[name])
    return filled


def with_sources(table: pa.Table, known_sources: pa.Table) -> pa.Table:
    """Fill the rows still without an ETag from `known_sources`; rows already known keep theirs."""
    missing = pc.is_null(table["source_etag"])
    if not pc.any(missing).as_py():
        return table
    filled = fill_sources(table, known_sources)
    etag = pc.if_else(missing, filled["source_etag"], table["source_etag"])
    size = pc.if_else(missing, filled["source_size"], table["source_size"])
    return _set(_set(table, "source_etag", etag), "source_size", size)


def rows_without_source(table: pa.Table) -> pa.Table:
    """The rows whose source ETag is not known."""
    return table.filter(pc.is_null(table["source_etag"]))


def outcome_digest(table: pa.Table) -> str:
    """SHA-256 of the DIGEST_COLUMNS' values in row order (tables come sorted by dataset key); a table without
    dataset ETags (a version written before they were recorded) digests them as empty."""
    digest = hashlib.sha256()
    for name in DIGEST_COLUMNS:
        column = table[name] if name in table.column_names else pa.nulls(table.num_rows, pa.string())
        values = pc.fill_null(column.cast(pa.large_string()), "").combine_chunks()
        if len(values) == 0:
            digest.update(b"\x1e")
            continue
        # value lengths, then the bytes: canonical whatever the Arrow chunking or slicing
        offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + len(values) + 1]
        digest.update(np.diff(offsets).astype("<i8").tobytes())
        data = values.buffers()[2]
        if data is not None:
            digest.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
        digest.update(b"\x1e")
    return digest.hexdigest()


@dataclass
class VersionInfo:
    """The version-level metadata, kept in the Parquet schema metadata (and, abridged, on the S3 object)."""

    id: str
    run_id: str
    time: str
    split: dict[str, float]
    seed: str
    group_seconds: int
    frames: int
    #: frames per dataset
    datasets: dict[str, int]
    #: frames per rarity
    rarities: dict[str, int] = field(default_factory=dict)
    #: the version this one was compared with when written (None for the first)
    previous: str | None = None
    #: added / removed / moved / reclassified / metadata against `previous`
    change: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    format: int = FORMAT
    #: TUTTLE_SPLIT_STRATIFY when written; versions written before it existed used the per-frame hash
    stratify: str = "none"
    #: what `change` counts: "objects" (dataset objects, by key); versions written before said nothing: "frames"
    counted: str = "frames"
    #: None: written by a run that did all its work. Else written by a run that failed (exit 1) — see
    #: `partial_record`: what the bucket held then, duplicates included, is recorded, and `latest` skips it
    partial: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def summary_json(self) -> str:
        """The fields `versions list` shows (S3 user metadata is ASCII and at most 2 KB)."""
        names = ("id", "run_id", "time", "frames", "datasets", "previous", "change", "counted", "partial")
        fields = {k: getattr(self, k) for k in names}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> VersionInfo:
        """The info in `text` (read back from S3: untrusted); VersionError naming `where` unless it is a JSON
        object whose fields have the forms the job writes (ids and texts strings, counts integers, the maps
        of names to counts and shares)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            data.setdefault("split", {})
            data.setdefault("seed", "")
            data.setdefault("group_seconds", 0)
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            for name, value in known.items():
                if not _INFO_FORMS[name](value):
                    raise ValueError(f"field {name} is {shown(value)[:60]}, not of the form the job writes")
            return cls(**known)
        except (ValueError, TypeError, KeyError) as exc:
            raise VersionError(f"{where}: its version metadata is not readable ({exc})") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_counts(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _is_int(v) for k, v in value.items())


#: the form of each VersionInfo field as the job writes it
_INFO_FORMS: dict[str, Callable[[object], bool]] = {
    **dict.fromkeys(("id", "run_id", "time", "seed", "digest", "stratify"), lambda v: isinstance(v, str)),
    **dict.fromkeys(("frames", "group_seconds", "format"), _is_int),
    **dict.fromkeys(("datasets", "rarities", "change"), _is_counts),
    "split": lambda v: (
        isinstance(v, dict) and all(isinstance(k, str) and (_is_int(x) or isinstance(x, float)) for k, x in v.items())
    ),
    "previous": lambda v: v is None or isinstance(v, str),
    "counted": lambda v: isinstance(v, str),
    # the partial marker: null (complete) or an object; its values are shown escaped (`describe_partial`)
    "partial": lambda v: v is None or (isinstance(v, dict) and all(isinstance(k, str) for k in v)),
}


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column).to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in counts}


def version_info(
    table: pa.Table,
    version_id: str,
    run_id: str,
    split: Mapping[str, float],
    seed: str,
    group_seconds: int,
    previous: str | None,
    change: Mapping[str, int],
    digest: str,
    stratify: str = "none",
    partial: Mapping[str, Any] | None = None,
) -> VersionInfo:
    """The info of a version about to be written: its counts from `table`, the rest as given (`partial`: see
    `partial_record`; None for a run that did all its work)."""
    datasets = _value_counts(table["dataset"])
    return VersionInfo(
        id=version_id,
        run_id=run_id,
        time=version_time(version_id).strftime("%Y-%m-%dT%H:%M:%SZ"),
        split=dict(split),
        seed=seed,
        group_seconds=int(group_seconds),
        frames=table.num_rows,
        datasets={**{d: datasets.pop(d, 0) for d in split}, **dict(sorted(datasets.items()))},
        rarities=dict(sorted(_value_counts(table["rarity"]).items())),
        previous=previous,
        change=dict(change),
        digest=digest,
        stratify=stratify,
        counted="objects",
        partial=dict(partial) if partial is not None else None,
    )


#: a partial version's reason is cut to this many characters (the summary rides in 2 KB of S3 metadata)
REASON_CHARS = 240


def partial_record(
    exit_code: int, failed: int, held_back: int, in_two_places: int, reasons: Sequence[str]
) -> dict[str, Any]:
    """The `partial` marker of a version written by a run that failed: its exit code, its failed operations,
    the deletes it held back (refused by the guard or held because something failed), the frames that were in
    two places in what it recorded, how many job failures it had and the first of them (cut, ASCII-escaped)."""
    first = reasons[0] if reasons else ""
    first = first if len(first) <= REASON_CHARS else first[: REASON_CHARS - 3] + "..."
    return {
        "exit_code": int(exit_code),
        "failed": int(failed),
        "held_back": int(held_back),
        "frames_in_two_places": int(in_two_places),
        "job_failures": len(reasons),
        "reason": first.encode("ascii", "backslashreplace").decode("ascii"),
    }


def describe_partial(partial: Mapping[str, Any]) -> str:
    """One line for people: `partial: written by a run that exited 1 (2 failed operations, ...): <reason>`.

    The values come from an object read back from S3: numbers are shown as numbers, the reason with `shown`."""

    def number(name: str) -> str:
        value = partial.get(name, 0)
        return f"{value:,}" if isinstance(value, int) else shown(value)

    line = (
        f"partial: written by a run that exited {number('exit_code')} ({number('failed')} failed operations, "
        f"{number('held_back')} deletes held back, {number('frames_in_two_places')} frames in two places)"
    )
    reason = partial.get("reason")
    return f"{line}: {shown(reason)}" if reason else line


#: written after VERSION_COLUMNS since the label schema (derived from the frame; older versions lack them)
DERIVED_COLUMNS = ["season", "seconds"]


def version_to_parquet(table: pa.Table, info: VersionInfo) -> bytes:
    """The version object's bytes: zstd Parquet, the info in the schema metadata.

    The label schema (`label_schema`): `rarity` with the fixed class order, `dataset` in TUTTLE_SPLIT's order
    (`info.split`), `episode_id` as a sorted dictionary, then `season` and `seconds` from the frame."""
    columns = []
    if CONTENT_COLUMN not in table.column_names:
        table = table.append_column(CONTENT_COLUMN, pa.nulls(table.num_rows, pa.uint64()))
    for name in [*VERSION_COLUMNS, CONTENT_COLUMN]:
        kind = _SCHEMA.field(name).type
        values = table[name] if name in table.column_names else pa.nulls(table.num_rows, kind)
        if name == "rarity":
            values = rarity_column(values)
        elif name == "dataset":
            values = fixed_dictionary(values, tuple(info.split))
        elif pa.types.is_dictionary(kind):
            values = fixed_dictionary(values, ())
        else:
            values = values.cast(kind)
        columns.append(values)
    columns += [season_column(table["episode_id"]), seconds_column(table["frame"])]
    schema = _SCHEMA.append(pa.field("season", pa.dictionary(pa.int32(), pa.string()))).append(
        pa.field("seconds", pa.float64())
    )
    arrow = pa.Table.from_arrays(columns, schema=schema.with_metadata({INFO_KEY: info.to_json().encode()}))
    sink = io.BytesIO()
    pq.write_table(
        arrow,
        sink,
        compression="zstd",
        # low-cardinality columns as dictionaries; unique keys and ETags plain (a dictionary only costs there)
        use_dictionary=["episode_id", "dataset", "rarity", "metadata", "season"],
        row_group_size=256 * 1024,
    )
    return sink.getvalue()


def version_from_parquet(data: bytes, where: str, columns: Sequence[str] | None = None) -> tuple[pa.Table, VersionInfo]:
    """Read a version object (only `columns`, if given); VersionError naming `where` if it is not Parquet,
    lacks a column or lacks the version metadata. String columns come back as plain strings."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise VersionError(f"{where}: not a Parquet file ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise VersionError(f"{where}: not a dataset version (no column {', '.join(missing)})")
    raw_info = (schema.metadata or {}).get(INFO_KEY)
    if raw_info is None:
        raise VersionError(f"{where}: not a dataset version (no {INFO_KEY.decode()} metadata)")
    info = VersionInfo.from_json(raw_info, where)
    wanted = list(columns) if columns is not None else [*VERSION_COLUMNS, CONTENT_COLUMN]
    kinds = {"source_size": pa.int64(), CONTENT_COLUMN: pa.uint64()}
    present = [c for c in wanted if c != CONTENT_COLUMN or c in schema.names]
    try:
        arrow = parquet.read(columns=[c for c in present if c in schema.names])
        kinds.update({name: pa.int64() for name in _INT_COLUMNS})

        def read(name: str) -> pa.ChunkedArray | pa.Array:
            kind = kinds.get(name, pa.string())
            # an older version has no dataset ETags: read with them empty (`pull --version` uses the source's)
            return arrow[name].cast(kind) if name in arrow.column_names else pa.nulls(arrow.num_rows, kind)

        arrow = pa.table({name: read(name) for name in present})
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise VersionError(f"{where}: unreadable Parquet data ({exc})") from None
    if CONTENT_COLUMN in wanted and CONTENT_COLUMN not in present:
        arrow = arrow.append_column(CONTENT_COLUMN, pa.nulls(arrow.num_rows, pa.uint64()))
    return arrow, info


def with_content_hashes(table: pa.Table, known: pa.Table | None) -> pa.Table:
    """Set CONTENT_COLUMN of each row from `known` (source_key, source_etag, content_hash): a hash counts only
    for the very bytes the row's ETag names; rows already holding one keep it, the others are null."""
    n = table.num_rows
    current = table[CONTENT_COLUMN] if CONTENT_COLUMN in table.column_names else pa.nulls(n, pa.uint64())
    if CONTENT_COLUMN in table.column_names:
        table = table.drop_columns([CONTENT_COLUMN])
    if known is not None and known.num_rows and n:
        pairs = pc.binary_join_element_wise(
            known["source_key"].cast(pa.string()), known["source_etag"].cast(pa.string()), "\x00"
        )
        mine = pc.binary_join_element_wise(table["source_key"], pc.fill_null(table["source_etag"], ""), "\x00")
        position = pc.index_in(mine, value_set=pairs.combine_chunks() if hasattr(pairs, "combine_chunks") else pairs)
        found = known[CONTENT_COLUMN].cast(pa.uint64()).take(position)
        current = pc.if_else(pc.is_null(current), found, current)
    return table.append_column(CONTENT_COLUMN, current)


def version_labels(table: pa.Table, datasets: Collection[str] | None = None) -> pd.DataFrame:
    """The labels index (frame, episode_id, dataset, rarity, metadata, s3_key) of a version's rows."""
    if datasets is not None:
        table = table.filter(pc.is_in(table["dataset"], value_set=pa.array(list(datasets), type=pa.string())))
    labels = table.select(["frame", "episode_id", "dataset", "rarity", "metadata", "dataset_key"]).to_pandas()
    labels = labels.rename(columns={"dataset_key": "s3_key"})
    return labels.sort_values("s3_key", kind="stable").reset_index(drop=True)


# ---- checking a version read back ------------------------------------------------------------------

#: a whole frame number of ASCII digits only, in RE2 (`$` is the end of the text: no final newline passes)
_FRAME_ASCII_RE2 = "^" + FRAME_PATTERN.replace(r"\d", "[0-9]") + "$"
#: an S3 ETag as a version stores it: 32 hex digits, `-<parts>` for a multipart upload
_ETAG_RE2 = r"^[0-9A-Fa-f]{32}(-[0-9]{1,5})?$"
#: the columns a row is checked on, in the order problems are named
CHECKED_COLUMNS = [
    "frame",
    "episode_id",
    "dataset",
    "rarity",
    "dataset_key",
    "source_key",
    "source_etag",
    "source_size",
    "dataset_etag",
    "dataset_size",
]


def shown(value: object) -> str:
    """A value read back from S3, safe to print: `ascii()` of it (quotes, control and non-ASCII characters
    escaped: `'..'`, `'a\\nb'`, `'\\u0661'`), cut to 120 characters."""
    text = ascii(value)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class RowProblem:
    """One value of a version's row that the layout's rules refuse; `row` counts from 0 in the object."""

    row: int
    column: str
    value: object
    reason: str

    def describe(self) -> str:
        return f"row {self.row}, column {self.column}: {shown(self.value)} {self.reason}"


def check_version_rows(table: pa.Table, layout: KeyLayout, img_sizes: Collection[str]) -> list[RowProblem]:
    """Every value of a version read back that breaks the layout's rules, by row then CHECKED_COLUMNS order.

    A row is sound when its dataset is one of `layout.datasets`, its rarity one of the five, its frame a whole
    frame number of ASCII digits, its episode_id the frame's, its dataset_key exactly the layout's key of that
    dataset, rarity and frame, its source_key exactly the layout's source key of that frame for one of
    `img_sizes` (a version keeps the size it was written with), its source_etag empty or an S3 ETag, its
    source_size empty or not negative, and no other row has its frame. A key is compared only when the values
    it is built from are sound (the bad value is named instead). Vectorised: no Python per sound row.
    """
    n = table.num_rows
    if n == 0:
        return []

    def strings(name: str) -> pa.ChunkedArray:
        return table[name].cast(col.TYPE)

    frame, episode_id, dataset, rarity = (strings(c) for c in ("frame", "episode_id", "dataset", "rarity"))
    ok: dict[str, np.ndarray] = {
        "frame": col.mask(pc.match_substring_regex(frame, _FRAME_ASCII_RE2)),
        "dataset": col.mask(pc.is_in(dataset, value_set=pa.array(list(layout.datasets), col.TYPE))),
        "rarity": col.mask(pc.is_in(rarity, value_set=pa.array(list(RARITIES), col.TYPE))),
    }
    reasons = {
        "frame": "is not a frame number like TT_S01_E01_FRM-00-00-08-12 (ASCII digits)",
        "dataset": f"is not a dataset of TUTTLE_SPLIT ({', '.join(layout.datasets)})",
        "rarity": f"is not one of the rarities ({', '.join(RARITIES)})",
    }
    # the frame's episode: `TT_S01_E01_...` -> S01E01 (byte slices are exact on a sound, ASCII frame)
    frame_bytes = frame.cast(pa.large_binary())
    frames_episode = col.concat(
        pc.binary_slice(frame_bytes, 3, 6).cast(col.TYPE), pc.binary_slice(frame_bytes, 7, 10).cast(col.TYPE)
    )
    ok["episode_id"] = ~ok["frame"] | col.mask(pc.equal(episode_id, frames_episode))
    reasons["episode_id"] = "is not the episode of the row's frame"
    placed = ok["frame"] & ok["dataset"] & ok["rarity"]
    built = col.concat(layout.ml_prefix, dataset, "/", rarity, "/", frame, ".jpg")
    ok["dataset_key"] = ~placed | col.mask(pc.equal(strings("dataset_key"), built))
    reasons["dataset_key"] = "is not the layout's key of the row's dataset, rarity and frame"
    sourced = ok["frame"] & ok["episode_id"]
    source_key = strings("source_key")
    same_source = np.zeros(n, dtype=bool)
    for size in dict.fromkeys([layout.img_size, *img_sizes]):  # today's size first: usually every row has it
        if (same_source | ~sourced).all():
            break
        keys = source_keys_of(replace(layout, img_size=size), episode_id, frame).cast(col.TYPE)
        same_source |= col.mask(pc.equal(source_key, keys))
    ok["source_key"] = ~sourced | same_source
    reasons["source_key"] = f"is not the layout's source key of the row's frame (image sizes {', '.join(img_sizes)})"
    etag = strings("source_etag")
    ok["source_etag"] = col.mask(pc.is_null(etag)) | col.mask(pc.match_substring_regex(etag, _ETAG_RE2))
    reasons["source_etag"] = "is not an S3 ETag (32 hex digits, -N for a multipart upload)"
    size = table["source_size"].cast(pa.int64())
    ok["source_size"] = col.mask(pc.is_null(size)) | col.mask(pc.greater_equal(size, 0))
    reasons["source_size"] = "is a negative size"
    for name, kind in (("dataset_etag", col.TYPE), ("dataset_size", pa.int64())):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(n, kind))
    dataset_etag = strings("dataset_etag")
    ok["dataset_etag"] = col.mask(pc.is_null(dataset_etag)) | col.mask(
        pc.match_substring_regex(dataset_etag, _ETAG_RE2)
    )
    reasons["dataset_etag"] = reasons["source_etag"]
    dataset_size = table["dataset_size"].cast(pa.int64())
    ok["dataset_size"] = col.mask(pc.is_null(dataset_size)) | col.mask(pc.greater_equal(dataset_size, 0))
    reasons["dataset_size"] = "is a negative size"
    # one row per frame: two rows of one frame would be two files, or one local path written twice
    repeated = np.zeros(n, dtype=bool)
    first_row: dict[str, int] = {}
    if len(pc.unique(frame)) < n:  # the usual case, every frame once, costs one hash pass
        frames = pd.Series(frame.to_numpy(zero_copy_only=False), dtype=object)
        repeated = frames.duplicated(keep="first").to_numpy() & ok["frame"]
        for row, value in enumerate(frames.tolist()):
            first_row.setdefault(value, row)
    problems: list[RowProblem] = []
    bad = ~np.logical_and.reduce([ok[c] for c in CHECKED_COLUMNS]) | repeated
    for row in np.flatnonzero(bad).tolist():
        for name in CHECKED_COLUMNS:
            if not ok[name][row]:
                problems.append(RowProblem(row, name, table[name][row].as_py(), reasons[name]))
        if repeated[row]:
            value = frame[row].as_py()
            reason = f"is also the frame of row {first_row[value]} (one row per frame)"
            problems.append(RowProblem(row, "frame", value, reason))
    return problems


# ---- diffs -----------------------------------------------------------------------------------------

DIFF_INPUT_COLUMNS = ["frame", "episode_id", "dataset", "rarity", "metadata"]
#: what a diff compares: dataset objects, each named by its place (the key's dataset/rarity/frame.jpg)
DIFF_UNIT = "dataset objects (by key: dataset/rarity/frame)"


@dataclass
class VersionDiff:
    """What changed from version A to version B, dataset object by dataset object (key by key).

    An object (dataset, rarity, frame) in both versions is kept (its metadata may have changed). A frame's
    objects only in A and only in B are paired in key order: each pair is one object that moved and/or was
    reclassified; the rest of A's are removed, the rest of B's added. So a frame in two places in A and in one
    of them in B counts one removed object, and `objects_a = removed + paired + kept`,
    `objects_b = added + paired + kept`.
    """

    #: DIFF_COLUMNS, one row per changed object, sorted by frame
    changes: pd.DataFrame
    #: rarity in A (rows, ABSENT for added objects) × rarity in B (columns, ABSENT for removed), object counts
    transitions: pd.DataFrame
    #: objects added, removed, moved, reclassified and with other metadata
    counts: dict[str, int]
    #: B's objects kept from A with the same metadata
    unchanged: int = 0
    objects_a: int = 0
    objects_b: int = 0
    frames_a: int = 0
    frames_b: int = 0
    #: frames with more than one object (a frame in two places), in A and in B
    doubled_a: int = 0
    doubled_b: int = 0


def _strings(table: pa.Table, name: str) -> pa.Array:
    return pc.fill_null(table[name].cast(pa.string()), "").combine_chunks()


def _objects(table: pa.Table) -> pa.Array:
    """Each row's dataset object, `dataset/rarity/frame` (the key without the ML prefix and `.jpg`)."""
    names = (_strings(table, c) for c in ("dataset", "rarity", "frame"))
    return pc.binary_join_element_wise(*names, "/")


def _frame_counts(frames: pa.Array) -> tuple[int, int]:
    """(distinct frames, frames with more than one row) of a frame column; one hash pass when every frame is once."""
    distinct = len(pc.unique(frames))  # Arrow's unique is twice as fast as count_distinct here
    if distinct == len(frames):
        return distinct, 0
    counts = pc.value_counts(frames).field("counts")
    return distinct, pc.sum(pc.greater(counts, 1)).as_py() or 0


def frames_in_two_places(table: pa.Table) -> int:
    """How many frames have more than one row (object) in `table`; 0 costs one hash pass."""
    return _frame_counts(_strings(table, "frame"))[1]


def _unmatched(table: pa.Table, rows: pa.Array) -> pd.DataFrame:
    """The rows of `table` where `rows` is true, with their rank among their frame's such rows in key order."""
    part = pa.table({c: _strings(table, c).filter(rows) for c in DIFF_INPUT_COLUMNS}).to_pandas()
    part = part.astype(object).sort_values(["frame", "dataset", "rarity"], kind="stable")
    part["rank"] = part.groupby("frame", sort=False).cumcount()
    return part


def diff_versions(a: pa.Table, b: pa.Table) -> VersionDiff:
    """Dataset objects added, removed, moved between datasets, reclassified and with other metadata, A -> B.

    Both tables need DIFF_INPUT_COLUMNS (one row per dataset object, as a version has; a frame may have two).
    """
    a = pa.table({c: _strings(a, c) for c in DIFF_INPUT_COLUMNS})  # plain strings, "" for null: once per column
    b = pa.table({c: _strings(b, c) for c in DIFF_INPUT_COLUMNS})
    frame_a, frame_b = a["frame"].combine_chunks(), b["frame"].combine_chunks()
    obj_a, obj_b = _objects(a), _objects(b)
    # Arrow's hash kernels on both sides: no million-row Python objects
    row_in_a = pc.index_in(obj_b, value_set=obj_a)  # B's objects: their row in A, null if not in A
    kept = pc.is_valid(row_in_a)
    # A's rows that B keeps, from the same hash pass (a version lists each key once)
    in_b = np.zeros(a.num_rows, dtype=bool)
    in_b[pc.drop_null(row_in_a).to_numpy()] = True
    kept_in_a = pa.array(in_b)
    meta_b = _strings(b, "metadata")
    meta_before = pc.fill_null(_strings(a, "metadata").take(row_in_a), "")
    relabelled = pc.and_(kept, pc.not_equal(meta_before, meta_b))  # kept objects with other metadata

    kept_changed = pa.table(
        {
            "frame": _strings(b, "frame").filter(relabelled),
            "episode_id": _strings(b, "episode_id").filter(relabelled),
            "from_dataset": _strings(b, "dataset").filter(relabelled),
            "to_dataset": _strings(b, "dataset").filter(relabelled),
            "from_rarity": _strings(b, "rarity").filter(relabelled),
            "to_rarity": _strings(b, "rarity").filter(relabelled),
            "from_metadata": meta_before.filter(relabelled),
            "to_metadata": meta_b.filter(relabelled),
        }
    ).to_pandas()
    kept_changed = kept_changed.astype(object)
    kept_changed["change"] = "metadata"

    # the objects in only one version, paired within their frame in key order (usually few: only the changes)
    only_a = _unmatched(a, pc.invert(kept_in_a))
    only_b = _unmatched(b, pc.invert(kept))
    joined = only_a.merge(only_b, on=["frame", "rank"], how="outer", suffixes=("_a", "_b"), indicator=True)
    joined = joined.astype(object).where(joined.notna(), "")
    paired = joined["_merge"] == "both"
    removed = joined["_merge"] == "left_only"
    added = joined["_merge"] == "right_only"
    moved = paired & (joined["dataset_a"] != joined["dataset_b"])
    reclassified = paired & (joined["rarity_a"] != joined["rarity_b"])
    other_metadata = paired & (joined["metadata_a"] != joined["metadata_b"])
    kinds = {"added": added, "removed": removed, "moved": moved, "reclassified": reclassified}
    kinds["metadata"] = other_metadata
    flags = np.column_stack([kinds[k].to_numpy(dtype=bool) for k in CHANGE_KINDS]) if len(joined) else None
    one_side = pd.DataFrame(
        {
            "frame": joined["frame"],
            "episode_id": joined["episode_id_a"].where(~added, joined["episode_id_b"]),
            "change": ["+".join(k for k, on in zip(CHANGE_KINDS, row, strict=True) if on) for row in flags.tolist()]
            if flags is not None
            else [],
            "from_dataset": joined["dataset_a"],
            "to_dataset": joined["dataset_b"],
            "from_rarity": joined["rarity_a"],
            "to_rarity": joined["rarity_b"],
            "from_metadata": joined["metadata_a"],
            "to_metadata": joined["metadata_b"],
        }
    )
    changes = pd.concat([kept_changed[DIFF_COLUMNS], one_side[DIFF_COLUMNS]], ignore_index=True).astype(object)
    changes = changes.sort_values(["frame", "from_dataset", "to_dataset"], kind="stable").reset_index(drop=True)

    kept_rarity = _strings(b, "rarity").filter(kept)
    pairs = pa.concat_tables(
        [
            pa.table({"from": kept_rarity, "to": kept_rarity}),
            pa.table(
                {
                    "from": pa.array(joined["rarity_a"].where(~added, ABSENT).tolist(), type=pa.string()),
                    "to": pa.array(joined["rarity_b"].where(~removed, ABSENT).tolist(), type=pa.string()),
                }
            ),
        ]
    )
    counts = {k: int(kinds[k].sum()) for k in CHANGE_KINDS}
    counts["metadata"] += pc.sum(relabelled).as_py() or 0
    n_kept = pc.sum(kept).as_py() or 0
    (frames_a, doubled_a), (frames_b, doubled_b) = _frame_counts(frame_a), _frame_counts(frame_b)
    return VersionDiff(
        changes=changes,
        transitions=_transitions(pairs),
        counts=counts,
        unchanged=n_kept - (pc.sum(relabelled).as_py() or 0),
        objects_a=a.num_rows,
        objects_b=b.num_rows,
        frames_a=frames_a,
        frames_b=frames_b,
        doubled_a=doubled_a,
        doubled_b=doubled_b,
    )


def _transitions(pairs: pa.Table) -> pd.DataFrame:
    """(from, to) rarity pairs -> a from × to grid of counts, RARITIES order first, ABSENT last."""
    grouped = pairs.group_by(["from", "to"]).aggregate([([], "count_all")]).to_pandas()
    grid = grouped.pivot(index="from", columns="to", values="count_all").fillna(0).astype(int)
    seen = set(grid.index) | set(grid.columns)
    names = [r for r in RARITIES if r in seen] + sorted(seen - set(RARITIES) - {ABSENT})
    names += [ABSENT] if ABSENT in seen else []
    grid = grid.reindex(index=[n for n in names if n in grid.index], columns=[n for n in names if n in grid.columns])
    grid = grid.fillna(0).astype(int)
    grid.index.name, grid.columns.name = "from", "to"
    return grid


# ---- retention -------------------------------------------------------------------------------------


def versions_to_delete(
    ids: Sequence[str], keep: int | None, pinned: Collection[str] = (), unreadable: Collection[str] = ()
) -> list[str]:
    """The ids beyond the newest `keep` (None keeps all), never the latest, never a pinned one; oldest first.

    A pinned entry may be an id or a prefix of ids: everything it could mean is kept. An id in `unreadable`
    (an object named like a version that is not readable as one) is neither counted among the kept nor deleted.
    """
    skipped = set(unreadable)
    ordered = sorted(v for v in ids if v not in skipped)
    if keep is None or not ordered:
        return []
    kept = set(ordered[-max(keep, 1) :])
    held = {v for v in ordered for p in pinned if p and v.startswith(p)}
    return [v for v in ordered if v not in kept and v not in held]
