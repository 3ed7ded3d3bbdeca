"""Content of the frames (pure): a perceptual hash of each picture, near-duplicate pairs and their clusters.

- **dHash** (Krawetz's difference hash, 64 bits): the picture in grey, shrunk to 9×8, each bit says whether a
  pixel is brighter than its right neighbour. A re-encode, a resize or a brightness shift changes a few bits; a
  different picture about half of them. A JPEG is decoded at reduced size (Pillow's `draft`: the decoder
  skips the DCT detail it does not need, 1/8 of the side at most), which makes it ~10× cheaper than a full
  decode. Pillow and numpy only: `imagehash` would bring scipy and PyWavelets for the same 20 lines.
- **Pairs within Hamming distance k**, exact: multi-index hashing (Norouzi et al.). Cut the 64 bits into m
  blocks; two hashes within k differ by at most ⌊k/m⌋ bits in at least one block (pigeonhole; m = k + 1 gives
  exact block matches). Each block is a sorted table; a hash's candidates are the hashes whose block is within
  ⌊k/m⌋ bits of its own, verified on all 64 bits. m is chosen per call from the expected candidate count.
  A pair is taken only from the first block it qualifies in, so it is found once.
- **Clusters**: connected components of the pairs (union-find by label propagation with pointer jumping, on
  numpy); a cluster's label is its smallest index, i.e. its canonical member when the rows are sorted.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from .names import DEFAULT_DISTANCE  # noqa: F401 - defined there (light), re-exported here

HASH_BITS = 64
#: candidate pairs a block search builds at once (16 bytes each)
_CHUNK_PAIRS = 2_000_000
_ONE = np.uint64(1)


class UndecodableImage(ValueError):
    """The bytes are no picture Pillow can decode (the message says why)."""


def dhash_image(image: Image.Image) -> int:
    """The 64-bit dHash of a decoded picture (row-major, bit 63 first: left pixel brighter than right)."""
    grey = image.convert("L").resize((9, 8), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, :-1] > pixels[:, 1:]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def dhash_bytes(data: bytes) -> int:
    """The dHash of an encoded picture (JPEG decoded at reduced size); UndecodableImage if it is none."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                image.draft("L", (36, 32))  # ≥ 4× the 9×8 grid: the box filter still averages 16+ pixels a cell
            image.load()
            return dhash_image(image)
    except UnidentifiedImageError:  # Pillow's text names the BytesIO's memory address: not the same twice
        raise UndecodableImage("not an image file Pillow knows") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UndecodableImage(str(exc) or type(exc).__name__) from None


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 arrays (elementwise)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _blocks(m: int) -> list[tuple[int, int]]:
    """(shift, width) of m blocks covering 64 bits, widths as equal as possible."""
    widths = [HASH_BITS // m + (1 if i < HASH_BITS % m else 0) for i in range(m)]
    out, shift = [], HASH_BITS
    for w in widths:
        shift -= w
        out.append((shift, w))
    return out


def _cost(n: int, k: int, m: int) -> float:
    """Expected work of `near_pairs` with m blocks on n uniform hashes: per table a sort of n keys (~3 units a
    key) and its equal-key candidates (~1 unit each)."""
    t = m - k
    tables = math.comb(m, t)
    bits = HASH_BITS * t / m
    return tables * (3.0 * n + n * n / 2.0 ** (bits + 1))


def choose_blocks(n: int, k: int) -> int:
    """The number of blocks m (k+1 .. 64) with the least expected work for n hashes at distance k."""
    candidates = [m for m in range(k + 1, min(HASH_BITS, k + 12) + 1) if math.comb(m, m - k) <= 5_000]
    return min(candidates, key=lambda m: _cost(max(n, 2), k, m))


def _group_pairs(sorted_keys: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(p, q) positions p < q of `sorted_keys` with equal keys, a bounded chunk at a time."""
    n = len(sorted_keys)
    if n < 2:
        return
    boundary = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    ends = np.repeat(np.append(boundary, n), np.diff(np.concatenate(([0], boundary, [n]))))
    counts = ends - np.arange(n) - 1  # partners after each position in its group
    rows = np.flatnonzero(counts)
    if len(rows) == 0:
        return
    counts = counts[rows]
    cumulative = np.cumsum(counts)
    start = 0
    while start < len(rows):
        base = cumulative[start - 1] if start else 0
        stop = max(int(np.searchsorted(cumulative, base + _CHUNK_PAIRS, "right")), start + 1)
        c = counts[start:stop]
        left = np.repeat(rows[start:stop], c)
        step = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        yield left, left + 1 + step
        start = stop


def iter_near_pairs(hashes: np.ndarray, k: int, blocks: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every pair (i < j) of `hashes` (uint64) within Hamming distance k, each once, in chunks (unordered).

    Exact for any k: with m > k blocks, two hashes within k bits agree exactly on at least m − k blocks, so one
    table per combination of m − k blocks (keyed by those blocks' bits) holds every such pair under one key
    (m = k + 1: the k + 1 blocks of the pigeonhole, one table each). A candidate is kept if its full distance
    is within k and the table is the first combination of blocks it agrees on (the m − k lowest blocks it
    agrees on), so each pair is found exactly once. Memory stays bounded: a chunk holds ≤ 2 M candidates.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n < 2 or k < 0:
        return
    if k >= HASH_BITS:
        i, j = np.triu_indices(n, 1)
        yield i.astype(np.int64), j.astype(np.int64)
        return
    m = blocks or choose_blocks(n, k)
    if m <= k:
        raise ValueError(f"{m} blocks cannot find pairs within {k} bits (need more than {k})")
    t = m - k
    layout = _blocks(m)
    values = [(hashes >> np.uint64(s)) & np.uint64((1 << w) - 1) for s, w in layout]
    for combo in itertools.combinations(range(m), t):
        key = np.zeros(n, dtype=np.uint64)
        for b in combo:
            key = (key << np.uint64(layout[b][1])) | values[b]
        order = np.argsort(key, kind="stable").astype(np.int64)
        for p, q in _group_pairs(key[order]):
            a, b_ = order[p], order[q]
            left, right = np.minimum(a, b_), np.maximum(a, b_)
            close = hamming(hashes[left], hashes[right]) <= k
            left, right = left[close], right[close]
            # the first t blocks the pair agrees on must be this combination
            first = np.ones(len(left), dtype=bool)
            for x in range(combo[-1]):
                if x not in combo:  # another block agreeing below the combination's last: an earlier table
                    first &= values[x][left] != values[x][right]
            if first.any():
                yield left[first], right[first]


def near_pairs(hashes: np.ndarray, k: int, blocks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of `hashes` within Hamming distance k, each once, sorted by (i, j)."""
    chunks = list(iter_near_pairs(hashes, k, blocks))
    if not chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.concatenate([c[0] for c in chunks])
    j = np.concatenate([c[1] for c in chunks])
    order = np.lexsort((j, i))
    return i[order], j[order]


def _union(labels: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Join the components of each pair; `labels` (every entry a root) comes back with every entry a root."""
    while True:
        li, lj = labels[i], labels[j]
        changed = li != lj
        if not changed.any():
            return labels
        low = np.minimum(li[changed], lj[changed])
        # each root points at the smallest root it was seen with, then every row follows its chain to the end
        np.minimum.at(labels, li[changed], low)
        np.minimum.at(labels, lj[changed], low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped


def _table(
    values: list[np.ndarray], layout: list[tuple[int, int]], combo: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(order, sorted keys) of one table: the rows sorted by the bits of the blocks in `combo`. Key and row
    index are packed into one uint64 and sorted unstably (several times faster than a stable argsort); equal
    keys come out in row order, as the index is the low bits."""
    n = len(values[0])
    index_bits = max(int(n - 1).bit_length(), 1)
    width = sum(layout[b][1] for b in combo)
    key = np.zeros(n, dtype=np.uint64)
    for b in combo:
        key = (key << np.uint64(layout[b][1])) | values[b]
    if width + index_bits <= 64:
        packed = np.sort((key << np.uint64(index_bits)) | np.arange(n, dtype=np.uint64))
        return (packed & np.uint64((1 << index_bits) - 1)).astype(np.int64), packed >> np.uint64(index_bits)
    order = np.argsort(key, kind="stable").astype(np.int64)
    return order, key[order]


def _candidates(sorted_keys: np.ndarray) -> int:
    """Pairs of equal keys in a sorted table."""
    starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
    sizes = np.diff(np.append(starts, len(sorted_keys))).astype(np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def _measured_blocks(distinct: np.ndarray, k: int) -> int:
    """The number of blocks with the least work on these very hashes: for m = k+1 .. k+4, one table is built
    and its candidates counted (clustered hashes fill some keys far more than uniform ones would)."""
    best, best_cost = k + 1, math.inf
    n = len(distinct)
    for m in range(k + 1, min(HASH_BITS, k + 4) + 1):
        tables = math.comb(m, m - k)
        if tables > 2_000:
            break
        layout = _blocks(m)
        values = [(distinct >> np.uint64(s)) & np.uint64((1 << w) - 1) for s, w in layout]
        _, sorted_keys = _table(values, layout, tuple(range(m - k)))
        cost = tables * (2.0 * n + 4.0 * _candidates(sorted_keys))
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def near_duplicate_clusters(hashes: np.ndarray, k: int, blocks: int | None = None) -> np.ndarray:
    """The cluster of each hash: connected components of "within k bits", labelled by their smallest index.

    The tables of `iter_near_pairs`, with what connectivity allows: equal hashes are one value (animation holds
    a drawing over consecutive frames), a table's key group whose members are all in one component already is
    skipped, a candidate pair already in one component is not verified, and components are joined table by
    table (no list of all pairs is kept). The number of blocks is chosen on the hashes themselves. Exact: every
    pair within k joins its two components.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n == 0:
        return np.zeros(0, np.int64)
    distinct, inverse = np.unique(hashes, return_inverse=True)
    d = len(distinct)
    labels = np.arange(d, dtype=np.int64)
    if d > 1 and 0 <= k < HASH_BITS:
        m = blocks or (_measured_blocks(distinct, k) if d > 50_000 else choose_blocks(d, k))
        layout = _blocks(m)
        values = [(distinct >> np.uint64(s)) & np.uint64((1 << w) - 1) for s, w in layout]
        for combo in itertools.combinations(range(m), m - k):
            order, sorted_keys = _table(values, layout, combo)
            # groups of equal keys with two or more components in them: the only ones that can join any
            starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
            member_labels = labels[order]
            low = np.minimum.reduceat(member_labels, starts)
            high = np.maximum.reduceat(member_labels, starts)
            wanted = low != high
            if not wanted.any():
                continue
            keep = np.repeat(wanted, np.diff(np.append(starts, d)))
            sub_order = order[keep]
            for p, q in _group_pairs(sorted_keys[keep]):
                a, b_ = sub_order[p], sub_order[q]
                apart = labels[a] != labels[b_]
                a, b_ = a[apart], b_[apart]
                close = hamming(distinct[a], distinct[b_]) <= k
                if close.any():
                    labels = _union(labels, a[close], b_[close])
    elif d > 1 and k >= HASH_BITS:
        labels[:] = 0
    component = labels[inverse.reshape(-1)]
    smallest = np.full(d, n, dtype=np.int64)
    np.minimum.at(smallest, component, np.arange(n, dtype=np.int64))
    return smallest[component]


def cluster_labels(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The connected component of each of n rows given pairs (i, j): the smallest row index in it."""
    labels = np.arange(n, dtype=np.int64)
    if len(i) == 0:
        return labels
    return _union(labels, np.asarray(i, np.int64), np.asarray(j, np.int64))


# ---- the hash store: one Parquet table per episode under `<ML prefix>_content/` ---------------------------

CONTENT_FOLDER = "_content/"
#: frame, its source object (key, ETag without quotes), the dHash (null when the object is no picture), why not
HASH_COLUMNS = ["frame", "source_key", "source_etag", "hash", "problem"]
_HASH_SCHEMA = pa.schema(
    [
        ("frame", pa.string()),
        ("source_key", pa.string()),
        ("source_etag", pa.string()),
        ("hash", pa.uint64()),
        ("problem", pa.string()),
    ]
)


def content_prefix(ml_prefix: str) -> str:
    """`tuttle_twins/ML/_content/`."""
    return f"{ml_prefix}{CONTENT_FOLDER}"


def content_key(ml_prefix: str, episode_id: str) -> str:
    """`tuttle_twins/ML/_content/S01E01.parquet`: the hashes of an episode's source frames."""
    return f"{content_prefix(ml_prefix)}{episode_id}.parquet"


def episode_of_content_key(key: str, ml_prefix: str) -> str | None:
    """The episode id a hash store key names, parsed whole (`S01E01`), or None."""
    name = key[len(content_prefix(ml_prefix)) :] if key.startswith(content_prefix(ml_prefix)) else ""
    episode = name.removesuffix(".parquet")
    ok = len(episode) == 6 and name.endswith(".parquet") and episode[0] == "S" and episode[3] == "E"
    return episode if ok and all(c in "0123456789" for c in episode[1:3] + episode[4:6]) else None


def empty_hashes() -> pd.DataFrame:
    """A hash table with no rows."""
    return hashes_frame([], [], [], [], [])


def hashes_frame(
    frames: Sequence[str],
    keys: Sequence[str],
    etags: Sequence[str],
    hashes: Sequence[int | None],
    problems: Sequence[str | None],
) -> pd.DataFrame:
    """HASH_COLUMNS as a DataFrame (hash: nullable UInt64)."""
    return pd.DataFrame(
        {
            "frame": pd.Series(list(frames), dtype=object),
            "source_key": pd.Series(list(keys), dtype=object),
            "source_etag": pd.Series(list(etags), dtype=object),
            "hash": pd.array(list(hashes), dtype="UInt64"),
            "problem": pd.Series(list(problems), dtype=object),
        }
    )


def hashes_to_parquet(table: pd.DataFrame) -> bytes:
    """The hash store object's bytes (zstd Parquet, sorted by frame)."""
    table = table.sort_values("frame", kind="stable")
    arrow = pa.Table.from_pandas(table[HASH_COLUMNS], schema=_HASH_SCHEMA, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(arrow, sink, compression="zstd")
    return sink.getvalue()


def hashes_from_parquet(data: bytes, where: str) -> pd.DataFrame:
    """A hash store object read back; ValueError naming `where` when it is not one. Rows whose frame or key is
    not a string, or whose hash is missing without a problem, are dropped (nothing read back is trusted)."""
    try:
        arrow = pq.read_table(io.BytesIO(data))
        arrow = pa.table({f.name: arrow[f.name].cast(f.type) for f in _HASH_SCHEMA})
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{where}: not a content hash table ({exc})") from None
    table = arrow.to_pandas(types_mapper={pa.uint64(): pd.UInt64Dtype()}.get)
    good = table["frame"].notna() & table["source_key"].notna() & table["source_etag"].notna()
    good &= table["hash"].notna() | table["problem"].notna()
    return table[good].reset_index(drop=True)


def to_hash(listed: pd.DataFrame, stored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `listed` (frame, source_key, source_etag) into the rows whose (key, ETag) `stored` already hashed
    (returned with their stored hash and problem) and those to fetch and hash."""
    known = stored.drop_duplicates(["source_key", "source_etag"])
    merged = listed[["frame", "source_key", "source_etag"]].merge(
        known[["source_key", "source_etag", "hash", "problem"]],
        on=["source_key", "source_etag"],
        how="left",
        indicator=True,
    )
    done = merged["_merge"] == "both"
    kept = merged[done].drop(columns="_merge").reset_index(drop=True)
    return kept, listed[~done.to_numpy()].reset_index(drop=True)


def canonical_members(frames: Sequence[str], hashes: np.ndarray, k: int) -> dict[str, str]:
    """frame -> the smallest frame id of its near-duplicate cluster, for frames in a cluster of two or more
    (`frames` unique; the clusters of all of them, whatever the run reads of the sheets)."""
    order = np.argsort(np.asarray(frames, dtype=object), kind="stable")
    names = np.asarray(frames, dtype=object)[order]
    labels = near_duplicate_clusters(np.asarray(hashes, dtype=np.uint64)[order], k)
    sizes = np.bincount(labels, minlength=len(names))
    grouped = np.flatnonzero(sizes[labels] > 1)
    return dict(zip(names[grouped].tolist(), names[labels[grouped]].tolist(), strict=True))
