"""How far one changed row reaches (issue 21.6): hypothesis on the real split (`core.split.split_frames`).

With D datasets a stratum is cut at D − 1 points. One row added to or removed from a stratum shifts each cut
by at most one place, so at most D − 1 other frames change dataset; a reclassification is a removal from one
stratum plus an addition to another: at most 2·(D − 1). With N-second groups the same holds for windows: a
changed row changes at most its own window's majority rarity. `none` draws each frame (or window) on its own:
nothing else moves. The bounds are reached (`test_the_bounds_are_reached_so_one_per_boundary_was_wrong`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.split import FRAMES_PER_SECOND, split_frames

REPO = Path(__file__).resolve().parents[1]
EPISODES = ("S01E01", "S02E03")
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Cells = dict[tuple[str, int], str]


def frame(episode_id: str, tick: int) -> str:
    seconds, ff = divmod(tick, FRAMES_PER_SECOND)
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-00-{seconds // 60:02d}-{seconds % 60:02d}-{ff:02d}"


def split(cells: Cells, shares: dict[str, float], seed: str, group_seconds: int = 0, stratify="rarity") -> dict:
    """{(episode, tick): dataset} from the real split function."""
    keys = sorted(cells)
    if not keys:
        return {}
    datasets = split_frames(
        [e for e, _ in keys], [frame(*k) for k in keys], [cells[k] for k in keys], shares, seed, group_seconds, stratify
    )
    return dict(zip(keys, datasets.tolist(), strict=True))


@st.composite
def shares_of_2_to_5(draw) -> dict[str, float]:
    weights = draw(st.lists(st.integers(0, 9), min_size=2, max_size=5).filter(lambda w: sum(w) > 0))
    return {f"d{i}": w / sum(weights) for i, w in enumerate(weights)}


@st.composite
def one_change(draw, ticks: int = 400) -> tuple[Cells, Cells, tuple[str, int], str]:
    """(a sheet, the sheet after one changed row, that row's key, how: add, remove or reclassify).

    Few rarities and small strata, where a cut point is most often next to the changed frame."""
    rarities = draw(st.lists(st.sampled_from(RARITIES), min_size=1, max_size=2, unique=True))
    episodes = draw(st.lists(st.sampled_from(EPISODES), min_size=1, max_size=2, unique=True))
    key = st.tuples(st.sampled_from(episodes), st.integers(0, ticks))
    size = draw(st.integers(1, 40))  # drawn first: left to itself, hypothesis makes mostly tiny sheets
    keys = draw(st.lists(key, min_size=size, max_size=size, unique=True))
    before = {k: draw(st.sampled_from(rarities)) for k in keys}
    how = draw(st.sampled_from(["add", "remove", "reclassify"]))
    after = dict(before)
    if how == "add":
        changed = draw(key.filter(lambda k: k not in before))
        after[changed] = draw(st.sampled_from(rarities))
    else:
        changed = draw(st.sampled_from(sorted(before)))
        if how == "remove":
            del after[changed]
        else:
            after[changed] = draw(st.sampled_from([r for r in RARITIES if r != before[changed]]))
    return before, after, changed, how


def moved_others(before: Cells, after: Cells, changed: tuple[str, int], shares, seed, **kwargs) -> int:
    old, new = split(before, shares, seed, **kwargs), split(after, shares, seed, **kwargs)
    return sum(old[k] != new[k] for k in before if k in after and k != changed)


@PROPERTY
@given(change=one_change(), shares=shares_of_2_to_5(), seed=st.text(min_size=1, max_size=8))
def test_one_changed_row_moves_at_most_d_minus_1_other_frames_or_2_d_minus_1_for_a_reclassification(
    change, shares, seed
):
    before, after, changed, how = change
    d = len(shares)
    bound = 2 * (d - 1) if how == "reclassify" else d - 1
    moved = moved_others(before, after, changed, shares, seed)
    target(moved / bound if bound else 0.0)  # steer the search towards the worst cases
    assert moved <= bound


@PROPERTY
@given(change=one_change(), shares=shares_of_2_to_5(), seed=st.text(min_size=1, max_size=8))
def test_none_moves_no_other_frame(change, shares, seed):
    before, after, changed, _ = change
    assert moved_others(before, after, changed, shares, seed, stratify="none") == 0


@PROPERTY
@given(
    change=one_change(ticks=24 * 12),
    shares=shares_of_2_to_5(),
    seed=st.text(min_size=1, max_size=8),
    seconds=st.sampled_from([1, 2, 3]),
)
def test_with_groups_one_changed_row_moves_at_most_2_d_minus_1_other_windows(change, shares, seed, seconds):
    before, after, changed, _ = change
    old = split(before, shares, seed, group_seconds=seconds)
    new = split(after, shares, seed, group_seconds=seconds)

    def window(key: tuple[str, int]) -> tuple[str, int]:
        return key[0], key[1] // (FRAMES_PER_SECOND * seconds)

    windows_before = {window(k): d for k, d in old.items()}
    windows_after = {window(k): d for k, d in new.items()}
    assert len(windows_before) == len(set(map(window, old))) and all(
        windows_after[window(k)] == d for k, d in new.items()
    )  # each window whole
    others = [w for w in windows_before if w in windows_after and w != window(changed)]
    moved = sum(windows_before[w] != windows_after[w] for w in others)
    d = len(shares)
    adds_or_removes_a_window = (window(changed) in windows_before) != (window(changed) in windows_after)
    assert moved <= (d - 1 if adds_or_removes_a_window else 2 * (d - 1))


def test_the_bounds_are_reached_so_one_per_boundary_was_wrong():
    # small strata of two rarities, three datasets: the worst reclassification moves more than one other frame
    # per boundary (the README's old claim: at most D - 1 = 2), and none more than 2·(D - 1) = 4
    rng = np.random.default_rng(21)
    shares = {"train": 0.7, "validate": 0.2, "test": 0.1}
    worst = {"add": 0, "remove": 0, "reclassify": 0}
    for trial in range(1500):
        ticks = rng.choice(2000, size=int(rng.integers(2, 30)), replace=False)
        before = {("S01E01", int(t)): RARITIES[int(rng.integers(2, 4))] for t in ticks}
        changed = ("S01E01", int(ticks[0]))
        how = ("add", "remove", "reclassify")[trial % 3]
        after = dict(before)
        if how == "add":
            changed = ("S01E01", 2000 + trial)
            after[changed] = "Common"
        elif how == "remove":
            del after[changed]
        else:
            after[changed] = "Uncommon" if before[changed] == "Common" else "Common"
        worst[how] = max(worst[how], moved_others(before, after, changed, shares, f"seed {trial}"))
    assert worst["reclassify"] > len(shares) - 1
    assert worst["reclassify"] <= 2 * (len(shares) - 1)
    assert max(worst["add"], worst["remove"]) <= len(shares) - 1


def test_the_readme_states_the_bound_that_holds():
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "moves at most one other frame per dataset boundary" not in readme
    assert re.search(r"added or removed row moves at most D − 1 other frames", readme)
    assert re.search(
        r"reclassification, which is a removal from one rarity plus an addition to another, at most "
        r"2·\(D − 1\)",
        readme,
    )
