"""Planning: from the wanted frames and the bucket's current state to change sets (pure, no I/O).

Change sets, each a DataFrame with PLAN_COLUMNS:
- keep:   the frame is already where it should be;
- move:   the frame is in the datasets elsewhere: copy from that dataset object, then delete it;
- copy:   the frame is wanted but in no dataset folder: copy from the source frame;
- delete: a dataset object of a planned episode that is not wanted (or an orphan, when pruning).
Wanted frames with neither a dataset copy nor a source frame are reported as `missing`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import columns as col
from .frame_table import FRAME_PATTERN, RARITIES
from .split import DEFAULT_STRATIFY, split_frames

PLAN_COLUMNS = ["action", "episode_id", "frame", "src_key", "dst_key"]
ACTIONS = ("keep", "copy", "move", "delete")
INVENTORY_COLUMNS = ["key", "episode_id", "frame", "dataset", "rarity"]
_FRAME_LENGTH = len("TT_S01_E01_FRM-00-00-08-12")
#: `<FRAME NUMBER>.jpg`: the last characters of every dataset object key
_FILE_LENGTH = _FRAME_LENGTH + len(".jpg")
#: a whole dataset file name in RE2 (pyarrow.compute): `$` is the end of the text; ASCII digits only, so this
#: accepts exactly the names the frame table's pattern does (a name with `١` is a stranger's, never deleted)
_DATASET_FILE_RE2 = "^" + FRAME_PATTERN + r"\.jpg$"


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
        return col.series(self._source_keys(col.strings(episode_ids), col.strings(frames)), frames.index)

    def _source_keys(self, episode_ids: pa.ChunkedArray, frames: pa.ChunkedArray) -> pa.ChunkedArray:
        folder = f"/default_eng/v1/frames/{self.img_size}/"
        return col.concat(self.source_prefix, pc.utf8_lower(episode_ids), folder, frames, ".jpg")

    def dataset_keys(self, datasets: pd.Series, rarities: pd.Series, frames: pd.Series) -> pd.Series:
        """The dataset object key of each (dataset, rarity, frame) row; the index is `frames`'."""
        keys = self._dataset_keys(col.strings(datasets), col.strings(rarities), col.strings(frames))
        return col.series(keys, frames.index)

    def _dataset_keys(
        self, datasets: pa.ChunkedArray, rarities: pa.ChunkedArray, frames: pa.ChunkedArray
    ) -> pa.ChunkedArray:
        return col.concat(self.ml_prefix, datasets, "/", rarities, "/", frames, ".jpg")

    def dataset_folders(self) -> list[str]:
        """Every `<ML>/<dataset>/<rarity>/` folder the job owns."""
        return [f"{self.ml_prefix}{d}/{r}/" for d in self.datasets for r in RARITIES]

    def parse_dataset_keys(self, keys: Iterable[str] | pa.Array | pa.ChunkedArray) -> tuple[pd.DataFrame, list]:
        """Split listed ML keys into dataset objects (INVENTORY_COLUMNS) and keys that don't fit the layout.

        `keys` is a pyarrow string array (obstore's listing), a pandas Series or any iterable of str. A key fits
        when it is, as a whole, `<ML prefix><dataset>/<rarity>/<FRAME NUMBER>.jpg`; the others (and anything
        that is not a string) are returned as they were given, in their order.
        """
        objects: list | None = None
        try:
            array = col.strings(keys)
        except TypeError:  # something that is not a string: parse the strings, return the rest as they are
            objects = list(keys)
            array = col.strings([k if isinstance(k, str) else None for k in objects])
        # a key fits when it ends in a frame's file name and all before that is one of the dataset folders; a
        # file name has no '/', so this is the same as cutting the key at its last '/'
        ascii_only = col.all_ascii(array)
        folder = col.slice_chars(array, 0, -_FILE_LENGTH, ascii_only)
        place = pc.index_in(folder, value_set=pa.array(self.dataset_folders(), col.TYPE))
        name = col.slice_chars(array, -_FILE_LENGTH, None, ascii_only)
        fits = col.mask(pc.is_valid(place)) & col.mask(pc.match_substring_regex(name, _DATASET_FILE_RE2))
        if fits.all():
            unexpected: list = []
        elif objects is not None:
            unexpected = [objects[i] for i in np.flatnonzero(~fits)]
        else:
            unexpected = array.filter(pa.array(~fits)).to_pylist()
        frames = col.slice_chars(col.take(name, fits), 0, _FRAME_LENGTH, ascii_only)
        place = col.take(place, fits)
        inventory = col.frame(
            {
                "key": col.take(array, fits),
                "episode_id": col.concat(
                    col.slice_chars(frames, 3, 6, ascii_only), col.slice_chars(frames, 7, 10, ascii_only)
                ),
                "frame": frames,
                "dataset": pc.take(pa.array([d for d in self.datasets for _ in RARITIES], col.TYPE), place),
                "rarity": pc.take(pa.array([r for _ in self.datasets for r in RARITIES], col.TYPE), place),
            },
            INVENTORY_COLUMNS,
        )
        return inventory, unexpected


def episodes_with_unplaced_frames(frames: Mapping[str, pd.DataFrame], current: pd.DataFrame) -> list[str]:
    """The episodes (keys of `frames`, each a table with a `frame` column) with a frame in no dataset folder of
    `current` (INVENTORY_COLUMNS): only they need their source folders listed."""
    episodes = [eid for eid, table in frames.items() if len(table)]
    if not episodes:
        return []
    chunks = [col.strings(frames[eid]["frame"]) for eid in episodes]
    wanted, listed = col.chain(*chunks), col.strings(current["frame"])
    wanted_ids, listed_ids = col.frame_ids(wanted), col.frame_ids(listed)
    if wanted_ids is not None and listed_ids is not None:  # integers hash ~5x faster than 26-character strings
        placed = pd.Index(wanted_ids).isin(listed_ids)
    else:
        placed = col.is_in(wanted, listed)
    owner = np.repeat(np.arange(len(episodes)), [len(chunk) for chunk in chunks])
    return [episodes[i] for i in np.unique(owner[~placed])]


def wanted_frames(
    frames: pd.DataFrame,
    shares: Mapping[str, float],
    seed: str,
    group_seconds: int = 0,
    stratify: str = DEFAULT_STRATIFY,
    canonical: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Add each classified frame's dataset; `frames` has episode_id, frame, rarity (one row per frame).

    `stratify`: "rarity" (each rarity of each episode split to within one frame, see `split`) or "none"
    (each frame, or N-second group, drawn on its own). `canonical` (TUTTLE_SPLIT_GROUP=content): frame -> the
    canonical member of its near-duplicate cluster (frames in none are absent): each cluster in one dataset."""
    frames = frames.reset_index(drop=True)
    out = frames[["episode_id", "frame", "rarity"]].copy()
    out["dataset"] = pd.array(
        split_frames(
            frames["episode_id"].tolist(),
            frames["frame"].tolist(),
            frames["rarity"].tolist(),
            shares,
            seed,
            group_seconds,
            stratify,
            None if canonical is None else [canonical.get(f, "") for f in frames["frame"].tolist()],
        ),
        dtype=col.STR,
    )
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
    #: the content hashes known this run (HASH_COLUMNS of core.content, with episode_id), for the version
    content: pd.DataFrame | None = None

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
        is_delete = (self.actions["action"] == "delete").to_numpy(dtype=bool)
        frames = col.strings(self.actions["frame"])
        return int((~col.is_in(col.take(frames, is_delete), col.take(frames, ~is_delete))).sum())

    def deletes_leaving_by_episode(self) -> pd.DataFrame:
        """Per planned episode: `deletes` (as in `deletes_leaving`) and `files` (its dataset objects before the run)."""
        is_delete = (self.actions["action"] == "delete").to_numpy(dtype=bool)
        frames = col.strings(self.actions["frame"])
        deleted = col.take(col.strings(self.actions["episode_id"]), is_delete)
        leaving = ~col.is_in(col.take(frames, is_delete), col.take(frames, ~is_delete))
        planned = col.strings(sorted(set(self.episodes)))
        episodes = col.strings(self.current["episode_id"])
        counts = pd.DataFrame(
            {
                "deletes": _value_counts(col.take(deleted, leaving)),
                "files": _value_counts(col.take(episodes, col.is_in(episodes, planned))),
            }
        )
        counts = counts[counts.index.isin(set(self.episodes))].fillna(0).astype(int)
        counts.index.name = "episode_id"
        return counts.sort_index()

    def counts_by_episode(self) -> pd.DataFrame:
        """Per episode: keep, copy, move, delete, missing."""
        both = (self.actions, self.missing)
        rows = pa.table({name: col.chain(*(col.strings(t[name]) for t in both)) for name in ("episode_id", "action")})
        grouped = rows.group_by(["episode_id", "action"]).aggregate([([], "count_all")]).to_pandas()
        counts = grouped.pivot_table(
            index="episode_id", columns="action", values="count_all", aggfunc="sum", fill_value=0
        ) if len(grouped) else pd.DataFrame()
        names = [*ACTIONS, "missing"]
        index = sorted(set(counts.index) | set(self.episodes))
        counts = counts.reindex(index=index, columns=names, fill_value=0).fillna(0).astype(int)
        counts.index = pd.Index(index, dtype=object, name="episode_id")
        counts.columns = pd.Index(names, dtype=object)
        return counts

    def to_csv_frame(self) -> pd.DataFrame:
        """Every decision as one table: the actions, then the missing sources."""
        return pd.concat([self.actions, self.missing], ignore_index=True)[PLAN_COLUMNS]


def _value_counts(values: pa.ChunkedArray) -> pd.Series:
    """How often each value occurs (one hash pass), as a Series indexed by value."""
    counts = pc.value_counts(values)
    return pd.Series(
        counts.field("counts").to_numpy(zero_copy_only=False).astype(np.int64),
        index=pd.Index(counts.field("values").to_pylist(), dtype=object),
        dtype=np.int64,
    )


def _rows(action: str, columns: dict[str, pa.ChunkedArray], src: pa.ChunkedArray | str, dst: pa.ChunkedArray | str):
    """One action's rows as PLAN_COLUMNS arrays (a constant `src`/`dst` is repeated)."""
    n = len(columns["frame"])
    return {
        "action": col.constant(action, n),
        "episode_id": columns["episode_id"],
        "frame": columns["frame"],
        "src_key": col.constant(src, n) if isinstance(src, str) else src,
        "dst_key": col.constant(dst, n) if isinstance(dst, str) else dst,
    }


def _table(parts: list[dict[str, pa.ChunkedArray | pa.Array]]) -> pd.DataFrame:
    """PLAN_COLUMNS rows of every part, in order; the parts' arrays become chunks (no copy)."""
    chunked = {}
    for name in PLAN_COLUMNS:
        chunks = []
        for part in parts:
            values = part[name]
            chunks.extend(values.chunks if isinstance(values, pa.ChunkedArray) else [values])
        chunked[name] = pa.chunked_array(chunks, type=col.TYPE)
    return col.frame(chunked, PLAN_COLUMNS)


def _select(table: dict[str, pa.ChunkedArray], rows: np.ndarray) -> dict[str, pa.ChunkedArray]:
    return {name: col.take(values, rows) for name, values in table.items()}


def _arrays(frame: pd.DataFrame, names: list[str]) -> dict[str, pa.ChunkedArray]:
    return {name: col.strings(frame[name]) for name in names}


def _codes(*parts: pa.ChunkedArray) -> list[np.ndarray]:
    """Integer codes of the values of several columns, equal values equal codes (one hash pass over all of
    them); numbered by first appearance, nulls are -1."""
    encoded = pc.dictionary_encode(pa.chunked_array([c for part in parts for c in part.chunks], type=col.TYPE))
    chunks = [pc.fill_null(chunk.indices, -1).to_numpy(zero_copy_only=False) for chunk in encoded.chunks]
    codes = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return np.split(codes, np.cumsum([len(part) for part in parts])[:-1])


def _same_place(want: dict[str, pa.ChunkedArray], mine: dict[str, pa.ChunkedArray]):
    """For each dataset object: the row of `want` with its frame (-1 if none) and whether it is that row's
    destination, or None if a frame is wanted twice.

    A dataset object's key is `<ML><dataset>/<rarity>/<frame>.jpg`, so it is a wanted frame's destination
    exactly when frame, dataset and rarity are the same: hashing the frames once replaces two set lookups
    of a million whole keys.
    """
    n = len(want["frame"])
    want_ids, mine_ids = col.frame_ids(want["frame"]), col.frame_ids(mine["frame"])
    if want_ids is not None and mine_ids is not None:  # integers hash ~5x faster than 26-character strings
        by_frame = pd.Index(want_ids)
        if not by_frame.is_unique:
            return None
        wanted_row = by_frame.get_indexer(mine_ids).astype(np.int64)
    else:
        want_frames, mine_frames = _codes(want["frame"], mine["frame"])
        if n and (want_frames[-1] != n - 1 or (want_frames < 0).any()):  # first-appearance codes: unique = 0..n-1
            return None
        wanted_row = np.where((mine_frames >= 0) & (mine_frames < n), mine_frames, -1).astype(np.int64)
    hit = np.flatnonzero(wanted_row >= 0)
    same = np.zeros(len(wanted_row), dtype=bool)
    if len(hit):
        rows = wanted_row[hit]
        want_datasets, mine_datasets = _codes(want["dataset"], mine["dataset"])
        want_rarities, mine_rarities = _codes(want["rarity"], mine["rarity"])
        same[hit] = (mine_datasets[hit] == want_datasets[rows]) & (mine_rarities[hit] == want_rarities[rows])
        same[hit] &= (mine_datasets[hit] >= 0) & (mine_rarities[hit] >= 0)
    return wanted_row, same


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

    Columnar throughout (pyarrow.compute on Arrow-backed columns): set membership is a hash lookup built on the
    smaller side, so a nightly plan of a million frames costs a few passes over the columns.
    """
    planned = col.strings(sorted(set(planned_episodes)))
    want = _arrays(wanted, ["episode_id", "frame", "rarity", "dataset"])
    want = _select(want, col.is_in(want["episode_id"], planned))
    inventory = _arrays(current, INVENTORY_COLUMNS)
    mine = _select(inventory, col.is_in(inventory["episode_id"], planned))

    same_place = _same_place(want, mine)
    if same_place is None:  # a frame wanted twice: compare whole keys
        want["dst_key"] = layout._dataset_keys(want["dataset"], want["rarity"], want["frame"])
        in_place = col.is_in(want["dst_key"], mine["key"])
        kept_objects = col.is_in(mine["key"], want["dst_key"])
        pending_objects = col.is_in(mine["frame"], col.take(want["frame"], ~in_place))
        keep_keys = col.take(want["dst_key"], in_place)
        pending = _select(want, ~in_place)
    else:
        wanted_row, kept_objects = same_place
        in_place = np.zeros(len(want["frame"]), dtype=bool)
        in_place[wanted_row[kept_objects]] = True
        pending_objects = wanted_row >= 0
        pending_objects[pending_objects] = ~in_place[wanted_row[pending_objects]]
        # a frame in place: its key is the dataset object's (no key is built for the frames that stay)
        object_of = np.zeros(len(in_place), dtype=np.int64)
        object_of[wanted_row[kept_objects]] = np.flatnonzero(kept_objects)
        keep_keys = pc.take(mine["key"], pa.array(object_of[in_place]))
        pending = _select(want, ~in_place)
        pending["dst_key"] = layout._dataset_keys(pending["dataset"], pending["rarity"], pending["frame"])
    keep = {name: col.take(want[name], in_place) for name in ("episode_id", "frame")}

    # a frame already in the datasets elsewhere moves from its first (by key) dataset object
    elsewhere = _select(mine, pending_objects)
    by_key = pc.sort_indices(elsewhere["key"])  # only these few are sorted: a nightly plan stays fast
    first = {name: pc.take(values, by_key) for name, values in elsewhere.items()}
    first = _select(first, ~pd.Series(first["frame"], dtype=col.STR).duplicated().to_numpy())
    place = pc.index_in(pending["frame"], value_set=col._one_array(first["frame"]))
    has_copy = col.mask(pc.is_valid(place))
    moves = _select(pending, has_copy)
    move_src = pc.take(first["key"], pc.drop_null(place))
    unplaced = _select(pending, ~has_copy)

    has_source = col.is_in(unplaced["frame"], col.strings(sources["frame"]))
    copies = _select(unplaced, has_source)
    missing = _select(unplaced, ~has_source)

    used = kept_objects | col.is_in(mine["key"], move_src)
    held = col.is_in(mine["frame"], col.strings(sorted(set(held_frames))))
    held |= col.is_in(mine["episode_id"], col.strings(sorted(set(held_episodes))))
    deletes = _select(mine, ~used & ~held)

    orphan_rows = ~col.is_in(inventory["episode_id"], col.strings(sorted(set(known_episodes))))
    orphans = _select(inventory, orphan_rows)
    delete_parts = [_rows("delete", deletes, deletes["key"], "")]
    if prune_orphans:
        delete_parts.append(_rows("delete", orphans, orphans["key"], ""))

    actions = _table(
        [
            _rows("keep", keep, keep_keys, keep_keys),
            _rows("copy", copies, layout._source_keys(copies["episode_id"], copies["frame"]), copies["dst_key"]),
            _rows("move", moves, move_src, moves["dst_key"]),
            *delete_parts,
        ]
    )
    missing_rows = _table(
        [_rows("missing", missing, layout._source_keys(missing["episode_id"], missing["frame"]), missing["dst_key"])]
    )
    mine_count = int(len(mine["key"]))
    return Plan(
        actions=actions,
        missing=missing_rows,
        orphans=col.frame(orphans, INVENTORY_COLUMNS),
        episodes=sorted(set(planned_episodes)),
        current_count=mine_count + (int(orphan_rows.sum()) if prune_orphans else 0),
        current=current,
    )
