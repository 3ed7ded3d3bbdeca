"""How good a split is for a classifier (pure): near-duplicate leakage and each rarity's shares.

- **Leakage**: at 24 frames a second, neighbouring frames are nearly the same picture. For each dataset
  other than the training dataset (`train`, or `TUTTLE_TRAIN_DATASET`; wherever it stands in the split), the
  share of its frames that have a training frame of the same episode within s seconds (|Δt| ≤ s, with
  t = hh:mm:ss + ff/24). Sort the training frames by (episode, time) once;
  `searchsorted` finds each frame's neighbours: O(n log n), vectorised.
- **Rarity shares**: each rarity's files per dataset against the target share; the largest deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .frame_table import RARITIES
from .names import DEFAULT_TRAIN_DATASET  # noqa: F401 - defined there (light), re-exported here
from .split import FRAMES_PER_SECOND, frame_clock

LEAK_SECONDS = (1, 5, 30)
#: the dataset the classifier trains on: leakage is always "evaluation frames with a neighbour in it"
LEAKAGE_COLUMNS = ["dataset", "seconds", "frames", "leaking", "share"]
RARITY_SHARE_COLUMNS = ["rarity", "dataset", "files", "rarity_files", "share", "target", "deviation", "deviation_files"]
_NONE = np.iinfo(np.int64).max


def _clock_keys(frames: Sequence[str]) -> np.ndarray:
    """One sortable int64 per frame: episode code in the high bits, frames since its start in the low."""
    if len(frames) == 0:
        return np.zeros(0, dtype=np.int64)
    episode, ticks = frame_clock(frames)
    return (episode << 32) | ticks


def _nearest(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Distance from each query key to the nearest key of `reference` (sorted) with the same episode."""
    distance = np.full(len(query), _NONE, dtype=np.int64)
    if len(query) == 0 or len(reference) == 0:
        return distance
    episode = query >> 32
    at = np.searchsorted(reference, query)
    after = reference[np.minimum(at, len(reference) - 1)]
    before = reference[np.maximum(at - 1, 0)]
    ok = (at < len(reference)) & ((after >> 32) == episode)
    distance[ok] = after[ok] - query[ok]
    ok = (at > 0) & ((before >> 32) == episode)
    distance[ok] = np.minimum(distance[ok], query[ok] - before[ok])
    return distance


def nearest_reference_ticks(frames: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """For each frame, the distance in frames (1/24 s) to the nearest `reference` frame of its episode
    (int64 max where that episode has none)."""
    return _nearest(_clock_keys(frames), np.sort(_clock_keys(reference)))


def leakage_table(
    frames: Sequence[str],
    datasets: Sequence[str],
    order: Sequence[str],
    seconds: Sequence[float] = LEAK_SECONDS,
    train: str = DEFAULT_TRAIN_DATASET,
) -> pd.DataFrame:
    """LEAKAGE_COLUMNS: per evaluation dataset (each of `order` but `train`, in that order) and per threshold,
    how many of its frames have a `train` frame of the same episode within that many seconds.

    `train` is named, never taken from its place in `order` (ValueError if `order` lacks it)."""
    if train not in order:
        raise ValueError(f"the training dataset {train!r} is not one of the datasets {list(order)}")
    keys = _clock_keys(list(frames))
    datasets = np.asarray(datasets, dtype=object)
    reference = np.sort(keys[datasets == train])
    rows = []
    for name in (d for d in order if d != train):
        distance = _nearest(keys[datasets == name], reference)
        for s in seconds:
            leaking = int((distance <= s * FRAMES_PER_SECOND).sum())
            rows.append((name, s, len(distance), leaking, leaking / len(distance) if len(distance) else 0.0))
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


def largest_episode_deviation(inventory: pd.DataFrame, split: Mapping[str, float]) -> dict[str, object] | None:
    """Of every (episode, rarity, dataset), the one whose file count is furthest from its share, in frames.

    With `TUTTLE_SPLIT_STRATIFY=rarity` (and no groups) a bucket in sync is below 1 frame everywhere.
    `inventory` has episode_id, rarity, dataset (one row per file). None when there are no files."""
    if inventory.empty:
        return None
    counts = inventory.groupby(["episode_id", "rarity", "dataset"]).size().unstack("dataset", fill_value=0)
    counts = counts.reindex(columns=list(split), fill_value=0)
    totals = counts.sum(axis=1)
    deviation = counts - np.outer(totals.to_numpy(), np.asarray(list(split.values()), dtype=np.float64))
    where = np.unravel_index(np.abs(deviation.to_numpy()).argmax(), deviation.shape)
    (episode_id, rarity), dataset = deviation.index[where[0]], deviation.columns[where[1]]
    return {
        "episode_id": str(episode_id),
        "rarity": str(rarity),
        "dataset": str(dataset),
        "files": int(counts.iloc[where]),
        "rarity_files": int(totals.iloc[where[0]]),
        "target": float(split[dataset]),
        "deviation_files": float(deviation.iloc[where]),
    }
