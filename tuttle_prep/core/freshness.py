"""Is a dataset object still its source's picture? (pure, no I/O)

A dataset object is a server-side copy of its source frame. Sources are re-rendered under the same key without
notice, and a dataset object can be overwritten by hand, so each run compares every dataset object of a planned
episode with its source as both were just listed:

- both ETags single-part (an MD5 of the bytes): the object is current when ETag and size are the source's;
- an ETag of a multipart upload (`<hex>-<parts>`) is a hash of the parts' hashes, and a server-side copy of such a
  source may carry another ETag than the source for the same bytes. Those two cannot be compared: the object is
  current when its size is the source's and it was written no earlier than the source (the copy newer than the
  source is current), so a multipart source is copied once, not every night;
- but a dataset object with a multipart ETag over a single-part source was not written by the job (a CopyObject
  from a single-part source gives the source's MD5): someone uploaded it, whatever its size and time, so it is
  stale (refreshed once; the copy then carries the source's ETag).

Anything unknown (no ETag, no time) counts as current: doubt never rewrites.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def bare_etags(etags: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """S3's quoted ETags (`"9b2c..."`) without the quotes, lower-case; nulls stay null."""
    chunked = pa.chunked_array([etags]) if isinstance(etags, pa.Array) else etags
    return pc.utf8_lower(pc.utf8_trim(chunked.cast(pa.string()), characters='" '))


def is_multipart(etags: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where an ETag is a multipart upload's (`...-N`)."""
    found = pc.fill_null(pc.match_substring(etags, "-"), False)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _valid(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)


def stale(
    object_etag: pa.Array | pa.ChunkedArray,
    object_size: pa.Array | pa.ChunkedArray,
    object_time: pa.Array | pa.ChunkedArray,
    source_etag: pa.Array | pa.ChunkedArray,
    source_size: pa.Array | pa.ChunkedArray,
    source_time: pa.Array | pa.ChunkedArray,
) -> np.ndarray:
    """True for each (dataset object, source) pair whose object no longer holds the source's bytes (see the
    module's rules). The arrays are aligned row by row; ETags as S3 lists them (quoted or bare)."""
    a, b = bare_etags(object_etag), bare_etags(source_etag)
    known = _valid(a) & _valid(b)
    sizes_known = _valid(object_size) & _valid(source_size)
    size_a = np.where(sizes_known, _values(pc.fill_null(object_size, 0)), 0).astype(np.int64)
    size_b = np.where(sizes_known, _values(pc.fill_null(source_size, 0)), 0).astype(np.int64)
    other_size = sizes_known & (size_a != size_b)
    object_multipart, source_multipart = is_multipart(a), is_multipart(b)
    multipart = object_multipart | source_multipart
    same_etag = np.asarray(pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False), dtype=bool)
    # single-part on both sides: the ETags are MD5s of the bytes
    by_etag = known & ~multipart & ~same_etag
    # a multipart ETag on either side: the sizes, then the times (the copy older than the source is stale)
    times_known = _valid(object_time) & _valid(source_time)
    t_a = pc.cast(pc.fill_null(pc.cast(object_time, pa.timestamp("us", tz="UTC")), 0), pa.int64())
    t_b = pc.cast(pc.fill_null(pc.cast(source_time, pa.timestamp("us", tz="UTC")), 0), pa.int64())
    older = times_known & (_values(t_a).astype(np.int64) < _values(t_b).astype(np.int64))
    by_time = known & multipart & ~same_etag & older
    # a multipart upload over a single-part source: not the job's copy
    uploaded = known & object_multipart & ~source_multipart
    return other_size | by_etag | by_time | uploaded


def holds_source(object_etag: str | None, object_size: int | None, source_etag: str | None, source_size: int | None):
    """True when a dataset object recorded as (`object_etag`, `object_size`) held the bytes of the source recorded
    as (`source_etag`, `source_size`): the same ETag, or ETags that cannot be compared (a multipart one) and the
    same size. False when either is unknown."""
    if not object_etag or not source_etag or object_size is None or source_size is None:
        return False
    a, b = object_etag.strip('" ').lower(), source_etag.strip('" ').lower()
    if a == b:
        return object_size == source_size
    return ("-" in a or "-" in b) and object_size == source_size
