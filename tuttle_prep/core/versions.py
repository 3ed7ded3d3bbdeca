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
]
#: the columns that make a dataset's outcome; a source's ETag or size alone makes no new version
OUTCOME_COLUMNS = VERSION_COLUMNS[:7]
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
    ]
)


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


def resolve_version(ids: Sequence[str], reference: str) -> str:
    """The id `reference` names among `ids` (oldest first): an id, a unique prefix, `latest` or `previous`.

    VersionNotFound with one sentence naming the nearest ids otherwise.
    """
    ordered = sorted(ids)
    text = reference.strip()
    if text.removesuffix(VERSION_SUFFIX) in ordered:
        return text.removesuffix(VERSION_SUFFIX)
    if text.lower() == LATEST:
        if not ordered:
            raise VersionNotFound("there is no version yet (a real sync writes the first one)")
        return ordered[-1]
    if text.lower() == PREVIOUS:
        if len(ordered) < 2:
            raise VersionNotFound(f"there is no previous version: {len(ordered)} version(s) in all")
        return ordered[-2]
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


def build_version_table(labels: pd.DataFrame, layout: KeyLayout, known_sources: pa.Table | None = None) -> pa.Table:
    """One VERSION_COLUMNS row per dataset object, as an Arrow table (strings stay in Arrow: no Python objects).

    `labels`: frame, episode_id, dataset, rarity, metadata, s3_key (the labels index, sorted by key);
    `known_sources` (KNOWN_COLUMNS): source objects known this run (a listing first, then the previous
    version); rows of other frames get a null ETag and size.
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
    return fill_sources(table, known_sources)


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
    table = table.select(OUTCOME_COLUMNS)
    n = table.num_rows
    if known_sources is None or known_sources.num_rows == 0:
        return table.append_column("source_etag", pa.nulls(n, pa.string())).append_column(
            "source_size", pa.nulls(n, pa.int64())
        )
    # by frame: hashing the 26-character frame numbers costs a third of hashing the keys
    frames = known_sources["frame"].cast(pa.string()).combine_chunks()
    position = pc.index_in(table["frame"], value_set=frames)
    same_key = pc.fill_null(
        pc.equal(known_sources["source_key"].cast(pa.string()).take(position), table["source_key"]), False
    )
    etags = pc.if_else(same_key, known_sources["source_etag"].cast(pa.string()).take(position), None)
    sizes = pc.if_else(same_key, known_sources["source_size"].cast(pa.int64()).take(position), None)
    return table.append_column("source_etag", etags).append_column("source_size", sizes)


def with_sources(table: pa.Table, known_sources: pa.Table) -> pa.Table:
    """Fill the rows still without an ETag from `known_sources`; rows already known keep theirs."""
    missing = pc.is_null(table["source_etag"])
    if not pc.any(missing).as_py():
        return table
    filled = fill_sources(table, known_sources)
    etag = pc.if_else(missing, filled["source_etag"], table["source_etag"])
    size = pc.if_else(missing, filled["source_size"], table["source_size"])
    return table.select(OUTCOME_COLUMNS).append_column("source_etag", etag).append_column("source_size", size)


def rows_without_source(table: pa.Table) -> pa.Table:
    """The rows whose source ETag is not known."""
    return table.filter(pc.is_null(table["source_etag"]))


def outcome_digest(table: pa.Table) -> str:
    """SHA-256 of the outcome columns' values in row order (tables come sorted by dataset key)."""
    digest = hashlib.sha256()
    for name in OUTCOME_COLUMNS:
        values = pc.fill_null(table[name].cast(pa.large_string()), "").combine_chunks()
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def summary_json(self) -> str:
        """The fields `versions list` shows (S3 user metadata is ASCII and at most 2 KB)."""
        fields = {k: getattr(self, k) for k in ("id", "run_id", "time", "frames", "datasets", "previous", "change")}
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
) -> VersionInfo:
    """The info of a version about to be written: its counts from `table`, the rest as given."""
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
    )


#: written after VERSION_COLUMNS since the label schema (derived from the frame; older versions lack them)
DERIVED_COLUMNS = ["season", "seconds"]


def version_to_parquet(table: pa.Table, info: VersionInfo) -> bytes:
    """The version object's bytes: zstd Parquet, the info in the schema metadata.

    The label schema (`label_schema`): `rarity` with the fixed class order, `dataset` in TUTTLE_SPLIT's order
    (`info.split`), `episode_id` as a sorted dictionary, then `season` and `seconds` from the frame."""
    columns = []
    for name in VERSION_COLUMNS:
        kind = _SCHEMA.field(name).type
        values = table[name]
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
    missing = [c for c in VERSION_COLUMNS if c not in schema.names]
    if missing:
        raise VersionError(f"{where}: not a dataset version (no column {', '.join(missing)})")
    raw_info = (schema.metadata or {}).get(INFO_KEY)
    if raw_info is None:
        raise VersionError(f"{where}: not a dataset version (no {INFO_KEY.decode()} metadata)")
    info = VersionInfo.from_json(raw_info, where)
    wanted = list(columns) if columns is not None else VERSION_COLUMNS
    try:
        arrow = parquet.read(columns=wanted)
        arrow = pa.table(
            {name: arrow[name].cast(pa.int64() if name == "source_size" else pa.string()) for name in wanted}
        )
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise VersionError(f"{where}: unreadable Parquet data ({exc})") from None
    return arrow, info


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


@dataclass
class VersionDiff:
    """What changed from version A to version B, frame by frame."""

    #: DIFF_COLUMNS, one row per changed frame, sorted by frame
    changes: pd.DataFrame
    #: rarity in A (rows, ABSENT for added frames) × rarity in B (columns, ABSENT for removed), frame counts
    transitions: pd.DataFrame
    #: frames added, removed, moved, reclassified and with other metadata
    counts: dict[str, int]
    unchanged: int = 0


def _strings(table: pa.Table, name: str) -> pa.Array:
    return pc.fill_null(table[name].cast(pa.string()), "").combine_chunks()


def diff_versions(a: pa.Table, b: pa.Table) -> VersionDiff:
    """Frames added, removed, moved between datasets, reclassified and with other metadata, A -> B.

    Both tables need DIFF_INPUT_COLUMNS (one row per frame, as a version has).
    """
    frame_a, frame_b = _strings(a, "frame"), _strings(b, "frame")
    # Arrow's hash kernels on both sides: no million-row Python objects
    row_in_a = pc.index_in(frame_b, value_set=frame_a)  # B's rows: their row in A, null if added
    kept_in_b = pc.is_in(frame_a, value_set=frame_b)
    removed_rows = pc.invert(kept_in_b)
    present = pc.is_valid(row_in_a)

    def before(name: str) -> pa.Array:
        """A's value of each of B's frames, "" where B's frame is new."""
        return pc.fill_null(_strings(a, name).take(row_in_a), "")

    kinds = {
        "added": pc.invert(present),
        "moved": pc.and_(present, pc.not_equal(before("dataset"), _strings(b, "dataset"))),
        "reclassified": pc.and_(present, pc.not_equal(before("rarity"), _strings(b, "rarity"))),
        "metadata": pc.and_(present, pc.not_equal(before("metadata"), _strings(b, "metadata"))),
    }
    changed = pc.or_(pc.or_(kinds["added"], kinds["moved"]), pc.or_(kinds["reclassified"], kinds["metadata"]))
    changed_b = pa.table(
        {
            "frame": frame_b.filter(changed),
            "episode_id": _strings(b, "episode_id").filter(changed),
            "from_dataset": before("dataset").filter(changed),
            "to_dataset": _strings(b, "dataset").filter(changed),
            "from_rarity": before("rarity").filter(changed),
            "to_rarity": _strings(b, "rarity").filter(changed),
            "from_metadata": before("metadata").filter(changed),
            "to_metadata": _strings(b, "metadata").filter(changed),
            **{f"is_{k}": v.filter(changed) for k, v in kinds.items()},
            "is_removed": pa.array(np.zeros(pc.sum(changed).as_py() or 0, dtype=bool)),
        }
    )
    gone = a.filter(removed_rows)
    n_gone = gone.num_rows
    removed_part = pa.table(
        {
            "frame": _strings(gone, "frame"),
            "episode_id": _strings(gone, "episode_id"),
            "from_dataset": _strings(gone, "dataset"),
            "to_dataset": pa.array([""] * n_gone, type=pa.string()),
            "from_rarity": _strings(gone, "rarity"),
            "to_rarity": pa.array([""] * n_gone, type=pa.string()),
            "from_metadata": _strings(gone, "metadata"),
            "to_metadata": pa.array([""] * n_gone, type=pa.string()),
            **{f"is_{k}": pa.array(np.zeros(n_gone, dtype=bool)) for k in kinds},
            "is_removed": pa.array(np.ones(n_gone, dtype=bool)),
        }
    )
    both = pa.concat_tables([changed_b, removed_part.select(changed_b.column_names)]).to_pandas()
    flags = both[[f"is_{k}" for k in CHANGE_KINDS]].to_numpy()
    both["change"] = ["+".join(k for k, on in zip(CHANGE_KINDS, row, strict=True) if on) for row in flags.tolist()]
    changes = both[DIFF_COLUMNS].astype(object).sort_values("frame", kind="stable").reset_index(drop=True)

    rarity_before = pc.if_else(present, before("rarity"), ABSENT)
    pairs = pa.concat_tables(
        [
            pa.table({"from": rarity_before, "to": _strings(b, "rarity")}),
            pa.table({"from": _strings(gone, "rarity"), "to": pa.array([ABSENT] * n_gone, type=pa.string())}),
        ]
    )
    counts = {
        "added": pc.sum(kinds["added"]).as_py() or 0,
        "removed": n_gone,
        "moved": pc.sum(kinds["moved"]).as_py() or 0,
        "reclassified": pc.sum(kinds["reclassified"]).as_py() or 0,
        "metadata": pc.sum(kinds["metadata"]).as_py() or 0,
    }
    unchanged = b.num_rows - (pc.sum(changed).as_py() or 0)
    return VersionDiff(changes=changes, transitions=_transitions(pairs), counts=counts, unchanged=unchanged)


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
