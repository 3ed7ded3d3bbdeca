"""Leakage and per-rarity shares on hand-built frame sets whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.plan import wanted_frames
from tuttle_prep.core.split_quality import (
    largest_deviation,
    leakage_table,
    nearest_reference_ticks,
    rarity_shares,
)

ORDER = ["train", "validate", "test"]


def f(episode_id: str, hh: int, mm: int, ss: int, ff: int) -> str:
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-{hh:02d}-{mm:02d}-{ss:02d}-{ff:02d}"


def leak(frames: dict[str, str], seconds=(1, 5, 30)) -> dict[tuple[str, float], tuple[int, int]]:
    table = leakage_table(list(frames), list(frames.values()), ORDER, seconds)
    return {(r.dataset, r.seconds): (r.leaking, r.frames) for r in table.itertuples()}


def test_leakage_by_hand():
    frames = {
        f("S01E01", 0, 10, 0, 0): "train",
        f("S01E01", 0, 10, 0, 12): "validate",  # 0.5 s after the train frame
        f("S01E01", 0, 10, 1, 0): "validate",  # exactly 1 s: counts as within 1 s
        f("S01E01", 0, 10, 1, 1): "validate",  # 1 s and one frame: not within 1 s, within 5 s
        f("S01E01", 0, 9, 56, 0): "test",  # 4 s before it
        f("S01E01", 0, 10, 30, 0): "test",  # 30 s after it
        f("S01E01", 0, 11, 0, 0): "test",  # 60 s after it: never
        f("S01E02", 0, 10, 0, 0): "validate",  # same time, another episode without train frames: never
        f("S02E01", 0, 10, 0, 6): "test",  # same time stamp in another season's episode: never
        f("S02E01", 1, 10, 0, 6): "train",  # an hour later in that episode
    }
    assert leak(frames) == {
        ("validate", 1): (2, 4),
        ("validate", 5): (3, 4),
        ("validate", 30): (3, 4),
        ("test", 1): (0, 4),
        ("test", 5): (1, 4),
        ("test", 30): (2, 4),
    }


def test_nearest_distance_looks_both_ways_and_stays_in_the_episode():
    train = [f("S01E01", 0, 0, 10, 0), f("S01E01", 0, 0, 20, 0), f("S01E02", 0, 0, 14, 0)]
    queries = [
        f("S01E01", 0, 0, 14, 0),  # 4 s after the first, 6 s before the second
        f("S01E01", 0, 0, 17, 0),  # 3 s before the second
        f("S01E01", 0, 0, 0, 0),  # before every train frame
        f("S01E01", 0, 5, 0, 0),  # after every train frame of S01E01 (S01E02's sorts next)
        f("S01E03", 0, 0, 14, 0),  # no train frame in the episode
    ]
    got = nearest_reference_ticks(queries, train)
    assert got[:4].tolist() == [4 * 24, 3 * 24, 10 * 24, (300 - 20) * 24]
    assert got[4] == np.iinfo(np.int64).max


def test_a_frame_in_train_and_validate_leaks_at_distance_zero():
    frame = f("S01E01", 0, 0, 1, 2)
    table = leakage_table([frame, frame], ["train", "validate"], ORDER, (0,))
    row = table[table["dataset"] == "validate"].iloc[0]
    assert (row["leaking"], row["frames"], row["share"]) == (1, 1, 1.0)


def test_no_frames_or_no_train_frames():
    assert leak({}) == {(d, s): (0, 0) for d in ("validate", "test") for s in (1, 5, 30)}
    only_test = {f("S01E01", 0, 0, 0, i): "test" for i in range(3)}
    assert leak(only_test)[("test", 30)] == (0, 3)


def test_leakage_equals_a_brute_force_count():
    rng = np.random.default_rng(11)
    frames = {}
    for episode in ("S01E01", "S01E02"):
        for tick in rng.choice(24 * 600, size=400, replace=False):
            s, ff = divmod(int(tick), 24)
            frames[f(episode, 0, s // 60, s % 60, ff)] = ORDER[int(rng.choice(3, p=[0.7, 0.2, 0.1]))]

    def clock(frame: str) -> tuple[str, int]:
        hh, mm, ss, ff = (int(x) for x in frame[-11:].split("-"))
        return frame[3:10], ((hh * 60 + mm) * 60 + ss) * 24 + ff

    trains = [clock(x) for x, d in frames.items() if d == "train"]
    got = leak(frames, (0.5, 2, 10))
    for dataset in ("validate", "test"):
        mine = [clock(x) for x, d in frames.items() if d == dataset]
        for seconds in (0.5, 2, 10):
            count = sum(any(e == te and abs(t - tt) <= seconds * 24 for te, tt in trains) for e, t in mine)
            assert got[(dataset, seconds)] == (count, len(mine))


def test_groups_remove_leakage_except_across_window_edges():
    # one episode, every frame of 20 minutes: with 10-second groups a validate/test frame has a train frame
    # within 1 s only in the first or last second of its window, next to a train window
    frames = [f("S01E01", 0, t // 1440, t // 24 % 60, t % 24) for t in range(24 * 1200)]
    table = pd.DataFrame({"episode_id": "S01E01", "frame": frames, "rarity": "Common"})
    wanted = wanted_frames(table, dict(zip(ORDER, (0.7, 0.2, 0.1), strict=True)), "seed", group_seconds=10)
    got = leakage_table(wanted["frame"].tolist(), wanted["dataset"].tolist(), ORDER, (1, 10))
    one = got[got["seconds"] == 1]
    assert (one["share"] <= 2 / 10 + 1e-9).all() and (one["share"] > 0).all()
    # by frame-level placement, almost every one of them has a train frame within 1 s
    ungrouped = wanted_frames(table, dict(zip(ORDER, (0.7, 0.2, 0.1), strict=True)), "seed")
    flat = leakage_table(ungrouped["frame"].tolist(), ungrouped["dataset"].tolist(), ORDER, (1,))
    assert (flat["share"] > 0.99).all()


def test_rarity_shares_and_the_largest_deviation():
    counts = pd.DataFrame(
        {"Legendary": [1, 1, 0], "Rare": [7, 2, 1], "Common": [70, 20, 10]}, index=ORDER
    ).reindex(columns=list(RARITIES), fill_value=0)
    split = dict(zip(ORDER, (0.7, 0.2, 0.1), strict=True))
    shares = rarity_shares(counts, split).set_index(["rarity", "dataset"])
    assert shares.loc[("Rare", "validate"), "share"] == pytest.approx(0.2)
    assert shares.loc[("Legendary", "train"), "rarity_files"] == 2
    assert shares.loc[("Legendary", "validate"), "deviation"] == pytest.approx(0.5 - 0.2)
    assert shares.loc[("Legendary", "validate"), "deviation_files"] == pytest.approx(1 - 0.4)
    assert shares.loc[("Trash", "test"), "files"] == 0 and shares.loc[("Trash", "test"), "deviation"] == 0
    largest = largest_deviation(rarity_shares(counts, split))
    assert (largest["rarity"], largest["dataset"]) == ("Legendary", "validate")
    assert largest_deviation(rarity_shares(counts * 0, split)) is None
