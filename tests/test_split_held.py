"""Frames in doubt (issue 21.5): the split counts each held frame where it is (hypothesis, pure core).

A held frame is one whose sheet row is in doubt (a FRAME NUMBER cleared, a rarity mistyped): its files stay
where they are. `wanted_frames(..., held=...)` counts it there, so the other frames of its episode go exactly
where they went with its row intact, and a group holding it goes with it whole.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_split_stratified import EPISODES, SEED, SHARES, cells_strategy, frame_number, shares_strategy, table

from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.plan import HELD_COLUMNS, held_in_place, split_holding_in_place, wanted_frames
from tuttle_prep.core.split import FRAMES_PER_SECOND, stratum_cuts, unit_hash

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def placed(frames: pd.DataFrame, shares, group_seconds=0, stratify="rarity", held=None) -> dict[str, str]:
    wanted = wanted_frames(frames, shares, SEED, group_seconds, stratify=stratify, held=held)
    return dict(zip(wanted["frame"], wanted["dataset"], strict=True))


def split_in_doubt(frames: pd.DataFrame, doubt: set[str], shares, group_seconds=0, stratify="rarity"):
    """(where every frame was with all rows intact, where the others go while `doubt` is held in place)."""
    before = wanted_frames(frames, shares, SEED, group_seconds, stratify=stratify)
    held = before[before["frame"].isin(doubt)][HELD_COLUMNS]
    rest = frames[~frames["frame"].isin(doubt)]
    during = placed(rest, shares, group_seconds, stratify, held)
    return dict(zip(before["frame"], before["dataset"], strict=True)), during


@PROPERTY
@given(
    cells=cells_strategy,
    shares=shares_strategy(),
    group_seconds=st.sampled_from([0, 0, 1, 5, 30]),
    stratify=st.sampled_from(["rarity", "rarity", "none"]),
    data=st.data(),
)
def test_frames_in_doubt_held_where_they_are_move_no_other_frame(cells, shares, group_seconds, stratify, data):
    frames = table(cells)
    doubt = data.draw(st.sets(st.sampled_from(sorted(frames["frame"])), max_size=8)) if len(frames) else set()
    before, during = split_in_doubt(frames, doubt, shares, group_seconds, stratify)
    assert during == {f: d for f, d in before.items() if f not in doubt}


@PROPERTY
@given(cells=cells_strategy, shares=shares_strategy(), seconds=st.sampled_from([1, 5, 30]), data=st.data())
def test_a_group_holding_a_frame_in_doubt_stays_whole_with_it(cells, shares, seconds, data):
    # the held frames sit where an earlier split put them, perhaps under other settings: their groups follow them
    frames = table(cells)
    if frames.empty:
        return
    doubt = data.draw(st.sets(st.sampled_from(sorted(frames["frame"])), min_size=1, max_size=8))
    names = list(shares)
    held = frames[frames["frame"].isin(doubt)].assign(
        dataset=[data.draw(st.sampled_from(names)) for _ in range(len(doubt))]
    )
    rest = frames[~frames["frame"].isin(doubt)]
    during = placed(rest, shares, seconds, "rarity", held[HELD_COLUMNS])
    window = {f: (f[3:10], _tick(f) // (FRAMES_PER_SECOND * seconds)) for f in frames["frame"]}
    held_in = {}
    for row in held.itertuples():
        held_in.setdefault(window[row.frame], []).append(row.dataset)
    for frame, dataset in during.items():
        if window[frame] in held_in:
            where = held_in[window[frame]]
            assert dataset == max(names, key=lambda d: (where.count(d), -names.index(d)))


@PROPERTY
@given(cells=cells_strategy, shares=shares_strategy(), data=st.data())
def test_held_frames_count_in_their_datasets_quota(cells, shares, data):
    # held frames anywhere (the bucket not in sync): while no dataset holds more of a stratum than its share
    # gives it, each dataset still holds exactly its places, the held frames counted where they are
    frames = table(cells)
    if frames.empty:
        return
    doubt = data.draw(st.sets(st.sampled_from(sorted(frames["frame"])), min_size=1, max_size=10))
    names = list(shares)
    held = frames[frames["frame"].isin(doubt)].assign(
        dataset=[data.draw(st.sampled_from(names)) for _ in range(len(doubt))]
    )
    rest = frames[~frames["frame"].isin(doubt)]
    during = placed(rest, shares, held=held[HELD_COLUMNS])
    everything = pd.concat([rest.assign(dataset=rest["frame"].map(during)), held], ignore_index=True)
    for (episode_id, rarity), stratum in everything.groupby(["episode_id", "rarity"]):
        phi = unit_hash(SEED, [f"{episode_id}/{rarity}/remainder"])
        cuts = stratum_cuts(np.asarray([len(stratum)]), phi, shares)[0]
        places = np.diff(np.concatenate(([0], cuts, [len(stratum)])))
        in_doubt = stratum[stratum["frame"].isin(doubt)]["dataset"].value_counts()
        if all(in_doubt.get(d, 0) <= places[i] for i, d in enumerate(names)):
            counts = stratum["dataset"].value_counts()
            assert [int(counts.get(d, 0)) for d in names] == places.tolist()


def _tick(frame: str) -> int:
    hh, mm, ss, ff = (int(x) for x in frame[-11:].split("-"))
    return ((hh * 60 + mm) * 60 + ss) * FRAMES_PER_SECOND + ff


def test_held_in_place_finds_the_frames_in_doubt_where_they_are():
    layout_keys = {
        "TT_S01_E01_FRM-00-00-00-00": ["train/Common"],
        "TT_S01_E01_FRM-00-00-00-01": ["validate/Rare", "train/Rare"],  # two copies: the first by key
        "TT_S01_E01_FRM-00-00-00-02": ["test/Trash"],  # in the sheet: not in doubt
        "TT_S01_E02_FRM-00-00-00-00": ["train/Legendary"],  # its episode has a row naming no frame
        "TT_S01_E02_FRM-00-00-00-01": ["test/Common"],  # in the sheet
        "TT_S01_E03_FRM-00-00-00-00": ["train/Common"],  # an episode not planned
    }
    rows = [
        (f"tuttle_twins/ML/{place}/{frame}.jpg", frame[3:6] + frame[7:10], frame, *place.split("/"))
        for frame, places in layout_keys.items()
        for place in places
    ]
    current = pd.DataFrame(rows, columns=["key", "episode_id", "frame", "dataset", "rarity"])
    sheet = pd.DataFrame(
        [("S01E01", "TT_S01_E01_FRM-00-00-00-02", "Trash"), ("S01E02", "TT_S01_E02_FRM-00-00-00-01", "Common")],
        columns=["episode_id", "frame", "rarity"],
    )
    held = {"TT_S01_E01_FRM-00-00-00-00", "TT_S01_E01_FRM-00-00-00-01", "TT_S01_E03_FRM-00-00-00-00"}
    got = held_in_place(current, sheet, held, {"S01E02", "S01E03"})
    assert got.to_dict(orient="records") == [
        {"episode_id": "S01E01", "frame": "TT_S01_E01_FRM-00-00-00-00", "rarity": "Common", "dataset": "train"},
        {"episode_id": "S01E01", "frame": "TT_S01_E01_FRM-00-00-00-01", "rarity": "Rare", "dataset": "train"},
        {"episode_id": "S01E02", "frame": "TT_S01_E02_FRM-00-00-00-00", "rarity": "Legendary", "dataset": "train"},
    ]
    assert held_in_place(current, sheet).empty


def test_only_the_episodes_holding_frames_are_split_again():
    cells = {(e, t): RARITIES[(t * 7) % 5] for e in EPISODES for t in range(0, 400, 3)}
    frames = table(cells)
    wanted = wanted_frames(frames, SHARES, SEED)
    doubt = wanted[wanted["episode_id"] == "S01E02"].head(5)
    rest = frames[~frames["frame"].isin(set(doubt["frame"]))]
    again = split_holding_in_place(wanted_frames(rest, SHARES, SEED), rest, doubt[HELD_COLUMNS], SHARES, SEED)
    assert sorted(again["frame"]) == sorted(rest["frame"])
    assert dict(zip(again["frame"], again["dataset"], strict=True)) == {
        f: d for f, d in zip(wanted["frame"], wanted["dataset"], strict=True) if f in set(rest["frame"])
    }
    assert frame_number("S01E01", 0) in set(again["frame"])
