"""Planning: from the wanted frames and the bucket's current state to change sets (pure, no I/O).

Change sets, each a DataFrame with PLAN_COLUMNS:
- keep:   the frame is already where it should be;
- move:   the frame is in the datasets elsewhere: copy from that dataset object, then delete it;
- copy:   the frame is wanted but in no dataset folder: copy from the source frame;
- delete: a dataset object of a planned episode that is not wanted (or an orphan, when pruning).
Wanted frames with neither a dataset copy nor a source frame are reported as `missing`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .frame_table import FRAME_PATTERN, RARITIES
from .split import assign_datasets, group_keys

PLAN_COLUMNS = ["action", "episode_id", "frame", "src_key", "dst_key"]
ACTIONS = ("keep", "copy", "move", "delete")
INVENTORY_COLUMNS = ["key", "episode_id", "frame", "dataset", "rarity"]
_FRAME_OFFSET = len("TT_S01_E01_FRM-")
_FRAME_LENGTH = len("TT_S01_E01_FRM-00-00-08-12")
#: a dataset file name (matched from the last '/' to the very end: `$` would also match before a final newline)
_DATASET_FILE_RE = re.compile(f"{FRAME_PATTERN}\\.jpg\\Z")


@dataclass(frozen=True)
class KeyLayout:
    """Where source frames and dataset objects live in the bucket."""

    ml_prefix: str
    source_prefix: str
    img_size: str
    datasets: tuple[str, ...]

    def source_folder(self, episode_id: str) -> str:
        """`tuttle_twins/s01e01/default_eng/v1/frames/thumbnails/`."""
        return f"{self.source_prefix}{episode_id.lower()}/default_eng/v1/frames/{self.img_size}/"

    def source_keys(self, episode_ids: pd.Series, frames: pd.Series) -> pd.Series:
        """The source frame key of each (episode_id, frame) pair; the index is `frames`'."""
        # f-strings over plain lists: pandas string concatenation is ~4x slower on a million rows
        head, folder = self.source_prefix, f"/default_eng/v1/frames/{self.img_size}/"
        keys = [f"{head}{e.lower()}{folder}{f}.jpg" for e, f in zip(episode_ids.tolist(), frames.tolist(), strict=True)]
        return pd.Series(keys, index=frames.index, dtype=object)

    def dataset_keys(self, datasets: pd.Series, rarities: pd.Series, frames: pd.Series) -> pd.Series:
        """The dataset object key of each (dataset, rarity, frame) row; the index is `frames`'."""
        head = self.ml_prefix
        rows = zip(datasets.tolist(), rarities.tolist(), frames.tolist(), strict=True)
        return pd.Series([f"{head}{d}/{r}/{f}.jpg" for d, r, f in rows], index=frames.index, dtype=object)

    def dataset_folders(self) -> list[str]:
        """Every `<ML>/<dataset>/<rarity>/` folder the job owns."""
        return [f"{self.ml_prefix}{d}/{r}/" for d in self.datasets for r in RARITIES]

    def parse_dataset_keys(self, keys: Iterable[str]) -> tuple[pd.DataFrame, list[str]]:
        """Split listed ML keys into dataset objects (INVENTORY_COLUMNS) and keys that don't fit the layout."""
        # one plain loop with a dict of the dataset folders and one compiled match per file name: pandas'
        # str.extract of the whole key is ~3x slower on a million keys
        folders = {f"{self.ml_prefix}{d}/{r}/": (d, r) for d in self.datasets for r in RARITIES}
        file_match = _DATASET_FILE_RE.match
        fit_keys: list[str] = []
        frames: list[str] = []
        datasets: list[str] = []
        rarities: list[str] = []
        unexpected: list[str] = []
        for key in keys:
            cut = key.rfind("/") + 1 if isinstance(key, str) else 0
            place = folders.get(key[:cut]) if cut else None
            if place is None or file_match(key, cut) is None:
                unexpected.append(key)
                continue
            fit_keys.append(key)
            frames.append(key[cut : cut + _FRAME_LENGTH])
            datasets.append(place[0])
            rarities.append(place[1])
        inventory = pd.DataFrame(
            {
                "key": fit_keys,
                "episode_id": [frame[3:6] + frame[7:10] for frame in frames],
                "frame": frames,
                "dataset": datasets,
                "rarity": rarities,
            },
            columns=INVENTORY_COLUMNS,
            dtype=object,
        )
        return inventory, unexpected


def frame_seconds(frames: pd.Series) -> pd.Series:
    """Seconds into the episode of each (valid) frame number."""
    o = _FRAME_OFFSET
    hh = frames.str.slice(o, o + 2).astype(np.int64)
    mm = frames.str.slice(o + 3, o + 5).astype(np.int64)
    ss = frames.str.slice(o + 6, o + 8).astype(np.int64)
    return hh * 3600 + mm * 60 + ss


def wanted_frames(frames: pd.DataFrame, shares: Mapping[str, float], seed: str, group_seconds: int = 0) -> pd.DataFrame:
    """Add each classified frame's dataset; `frames` has episode_id, frame, rarity (one row per frame)."""
    frames = frames.reset_index(drop=True)
    seconds = frame_seconds(frames["frame"]) if group_seconds > 0 else None
    keys = group_keys(frames["frame"], frames["episode_id"], seconds, group_seconds)
    out = frames[["episode_id", "frame", "rarity"]].copy()
    out["dataset"] = assign_datasets(keys.tolist(), shares, seed)
    return out


@dataclass
class Plan:
    """The change sets of one run, plus what could not be planned."""

    actions: pd.DataFrame
    #: wanted frames with no dataset copy and no source frame (PLAN_COLUMNS, action 'missing')
    missing: pd.DataFrame
    #: dataset objects of episodes in no manifest (INVENTORY_COLUMNS)
    orphans: pd.DataFrame
    #: episodes that were planned (their dataset objects may be deleted)
    episodes: list[str] = field(default_factory=list)
    #: dataset objects of the planned episodes (and pruned orphans) before the run
    current_count: int = 0
    #: every dataset object listed before the run, all episodes (INVENTORY_COLUMNS)
    current: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INVENTORY_COLUMNS))
    #: the sheets' metadata of the planned frames (episode_id, frame, metadata), for the labels index
    metadata: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["episode_id", "frame", "metadata"]))
    #: the source frames listed this run (episode_id, frame, etag, size), for the dataset version's ETags
    sources: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["episode_id", "frame", "etag", "size"]))

    def of(self, action: str) -> pd.DataFrame:
        """The rows of one action."""
        return self.actions[self.actions["action"] == action]

    def count(self, action: str) -> int:
        return int((self.actions["action"] == action).sum())

    @property
    def writes(self) -> int:
        """S3 objects this plan would write or delete."""
        return self.count("copy") + 2 * self.count("move") + self.count("delete")

    def deletes_leaving(self) -> int:
        """Plain deletes of frames that leave the datasets. An extra copy of a frame that stays (what an
        interrupted move leaves behind) loses nothing, so only these count against the delete guard."""
        staying = self.actions.loc[self.actions["action"] != "delete", "frame"]
        return int((~self.of("delete")["frame"].isin(staying)).sum())

    def deletes_leaving_by_episode(self) -> pd.DataFrame:
        """Per planned episode: `deletes` (as in `deletes_leaving`) and `files` (its dataset objects before the run)."""
        staying = set(self.actions.loc[self.actions["action"] != "delete", "frame"].tolist())
        deletes = self.of("delete")
        leaving = deletes[~_isin(deletes["frame"], staying)]
        planned = set(self.episodes)
        files = self.current[_isin(self.current["episode_id"], planned)].groupby("episode_id").size()
        counts = pd.DataFrame({"deletes": leaving.groupby("episode_id").size(), "files": files})
        counts = counts[counts.index.isin(planned)].fillna(0).astype(int)
        counts.index.name = "episode_id"
        return counts.sort_index()

    def counts_by_episode(self) -> pd.DataFrame:
        """Per episode: keep, copy, move, delete, missing."""
        counts = pd.crosstab(self.actions["episode_id"], self.actions["action"])
        counts = counts.reindex(columns=list(ACTIONS), fill_value=0)
        missing = self.missing.groupby("episode_id").size().rename("missing")
        counts = counts.join(missing, how="outer").fillna(0).astype(int)
        counts = counts.reindex(sorted(set(counts.index) | set(self.episodes)), fill_value=0)
        counts.index.name = "episode_id"
        return counts

    def to_csv_frame(self) -> pd.DataFrame:
        """Every decision as one table: the actions, then the missing sources."""
        return pd.concat([self.actions, self.missing], ignore_index=True)[PLAN_COLUMNS]


def _rows(action: str, frame: pd.DataFrame, src: pd.Series | str, dst: pd.Series | str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "action": action,
            "episode_id": frame["episode_id"].to_numpy(),
            "frame": frame["frame"].to_numpy(),
            "src_key": src.to_numpy() if isinstance(src, pd.Series) else src,
            "dst_key": dst.to_numpy() if isinstance(dst, pd.Series) else dst,
        },
        columns=PLAN_COLUMNS,
    )


def _isin(values: pd.Series, pool: Iterable[str]) -> np.ndarray:
    """`values.isin(pool)` for string columns; a Python set is ~3x faster than pandas' hash table here."""
    members = pool if isinstance(pool, (set, frozenset)) else set(pool)
    return np.fromiter((v in members for v in values.tolist()), dtype=bool, count=len(values))


def plan_changes(
    wanted: pd.DataFrame,
    current: pd.DataFrame,
    sources: pd.DataFrame,
    layout: KeyLayout,
    planned_episodes: Collection[str],
    known_episodes: Collection[str],
    prune_orphans: bool = False,
    held_frames: Collection[str] = (),
    held_episodes: Collection[str] = (),
) -> Plan:
    """Diff the wanted state against the bucket into keep / copy / move / delete.

    - `wanted`: episode_id, frame, rarity, dataset — one row per frame, planned episodes only.
    - `current`: the parsed ML listing (INVENTORY_COLUMNS), all episodes.
    - `sources`: episode_id, frame of every source frame found for the planned episodes.
    - `planned_episodes`: only their dataset objects may be kept, moved or deleted.
    - `known_episodes`: every episode in a manifest; dataset objects of others are orphans.
    - `held_frames`: frames whose sheet rows were rejected; their dataset objects are not deleted.
    - `held_episodes`: episodes with a rejected row that names no frame; none of their objects is a plain delete.
    """
    planned = set(planned_episodes)
    wanted = wanted[wanted["episode_id"].isin(planned)].reset_index(drop=True)
    dst = layout.dataset_keys(wanted["dataset"], wanted["rarity"], wanted["frame"])
    wanted = wanted.assign(dst_key=dst.to_numpy())
    mine = current[current["episode_id"].isin(planned)]

    in_place = _isin(wanted["dst_key"], mine["key"].tolist())
    keep = wanted[in_place]
    pending = wanted[~in_place]

    # a frame already in the datasets elsewhere moves from its first (by key) dataset object
    elsewhere = mine[_isin(mine["frame"], pending["frame"].tolist())]  # sorting only these keeps a nightly plan fast
    first_copy = elsewhere.sort_values("key").drop_duplicates("frame").set_index("frame")["key"]
    move_src = pending["frame"].map(first_copy)
    moves = pending[move_src.notna()]
    unplaced = pending[move_src.isna()]

    has_source = _isin(unplaced["frame"], sources["frame"].tolist())
    copies = unplaced[has_source]
    missing = unplaced[~has_source]

    used = pd.concat([keep["dst_key"], move_src.dropna()])
    deletes = mine[
        ~_isin(mine["key"], used.tolist())
        & ~_isin(mine["frame"], set(held_frames))
        & ~_isin(mine["episode_id"], set(held_episodes))
    ]

    orphans = current[~current["episode_id"].isin(set(known_episodes))].reset_index(drop=True)
    if prune_orphans:
        deletes = pd.concat([deletes, orphans])

    actions = pd.concat(
        [
            _rows("keep", keep, keep["dst_key"], keep["dst_key"]),
            _rows("copy", copies, layout.source_keys(copies["episode_id"], copies["frame"]), copies["dst_key"]),
            _rows("move", moves, move_src[move_src.notna()], moves["dst_key"]),
            _rows("delete", deletes, deletes["key"], ""),
        ],
        ignore_index=True,
    )
    missing_rows = _rows(
        "missing", missing, layout.source_keys(missing["episode_id"], missing["frame"]), missing["dst_key"]
    )
    return Plan(
        actions=actions,
        missing=missing_rows,
        orphans=orphans,
        episodes=sorted(planned),
        current_count=len(mine) + (len(orphans) if prune_orphans else 0),
        current=current,
    )
