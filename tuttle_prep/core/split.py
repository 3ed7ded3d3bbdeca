"""The stable train/validate/test split (pure).

Every frame (or N-second group of frames) gets a number from BLAKE2b of (seed, key): the same key gives the
same number on every run and machine.

- `none`: the number, read as a value in [0, 1), is compared with the cumulative shares of the datasets.
  A frame's dataset depends on the frame alone; each rarity lands in the datasets with binomial noise.
- `rarity` (the default): within each (episode, rarity) stratum the frames are ordered by their number and
  that order is cut at the cumulative counts ⌊n·Sⱼ + φ⌋, where Sⱼ are the cumulative shares and φ ∈ [0, 1)
  is a seeded number of the stratum. Each dataset then holds its share of the stratum to within one frame
  (its count is ⌊n·sⱼ⌋ or ⌈n·sⱼ⌉: the quota property of largest-remainder rounding), which dataset gets a
  remainder frame is drawn by φ (no dataset is favoured, so the catalogue's shares stay unbiased), and the
  cut points never go down when n grows — unlike textbook largest remainder (the Alabama paradox) — so one
  frame added to or removed from a stratum moves at most one other frame per boundary between datasets (D − 1
  with D datasets); a reclassification is a removal from one stratum plus an addition to another: 2·(D − 1).

A frame's dataset depends only on its own episode's sheet, so a run of one episode agrees with a full run.

**Held frames** (`held`): a frame whose sheet row is in doubt keeps its files where they are, and the split
counts it there: it keeps its place in its stratum (at the rarity of the folder it is in), and the other units
fill the stratum's remaining places in hash order, so none of them moves while the row is in doubt, nor when it
is fixed; a group holding such a frame goes whole to the frame's dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .frame_table import RARITIES
from .names import DEFAULT_STRATIFY, STRATIFY_CHOICES  # noqa: F401 - defined there (light), re-exported here

_SCALE = float(2**64)
#: rarest first: of two rarities with as many frames in a group, the rarer is its majority
_RARITY_ORDER = RARITIES
_RARITY_CODE = {r: i for i, r in enumerate(_RARITY_ORDER)}
FRAMES_PER_SECOND = 24


def key_hashes(seed: str, keys: Iterable[str]) -> np.ndarray:
    """BLAKE2b-64 of `seed + NUL + key` for each key, as uint64 (the split's one source of randomness)."""
    seeded = hashlib.blake2b(seed.encode("utf-8") + b"\0", digest_size=8)
    fresh = seeded.copy
    digests = []
    for key in keys:
        h = fresh()
        h.update(key.encode("utf-8"))
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64)


def unit_hash(seed: str, keys: Iterable[str]) -> np.ndarray:
    """Map each key to a uniform float in [0, 1), determined by (seed, key) alone."""
    return key_hashes(seed, keys).astype(np.float64) / _SCALE


def cumulative_shares(shares: Mapping[str, float]) -> np.ndarray:
    """Cumulative shares, exactly 1.0 from the last dataset with a share on (float sums like 0.7+0.2+0.1
    must still cover [0, 1), and a dataset with a zero share must never get a frame)."""
    values = np.asarray([float(v) for v in shares.values()], dtype=np.float64)
    cumulative = np.minimum(np.cumsum(values), 1.0)
    on = np.flatnonzero(values > 0)
    cumulative[on[-1] if len(on) else 0 :] = 1.0
    return cumulative


def assign_index(keys: Iterable[str], shares: Mapping[str, float], seed: str) -> np.ndarray:
    """The dataset index (in `shares` order) of each key, drawn on its own (`none` stratification)."""
    u = unit_hash(seed, keys)
    # side="right": u exactly on a boundary goes up, so a dataset with a zero share never gets a frame
    index = np.searchsorted(cumulative_shares(shares), u, side="right")
    return np.minimum(index, len(shares) - 1).astype(np.int64)


def assign_datasets(keys: Iterable[str], shares: Mapping[str, float], seed: str) -> np.ndarray:
    """Return the dataset name of each key, drawn on its own with the given shares (`none` stratification)."""
    return np.asarray(list(shares), dtype=object)[assign_index(keys, shares, seed)]


def stratum_cuts(sizes: np.ndarray, offsets: np.ndarray, shares: Mapping[str, float]) -> np.ndarray:
    """Cut points ⌊n·Sⱼ + φ⌋ of each stratum (rows) at each inner boundary (columns, D − 1 of them)."""
    inner = cumulative_shares(shares)[:-1]
    cuts = np.floor(sizes[:, None].astype(np.float64) * inner[None, :] + offsets[:, None]).astype(np.int64)
    return np.minimum(cuts, sizes[:, None])


def stratum_ranks(strata: np.ndarray, hashes: np.ndarray, count: int, tiebreak: Sequence[str] | None) -> np.ndarray:
    """Each unit's 0-based rank within its stratum (codes 0..count−1) in the order of the hashes; units with
    equal hashes are ordered by `tiebreak` (their keys), so the ranks never depend on the input order."""
    n = len(strata)
    # one uint64 sort key: the stratum in the top bits, the hash's top bits below (a lexsort costs ~10x more)
    stratum_bits = max(int(count - 1).bit_length(), 1)
    sort_key = (strata.astype(np.uint64) << np.uint64(64 - stratum_bits)) | (hashes >> np.uint64(stratum_bits))
    order = np.argsort(sort_key, kind="quicksort")
    sorted_key = sort_key[order]
    if (sorted_key[1:] == sorted_key[:-1]).any():  # equal truncated hashes: order those by full hash, then key
        names = np.asarray(tiebreak if tiebreak is not None else np.zeros(n), dtype=str)
        order = np.lexsort((names, hashes, strata))
    sizes = np.bincount(strata, minlength=count)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[strata[order]]
    return rank


def free_cuts(cuts: np.ndarray, sizes: np.ndarray, held_strata: np.ndarray, held_index: np.ndarray) -> np.ndarray:
    """The cut points of each stratum's free units, once its held units count in the datasets they are held in.

    A stratum's places are cut at `cuts` as if all its units were free; its held units take places in their
    datasets, and the free units, in rank order, fill the rest: the cut at boundary j drops by the held units
    of datasets 0..j. When no dataset holds more than its places, a free unit lands exactly where it would with
    the held units ranked among them in place, so holding a unit moves no other. (A dataset holding more than
    its places takes them from the datasets after it: the cuts are kept non-decreasing.)
    """
    held = np.zeros((cuts.shape[0], cuts.shape[1] + 1), dtype=np.int64)
    np.add.at(held, (held_strata, held_index), 1)
    below = np.cumsum(held, axis=1)[:, :-1]
    free = sizes - held.sum(axis=1)
    return np.clip(np.maximum.accumulate(cuts - below, axis=1), 0, free[:, None])


def stratified_index(
    strata: np.ndarray,
    hashes: np.ndarray,
    offsets: np.ndarray,
    shares: Mapping[str, float],
    tiebreak: Sequence[str] | None = None,
    held: np.ndarray | None = None,
) -> np.ndarray:
    """The dataset index of each unit: within its stratum (codes 0..m−1), rank by hash, cut at `stratum_cuts`.

    `offsets[s]` is stratum s's φ in [0, 1). `tiebreak` (the units' keys) orders units with equal hashes, so
    the result never depends on the input order. `held[u]` is the dataset index unit u is held in (−1: free):
    it stays there and counts there (`free_cuts`).
    """
    n = len(strata)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    count = len(offsets)
    sizes = np.bincount(strata, minlength=count)
    cuts = stratum_cuts(sizes, offsets, shares)
    pinned = held >= 0 if held is not None else np.zeros(n, dtype=bool)
    if pinned.any():
        cuts = free_cuts(cuts, sizes, strata[pinned], held[pinned])
        # held units are ranked in a stratum of their own, so each free unit's rank counts free units only
        rank = stratum_ranks(np.where(pinned, count, strata), hashes, count + 1, tiebreak)
    else:
        rank = stratum_ranks(strata, hashes, count, tiebreak)
    index = np.zeros(n, dtype=np.int64)
    for column in range(cuts.shape[1]):
        index += rank >= cuts[strata, column]
    if held is not None:
        index[pinned] = held[pinned]
    return index


def majority_rarity(group_codes: np.ndarray, rarity_codes: np.ndarray, groups: int) -> np.ndarray:
    """The code of the most frequent rarity of each group; of equal counts, the rarer (codes: rarest first)."""
    counts = np.zeros((groups, len(_RARITY_ORDER)), dtype=np.int64)
    np.add.at(counts, (group_codes, rarity_codes), 1)
    return counts.argmax(axis=1)  # argmax returns the first (rarest) of equal counts


def held_indices(held: Sequence[str | None] | None, shares: Mapping[str, float], n: int) -> np.ndarray | None:
    """Each frame's held dataset as an index of `shares` (−1: free); None when no frame is held."""
    if held is None:
        return None
    if len(held) != n:
        raise ValueError(f"held has {len(held)} entries for {n} frames")
    position = {name: i for i, name in enumerate(shares)}
    unknown = sorted({h for h in held if h is not None and h not in position})
    if unknown:
        raise ValueError(f"held in a dataset that is not in the split: {unknown[:5]}")
    index = np.asarray([-1 if h is None else position[h] for h in held], dtype=np.int64)
    return index if (index >= 0).any() else None


def held_units(frame_units: np.ndarray, frame_held: np.ndarray, units: int, datasets: int) -> np.ndarray:
    """The dataset each unit (group) is held in: where most of its held frames are (of equal counts the first
    dataset of the split); −1 for a unit without a held frame."""
    counts = np.zeros((units, datasets), dtype=np.int64)
    pinned = frame_held >= 0
    np.add.at(counts, (frame_units[pinned], frame_held[pinned]), 1)
    return np.where(counts.any(axis=1), counts.argmax(axis=1), -1)


def split_frames(
    episode_ids: Sequence[str],
    frames: Sequence[str],
    rarities: Sequence[str],
    shares: Mapping[str, float],
    seed: str,
    group_seconds: int = 0,
    stratify: str = DEFAULT_STRATIFY,
    canonical: Sequence[str] | None = None,
    held: Sequence[str | None] | None = None,
) -> np.ndarray:
    """The dataset name of each frame (one row per frame; `frames` are valid frame numbers).

    `canonical` (TUTTLE_SPLIT_GROUP=content): per frame, the canonical member (smallest frame id) of its
    near-duplicate cluster, "" for a frame in none; it replaces the N-second windows. Each cluster is one unit,
    keyed by its canonical member, stratified (with `rarity`) by its majority rarity in strata of their own
    (`content/<rarity>`: a cluster spans episodes); the other frames are split as without it.

    `held` (one per frame, or None): the dataset a frame is held in because its sheet row is in doubt (its
    `rarities` entry is the rarity folder it is in), or None for a free frame. A held frame stays in its dataset
    and counts there, so the other frames go where they would with it in place; its group goes with it. (With
    `canonical`, a held frame stays where it is but is not counted there: the content split does not pin.)"""
    if canonical is not None:
        datasets = _split_content(episode_ids, frames, rarities, shares, seed, stratify, canonical)
        if held is not None:
            datasets = np.where([h is not None for h in held], np.asarray(list(held), dtype=object), datasets)
        return datasets
    if stratify not in STRATIFY_CHOICES:
        raise ValueError(f"stratify must be one of {', '.join(STRATIFY_CHOICES)}, got {stratify!r}")
    names = np.asarray(list(shares), dtype=object)
    n = len(frames)
    if n == 0:
        return np.asarray([], dtype=object)
    frames = list(frames)
    frame_held = held_indices(held, shares, n)
    episode_codes, episode_names = pd.factorize(pd.Series(episode_ids, dtype=object), sort=True)
    frame_units: np.ndarray | None = None
    if group_seconds > 0:
        # a group is (episode, N-second window), keyed "S01E01/12"; key strings are built once per group
        windows = frame_ticks(frames) // (FRAMES_PER_SECOND * group_seconds)
        _, frame_units = np.unique(episode_codes * (int(windows.max()) + 1) + windows, return_inverse=True)
        frame_units = frame_units.reshape(-1)
        first = np.unique(frame_units, return_index=True)[1]
        unit_episode = episode_codes[first]
        unit_keys = [f"{episode_names[e]}/{w}" for e, w in zip(unit_episode, windows[first].tolist(), strict=True)]
    else:
        unit_episode, unit_keys = episode_codes, frames
    unit_held = frame_held
    if frame_held is not None and frame_units is not None:
        unit_held = held_units(frame_units, frame_held, len(unit_keys), len(names))
    if stratify == "none":
        unit_index = assign_index(unit_keys, shares, seed)
        if unit_held is not None:
            unit_index = np.where(unit_held >= 0, unit_held, unit_index)
        return _frame_datasets(names, unit_index, frame_units, frame_held)
    # a unit (frame or group) is stratified by (episode, rarity), or (episode, majority rarity)
    given, kinds_given = pd.factorize(pd.Series(rarities, dtype=object), sort=False)
    unknown = sorted(set(kinds_given) - set(_RARITY_CODE))
    if unknown or (given < 0).any():
        raise ValueError(f"not a rarity: {unknown[:5] or 'empty'}")
    rarity_codes = np.asarray([_RARITY_CODE[r] for r in kinds_given], dtype=np.int64)[given]
    if frame_units is not None:
        unit_rarity = majority_rarity(frame_units, rarity_codes, len(unit_keys))
    else:
        unit_rarity = rarity_codes
    kinds = len(_RARITY_ORDER)
    strata = unit_episode * kinds + unit_rarity
    stratum_keys = [f"{e}/{r}/remainder" for e in episode_names for r in _RARITY_ORDER]
    offsets = unit_hash(seed, stratum_keys)
    unit_index = stratified_index(
        strata, key_hashes(seed, unit_keys), offsets, shares, tiebreak=unit_keys, held=unit_held
    )
    return _frame_datasets(names, unit_index, frame_units, frame_held)


def _frame_datasets(
    names: np.ndarray, unit_index: np.ndarray, frame_units: np.ndarray | None, frame_held: np.ndarray | None
) -> np.ndarray:
    """Each frame's dataset name: its unit's, but a held frame's own where it is held."""
    index = unit_index if frame_units is None else unit_index[frame_units]
    if frame_held is not None:
        index = np.where(frame_held >= 0, frame_held, index)
    return names[index]


def _rarity_codes(rarities: Sequence[str]) -> np.ndarray:
    given, kinds_given = pd.factorize(pd.Series(rarities, dtype=object), sort=False)
    unknown = sorted(set(kinds_given) - set(_RARITY_CODE))
    if unknown or (given < 0).any():
        raise ValueError(f"not a rarity: {unknown[:5] or 'empty'}")
    return np.asarray([_RARITY_CODE[r] for r in kinds_given], dtype=np.int64)[given]


def _split_content(
    episode_ids: Sequence[str],
    frames: Sequence[str],
    rarities: Sequence[str],
    shares: Mapping[str, float],
    seed: str,
    stratify: str,
    canonical: Sequence[str],
) -> np.ndarray:
    names = np.asarray(list(shares), dtype=object)
    if len(frames) == 0:
        return np.asarray([], dtype=object)
    canon = np.asarray(list(canonical), dtype=object)
    clustered = canon != ""
    unit_of_frame = np.where(clustered, "content/" + canon.astype(str), np.asarray(list(frames), dtype=object))
    units, unit_keys_index = pd.factorize(pd.Series(unit_of_frame, dtype=object), sort=True)
    unit_keys = [str(k) for k in unit_keys_index]
    if stratify == "none":
        return assign_datasets(unit_keys, shares, seed)[units]
    episode_codes, episode_names = pd.factorize(pd.Series(episode_ids, dtype=object), sort=True)
    first = np.unique(units, return_index=True)[1]
    content_code = len(episode_names)  # the clusters' own strata, after the episodes'
    unit_is_cluster = clustered[first]
    unit_episode = np.where(unit_is_cluster, content_code, episode_codes[first])
    unit_rarity = majority_rarity(units, _rarity_codes(rarities), len(unit_keys))
    kinds = len(_RARITY_ORDER)
    strata = unit_episode * kinds + unit_rarity
    stratum_keys = [f"{e}/{r}/remainder" for e in [*episode_names, "content"] for r in _RARITY_ORDER]
    offsets = unit_hash(seed, stratum_keys)
    unit_index = stratified_index(strata, key_hashes(seed, unit_keys), offsets, shares, tiebreak=unit_keys)
    return names[unit_index[units]]


def frame_clock(frames: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(episode code SS·100+EE, ticks = seconds·24 + frame) of each valid frame number, vectorised."""
    raw = np.asarray(frames, dtype="S26").view(np.uint8).reshape(-1, 26)
    d = raw[:, [4, 5, 8, 9, 15, 16, 18, 19, 21, 22, 24, 25]].astype(np.int64) - 48
    episode = (d[:, 0] * 10 + d[:, 1]) * 100 + d[:, 2] * 10 + d[:, 3]
    hh, mm, ss, ff = (d[:, 4 + 2 * i] * 10 + d[:, 5 + 2 * i] for i in range(4))
    return episode, ((hh * 60 + mm) * 60 + ss) * FRAMES_PER_SECOND + ff


def frame_ticks(frames: Sequence[str]) -> np.ndarray:
    """Frames since the start of the episode (seconds·24 + frame within the second)."""
    return frame_clock(frames)[1]
