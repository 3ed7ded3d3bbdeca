"""The synthetic catalogue every benchmark builds: episodes, frame numbers and sheets.

numpy and pandas only: `bench_plan.py`'s in-memory plan imports this without boto3, which would otherwise count
in its peak RSS.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tuttle_prep.core.frame_table import RARITIES

EPISODE_FRAMES = 28_800  # 20 min x 60 s x 24 fps
EPISODES_PER_SEASON = 13
CHANGED_SHARE = 0.05
HEADER = [
    "S3_BASE_URI",
    "ROW_INDEX",
    "FRAME NUMBER",
    "UNSUPERVISED CLASSIFICATION",
    "SUPERVISED CLASSIFICATION",
    "JONNY's RECLASSIFICATION",
    "METADATA",
]


def catalogue(frames: int, episode_frames: int = EPISODE_FRAMES) -> list[tuple[str, int]]:
    """(episode_id, frame count) of a catalogue of `frames` frames, 13 episodes per season."""
    episodes = []
    for index in range(math.ceil(frames / episode_frames)):
        season, episode = divmod(index, EPISODES_PER_SEASON)
        episodes.append((f"S{season + 1:02d}E{episode + 1:02d}", min(episode_frames, frames - index * episode_frames)))
    return episodes


def frame_numbers(episode_id: str, count: int) -> list[str]:
    """The first `count` frame numbers of an episode, 24 per second."""
    second, frame = np.divmod(np.arange(count), 24)
    head = f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM"
    return [
        f"{head}-{h:02d}-{m:02d}-{s:02d}-{f:02d}"
        for h, m, s, f in zip(
            (second // 3600).tolist(), (second // 60 % 60).tolist(), (second % 60).tolist(), frame.tolist(), strict=True
        )
    ]


def sheet_table(episode_id: str, count: int, edited: bool) -> pd.DataFrame:
    """An episode sheet as read from a CSV export; `edited` changes 5 % of its rows.

    Of the edited rows 60 % get another rarity from JONNY (moves), 20 % lose every rarity (deletes), 20 %
    were unclassified and get one (copies). Unedited sheets leave that last 20 % unclassified.
    """
    rng = np.random.default_rng(int(episode_id[1:3]) * 100 + int(episode_id[4:6]))
    rarities = np.array(RARITIES, dtype=object)
    row = np.arange(count)
    unsupervised = rarities[rng.integers(0, len(RARITIES), count)]
    supervised = np.where(row % 3 == 0, rarities[(row * 3) % len(RARITIES)], "").astype(object)
    jonny = np.where(row % 11 == 0, "Rare", "").astype(object)
    changed = rng.permutation(count)[: int(count * CHANGED_SHARE)]
    moved, cleared, added = np.split(changed, [int(len(changed) * 0.6), int(len(changed) * 0.8)])
    if edited:
        current = np.where(
            jonny[moved] != "", jonny[moved], np.where(supervised[moved] != "", supervised[moved], unsupervised[moved])
        )
        jonny[moved] = np.where(current == "Legendary", "Trash", "Legendary")
        unsupervised[cleared] = supervised[cleared] = jonny[cleared] = ""
    else:
        unsupervised[added] = supervised[added] = jonny[added] = ""
    return pd.DataFrame(
        {
            HEADER[0]: "media.angel-nft.com/tuttle_twins/",
            HEADER[1]: [str(i) for i in range(count)],
            HEADER[2]: frame_numbers(episode_id, count),
            HEADER[3]: unsupervised,
            HEADER[4]: supervised,
            HEADER[5]: jonny,
            HEADER[6]: "[Emily, Ethan]",
        },
        dtype=object,
    )
