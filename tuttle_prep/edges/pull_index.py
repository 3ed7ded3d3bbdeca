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
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
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


class IndexEntry(NamedTuple):
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


def _path_pattern(layout: KeyLayout) -> str:
    """A whole dataset file's path under DEST in RE2 (`[0-9]`: ASCII digits; `$` is the end of the text)."""
    datasets = "|".join(re.escape(d) for d in layout.datasets)
    frame = FRAME_PATTERN.replace(r"\d", "[0-9]")
    return f"^(?:{datasets})/(?:{'|'.join(RARITIES)})/{frame}\\.jpg$"


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
    checks = {
        "path": pc.match_substring_regex(table["path"], _path_pattern(layout)),
        "size": pc.greater_equal(table["size"], 0),
        "etag": pc.match_substring_regex(table["etag"], _ETAG.pattern.join("^$")),
        "md5": pc.match_substring_regex(table["md5"], _MD5.pattern.join("^$")),
        **{c: pc.is_valid(table[c]) for c in ("mtime_ns", "ctime_ns", "ino", "dev")},
    }
    for column, ok in checks.items():
        bad = pc.index(pc.fill_null(ok, False), False).as_py()
        if bad != -1:
            value = table[column][bad].as_py()
            return {}, f"{path} row {bad}: {column} {ascii(value)} is not of the index's form"
    names = table["path"].to_pylist()
    fields = (table[c].to_pylist() for c in _SCHEMA.names[1:])
    entries = dict(zip(names, map(IndexEntry._make, zip(*fields, strict=True)), strict=True))
    if len(entries) < len(names):
        return {}, f"{path}: a path is listed twice"
    return entries, None


def index_bytes(entries: Iterable[tuple[str, IndexEntry]]) -> bytes:
    """The index file's content for `entries` (relative path, entry), sorted by path."""
    rows = sorted(entries)
    columns = [[name for name, _ in rows], *([e[i] for _, e in rows] for i in range(len(IndexEntry._fields)))]
    arrays = [pa.array(c, type=f.type) for c, f in zip(columns, _SCHEMA, strict=True)]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=_SCHEMA), sink, compression="zstd")
    return sink.getvalue()
