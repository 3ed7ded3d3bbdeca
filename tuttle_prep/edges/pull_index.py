"""The local index `pull --version` keeps in DEST (`DEST/.tuttle-pull-index.parquet`): which local files were
verified against which source ETag, so a rerun does not re-hash files that have not changed since.

One row per verified file: its path relative to DEST (`<dataset>/<rarity>/<frame>.jpg`), the file's size,
mtime_ns, ctime_ns, inode and device when it was verified, the source ETag it was verified against and the MD5
of its content. A file is taken as verified without reading it only while all five stat fields are the
same. A user can set a file's mtime back (`os.utime`), never its ctime: any write or `utime` sets the ctime to
the current time, so a file changed after it was verified has another ctime, and a file replaced by another
one has another inode. (On kernels without fine-grained timestamps, a change within the same timestamp tick as
the verification, a few milliseconds, that also keeps the size and restores the mtime would go unseen; Linux
6.13 and later give such a change a distinct ctime once the ctime was read.)

The index is read back as untrusted: a file that is not this Parquet table, a row whose path is not a
layout path of a configured dataset, a duplicate path or a value of the wrong form makes the whole index
ignored (every file of the same size is hashed again), never trusted in part. Its paths only ever serve as
look-ups of paths the version builds: nothing is opened, written or deleted because the index names it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.frame_table import FRAME_PATTERN, RARITIES
from ..core.plan import KeyLayout

INDEX_NAME = ".tuttle-pull-index.parquet"
_CHUNK = 1 << 20
_MD5 = re.compile(r"[0-9a-f]{32}")
_ETAG = re.compile(r"[0-9A-Fa-f]{32}(-[0-9]{1,5})?")
_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("ctime_ns", pa.int64()),
        ("ino", pa.uint64()),
        ("dev", pa.uint64()),
        ("etag", pa.string()),
        ("md5", pa.string()),
    ]
)


@dataclass(frozen=True)
class IndexEntry:
    """A local file as it was when verified, and what it was verified against."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int
    #: the source ETag the file's content was verified against
    etag: str
    #: the MD5 of the file's content when verified
    md5: str

    @classmethod
    def of(cls, stat: os.stat_result, etag: str, md5: str) -> IndexEntry:
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev, etag, md5)

    def still(self, stat: os.stat_result, etag: str) -> bool:
        """True if the file is untouched since it was verified against `etag` (all five stat fields equal)."""
        now = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev)
        return self.etag == etag and now == (self.size, self.mtime_ns, self.ctime_ns, self.ino, self.dev)


def is_single_part(etag: str) -> bool:
    """A single-part upload's ETag (32 hex digits) is its content's MD5 (unless SSE-KMS encrypts it)."""
    return _ETAG.fullmatch(etag) is not None and "-" not in etag


def md5_of(path: Path) -> str:
    """The MD5 of a local file's content, hex."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _path_pattern(layout: KeyLayout) -> re.Pattern[str]:
    datasets = "|".join(re.escape(d) for d in layout.datasets)
    return re.compile(f"(?:{datasets})/(?:{'|'.join(RARITIES)})/{FRAME_PATTERN}\\.jpg", re.ASCII)


def read_index(dest: Path, layout: KeyLayout) -> tuple[dict[str, IndexEntry], str | None]:
    """The index in `dest` ({relative path: entry}) and None; or {} and why it is ignored (None if absent)."""
    path = dest / INDEX_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"cannot read {path} ({exc.strerror or exc})"
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        return {}, f"{path} is not a Parquet file ({exc})"
    if table.schema.remove_metadata() != _SCHEMA:
        return {}, f"{path} does not have the index's columns ({', '.join(table.column_names)})"
    pattern = _path_pattern(layout)
    entries: dict[str, IndexEntry] = {}
    for row, (name, *fields) in enumerate(zip(*(table[c].to_pylist() for c in _SCHEMA.names), strict=True)):
        entry = None if None in fields else IndexEntry(*fields)
        if not isinstance(name, str) or pattern.fullmatch(name) is None:
            return {}, f"{path} row {row}: {ascii(name)} is not a dataset file's path"
        if entry is None or entry.size < 0 or not _ETAG.fullmatch(entry.etag) or not _MD5.fullmatch(entry.md5):
            return {}, f"{path} row {row}: a value of {name} is empty or of the wrong form"
        if name in entries:
            return {}, f"{path} row {row}: {name} is listed twice"
        entries[name] = entry
    return entries, None


def index_bytes(entries: Iterable[tuple[str, IndexEntry]]) -> bytes:
    """The index file's content for `entries` (relative path, entry), sorted by path."""
    rows = sorted((name, *astuple(entry)) for name, entry in entries)
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in _SCHEMA.names]
    table = pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, _SCHEMA, strict=True)], schema=_SCHEMA
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
