"""The stratified split (TUTTLE_SPLIT_STRATIFY=rarity): hypothesis properties and tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.plan import wanted_frames
from tuttle_prep.core.split import FRAMES_PER_SECOND, assign_datasets, split_frames, stratum_cuts, unit_hash

SHARES = {"train": 0.7, "validate": 0.2, "test": 0.1}
SEED = "tuttle-twins-2022"
EPISODES = ("S01E01", "S01E02", "S02E07")


def frame_number(episode_id: str, tick: int) -> str:
    seconds, ff = divmod(tick, FRAMES_PER_SECOND)
    hh, rest = divmod(seconds, 3600)
    mm, ss = divmod(rest, 60)
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-{hh:02d}-{mm:02d}-{ss:02d}-{ff:02d}"


def table(cells: dict[tuple[str, int], str]) -> pd.DataFrame:
    """{(episode_id, tick): rarity} -> the frames a sheet gives (episode_id, frame, rarity)."""
    rows = [(e, frame_number(e, t), r) for (e, t), r in sorted(cells.items())]
    return pd.DataFrame(rows, columns=["episode_id", "frame", "rarity"])


def split(frames: pd.DataFrame, shares=SHARES, seed=SEED, group_seconds=0, stratify="rarity") -> dict[str, str]:
    """{frame: dataset} through the public entry point the plan calls."""
    wanted = wanted_frames(frames, shares, seed, group_seconds, stratify=stratify)
    return dict(zip(wanted["frame"], wanted["dataset"], strict=True))


cells_strategy = st.dictionaries(
    st.tuples(st.sampled_from(EPISODES), st.integers(0, 3000)), st.sampled_from(RARITIES), max_size=300
)


@st.composite
def shares_strategy(draw) -> dict[str, float]:
    weights = draw(st.lists(st.integers(0, 10), min_size=2, max_size=4).filter(lambda w: sum(w) > 0))
    return {f"d{i}": w / sum(weights) for i, w in enumerate(weights)}


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cells=cells_strategy, shares=shares_strategy(), data=st.data())
def test_a_pure_function_of_the_frames_whatever_their_order(cells, shares, data):
    frames = table(cells)
    shuffled = frames.iloc[data.draw(st.permutations(range(len(frames))))] if len(frames) else frames
    assert split(shuffled, shares) == split(frames, shares)


@PROPERTY
@given(cells=cells_strategy, shares=shares_strategy())
def test_each_dataset_holds_its_share_of_each_rarity_of_each_episode_within_one_frame(cells, shares):
    frames = table(cells)
    placed = frames.assign(dataset=frames["frame"].map(split(frames, shares)))
    for (_, _), stratum in placed.groupby(["episode_id", "rarity"]):
        counts = stratum["dataset"].value_counts()
        for dataset, share in shares.items():
            assert abs(counts.get(dataset, 0) - len(stratum) * share) < 1 + 1e-9, (dataset, share, len(stratum))
            if share == 0:
                assert dataset not in counts


@st.composite
def edits(draw):
    """A sheet and the same sheet after k changes (a frame added, removed or reclassified)."""
    before = draw(cells_strategy)
    after = dict(before)
    changes = 0
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["add", "remove", "reclassify"]))
        if kind == "add":
            key = (draw(st.sampled_from(EPISODES)), draw(st.integers(3001, 6000)))
            if key not in after:
                after[key] = draw(st.sampled_from(RARITIES))
                changes += 1
        elif after:
            key = draw(st.sampled_from(sorted(after)))
            if kind == "remove":
                del after[key]
                changes += 1
            else:
                new = draw(st.sampled_from([r for r in RARITIES if r != after[key]]))
                after[key] = new
                changes += 2  # out of one rarity, into another
    return before, after, changes


@PROPERTY
@given(edit=edits(), shares=shares_strategy())
def test_each_change_moves_at_most_one_other_frame_per_boundary(edit, shares):
    before, after, changes = edit
    old, new = split(table(before), shares), split(table(after), shares)
    frame_of = {key: frame_number(*key) for key in set(before) | set(after)}
    untouched = [frame_of[k] for k in before if k in after and after[k] == before[k]]
    moved_others = sum(old[f] != new[f] for f in untouched)
    assert moved_others <= changes * (len(shares) - 1)


def test_an_unchanged_sheet_moves_nothing():
    rng = np.random.default_rng(7)
    cells = {
        (e, int(t)): RARITIES[int(r)]
        for e in EPISODES
        for t, r in zip(range(0, 9000, 3), rng.integers(0, 5, 3000), strict=True)
    }
    assert split(table(cells)) == split(table(dict(reversed(list(cells.items())))))


@PROPERTY
@given(cells=cells_strategy, shares=shares_strategy(), chosen=st.sets(st.sampled_from(EPISODES), min_size=1))
def test_a_filtered_run_agrees_with_a_full_run(cells, shares, chosen):
    frames = table(cells)
    full = split(frames, shares)
    part = split(frames[frames["episode_id"].isin(chosen)], shares)
    assert part == {f: d for f, d in full.items() if f[3:6] + f[7:10] in chosen}


def big_sheet(episodes=EPISODES, per_episode=4000, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weights = [0.02, 0.08, 0.2, 0.5, 0.2]
    cells = {(e, t): RARITIES[int(r)] for e in episodes for t, r in enumerate(rng.choice(5, per_episode, p=weights))}
    return table(cells)


def test_a_new_seed_reshuffles_and_keeps_every_stratum_exact():
    frames = big_sheet()
    before, after = split(frames), split(frames, seed=SEED + "-2")
    changed = np.mean([before[f] != after[f] for f in before])
    # independent draws agree with probability 0.7² + 0.2² + 0.1² = 0.54
    assert 0.40 <= changed <= 0.52
    placed = frames.assign(dataset=frames["frame"].map(after))
    for _, stratum in placed.groupby(["episode_id", "rarity"]):
        counts = stratum["dataset"].value_counts()
        assert all(abs(counts.get(d, 0) - len(stratum) * s) < 1 for d, s in SHARES.items())


def test_a_change_of_shares_moves_only_the_frames_between_the_old_and_new_cut_points():
    frames = big_sheet()
    new_shares = {"train": 0.6, "validate": 0.3, "test": 0.1}
    before, after = split(frames), split(frames, new_shares)
    moved = {f for f in before if before[f] != after[f]}
    assert {(before[f], after[f]) for f in moved} == {("train", "validate")}
    # exactly what the new shares need: per stratum, the growth of validate's count
    need = 0
    for _, stratum in frames.groupby(["episode_id", "rarity"]):
        old_count = sum(before[f] == "validate" for f in stratum["frame"])
        new_count = sum(after[f] == "validate" for f in stratum["frame"])
        need += new_count - old_count
    assert len(moved) == need
    assert 0.09 <= len(moved) / len(frames) <= 0.11


def test_remainder_frames_go_to_each_dataset_in_proportion():
    # 4,000 episodes with a single Legendary frame each: a fixed remainder rule would put all of them in train
    frames = table({(f"S{1 + i // 99:02d}E{1 + i % 99:02d}", 0): "Legendary" for i in range(4000)})
    counts = pd.Series(split(frames)).value_counts(normalize=True)
    for dataset, share in SHARES.items():
        assert abs(counts.get(dataset, 0) - share) < 0.025, counts.to_dict()


def test_a_zero_share_dataset_gets_no_frames():
    frames = big_sheet(per_episode=500)
    got = split(frames, {"train": 0.8, "validate": 0.2, "test": 0.0})
    assert set(got.values()) == {"train", "validate"}
    got = split(frames, {"train": 0.0, "validate": 1.0, "test": 0.0})
    assert set(got.values()) == {"validate"}


def test_cut_points_never_go_down_when_a_stratum_grows():
    # the Alabama paradox of textbook largest remainder would break the movement bound
    sizes = np.arange(0, 500)
    for offset in (0.0, 0.3, 0.999999):
        cuts = stratum_cuts(sizes, np.full(len(sizes), offset), SHARES)
        steps = np.diff(cuts, axis=0)
        assert ((steps == 0) | (steps == 1)).all()


def test_a_small_stratum_by_hand():
    # 10 Common frames of one episode: counts 7/2/1 exactly, in the order of their hashes
    frames = table({("S01E01", t): "Common" for t in range(10)})
    got = split(frames)
    order = sorted(got, key=lambda f: unit_hash(SEED, [f])[0])
    assert [got[f] for f in order] == ["train"] * 7 + ["validate"] * 2 + ["test"]


def test_none_keeps_the_per_frame_hash():
    frames = big_sheet(per_episode=300)
    got = split(frames, stratify="none")
    expected = assign_datasets(frames["frame"].tolist(), SHARES, SEED)
    assert list(map(got.get, frames["frame"])) == list(expected)


def test_an_unknown_stratify_is_an_error():
    with pytest.raises(ValueError, match="stratify"):
        split_frames(["S01E01"], [frame_number("S01E01", 0)], ["Common"], SHARES, SEED, stratify="class")


# ---- groups --------------------------------------------------------------------------------------------


def majority(rarities: pd.Series) -> str:
    """The most frequent rarity; of equal counts, the rarer."""
    counts = rarities.value_counts()
    return min(counts.index, key=lambda r: (-counts[r], RARITIES.index(r)))


def scene_episode(rng: np.random.Generator, episode_id: str, frames: int = 28_800) -> dict[tuple[str, int], str]:
    """An episode as reviewers see one: scenes of 2–30 s, each mostly one rarity (10 % of frames differ)."""
    weights = [0.02, 0.08, 0.2, 0.5, 0.2]
    lengths = rng.integers(2 * 24, 30 * 24, size=frames // 48 + 2)
    codes = np.repeat(rng.choice(5, size=len(lengths), p=weights), lengths)[:frames]
    noise = rng.random(frames) < 0.1
    codes[noise] = rng.choice(5, size=int(noise.sum()), p=weights)
    return {(episode_id, t): RARITIES[c] for t, c in enumerate(codes.tolist())}


@PROPERTY
@given(cells=cells_strategy, seconds=st.integers(1, 40))
def test_groups_stay_whole_and_each_majority_rarity_holds_its_share_of_groups(cells, seconds):
    frames = table(cells)
    got = split(frames, group_seconds=seconds)
    windows = frames.assign(dataset=frames["frame"].map(got), window=[t // (24 * seconds) for (_, t) in sorted(cells)])
    per_group = windows.groupby(["episode_id", "window"])
    assert (per_group["dataset"].nunique() == 1).all()
    # each (episode, majority rarity) holds its share of the groups to within one group
    groups = per_group.agg(dataset=("dataset", "first"), majority=("rarity", majority)).reset_index()
    for _, stratum in groups.groupby(["episode_id", "majority"]):
        counts = stratum["dataset"].value_counts()
        assert all(abs(counts.get(d, 0) - len(stratum) * s) < 1 + 1e-9 for d, s in SHARES.items())


@pytest.mark.parametrize("seconds", [5, 30])
def test_group_tolerance_at_28800_frames_per_episode(seconds):
    """The stated tolerance: a rarity's files in a dataset are within 24·N frames of its share, plus the
    frames that break its groups' majority (its frames in other rarities' groups and the other frames in
    its own groups, times max(share, 1 − share))."""
    rng = np.random.default_rng(seconds)
    for episode in ("S01E01", "S01E02"):
        cells = scene_episode(rng, episode)
        frames = table(cells)
        got = split(frames, group_seconds=seconds)
        placed = frames.assign(
            dataset=frames["frame"].map(got), window=[t // (24 * seconds) for (_, t) in sorted(cells)]
        )
        group_size = 24 * seconds
        placed["majority"] = placed["window"].map(placed.groupby("window")["rarity"].agg(majority))
        for rarity in RARITIES:
            mine = placed[placed["rarity"] == rarity]
            breaking = int((placed["rarity"].eq(rarity) != placed["majority"].eq(rarity)).sum())
            for dataset, share in SHARES.items():
                deviation = abs((mine["dataset"] == dataset).sum() - len(mine) * share)
                assert deviation <= group_size + max(share, 1 - share) * breaking, (rarity, dataset, deviation)


def test_equal_hashes_are_ordered_by_key_so_the_input_order_never_matters():
    # a 64-bit collision practically never happens; force some (and near-collisions that only differ in the
    # low bits the fast sort key drops) and check the cut does not depend on the order of the rows
    from tuttle_prep.core.split import stratified_index

    keys = [f"k{i:03d}" for i in range(40)]
    hashes = np.asarray([7, 7, 7, 2**40, 2**40 + 1, *range(100, 135)], dtype=np.uint64)
    strata = np.zeros(40, dtype=np.int64)
    offsets = np.asarray([0.37])
    first = stratified_index(strata, hashes, offsets, SHARES, tiebreak=keys)
    order = np.random.default_rng(1).permutation(40)
    again = stratified_index(strata[order], hashes[order], offsets, SHARES, tiebreak=[keys[i] for i in order])
    assert dict(zip(keys, first, strict=True)) == {keys[i]: d for i, d in zip(order, again, strict=True)}
    assert np.bincount(first, minlength=3).tolist() == [28, 8, 4]
