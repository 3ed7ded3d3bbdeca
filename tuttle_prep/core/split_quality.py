"""How good a split is for a classifier (pure): near-duplicate leakage and each rarity's shares.

- **Leakage**: at 24 frames a second, neighbouring frames are nearly the same picture. For each dataset
  other than the reference (train), the share of its frames that have a reference frame of the same
  episode within s seconds (|Δt| ≤ s, with t = hh:mm:ss + ff/24). Sort the reference frames by
  (episode, time) once; `searchsorted` finds each frame's neighbours: O(n log n), vectorised.
- **Rarity shares**: each rarity's files per dataset against the target share; the largest deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .frame_table import RARITIES
from .split import FRAMES_PER_SECOND, frame_clock

LEAK_SECONDS = (1, 5, 30)
LEAKAGE_COLUMNS = ["dataset", "seconds", "frames", "leaking", "share"]
RARITY_SHARE_COLUMNS = ["rarity", "dataset", "files", "rarity_files", "share", "target", "deviation", "deviation_files"]
_NONE = np.iinfo(np.int64).max


def nearest_reference_ticks(frames: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """For each frame, the distance in frames (1/24 s) to the nearest `reference` frame of its episode
    (int64 max where that episode has none)."""
    if len(frames) == 0:
        return np.zeros(0, dtype=np.int64)
    episode, ticks = frame_clock(frames)
    query = (episode << 32) | ticks
    if len(reference) == 0:
        return np.full(len(query), _NONE, dtype=np.int64)
    ref_episode, ref_ticks = frame_clock(reference)
    keys = np.sort((ref_episode << 32) | ref_ticks)
    at = np.searchsorted(keys, query)
    after = keys[np.minimum(at, len(keys) - 1)]
    before = keys[np.maximum(at - 1, 0)]
    distance = np.full(len(query), _NONE, dtype=np.int64)
    ok = (at < len(keys)) & ((after >> 32) == episode)
    distance[ok] = after[ok] - query[ok]
    ok = (at > 0) & ((before >> 32) == episode)
    distance[ok] = np.minimum(distance[ok], query[ok] - before[ok])
    return distance


def leakage_table(
    frames: Sequence[str],
    datasets: Sequence[str],
    order: Sequence[str],
    seconds: Sequence[float] = LEAK_SECONDS,
) -> pd.DataFrame:
    """LEAKAGE_COLUMNS: per dataset of `order` after the first (the reference, train) and per threshold,
    how many of its frames have a reference frame of the same episode within that many seconds."""
    frames = np.asarray(frames, dtype=object)
    datasets = np.asarray(datasets, dtype=object)
    reference, others = order[0], list(order[1:])
    ref_frames = frames[datasets == reference]
    rows = []
    for name in others:
        mine = frames[datasets == name]
        distance = nearest_reference_ticks(mine, ref_frames)
        for s in seconds:
            leaking = int((distance <= s * FRAMES_PER_SECOND).sum())
            rows.append((name, s, len(mine), leaking, leaking / len(mine) if len(mine) else 0.0))
    return pd.DataFrame(rows, columns=LEAKAGE_COLUMNS)


def rarity_shares(counts: pd.DataFrame, split: Mapping[str, float]) -> pd.DataFrame:
    """RARITY_SHARE_COLUMNS from `counts` (index: datasets in split order, columns: rarities, values: files).

    `deviation` is share − target (a fraction); `deviation_files` is files − rarity_files × target.
    """
    rows = []
    for rarity in RARITIES:
        column = counts[rarity] if rarity in counts else pd.Series(0, index=counts.index)
        total = int(column.sum())
        for dataset, target in split.items():
            files = int(column.get(dataset, 0))
            share = files / total if total else 0.0
            deviation = share - target if total else 0.0
            rows.append((rarity, dataset, files, total, share, float(target), deviation, files - total * target))
    return pd.DataFrame(rows, columns=RARITY_SHARE_COLUMNS)


def largest_deviation(shares: pd.DataFrame) -> pd.Series | None:
    """The row of `rarity_shares` furthest from its target (None when there are no files)."""
    present = shares[shares["rarity_files"] > 0]
    if present.empty:
        return None
    return present.loc[present["deviation"].abs().idxmax()]
