"""Rows in doubt hold the split (issue 21.5), through the real CLI and moto server.

A row whose FRAME NUMBER is cleared (or whose rarity is mistyped) keeps its frame's file where it is. Its
episode's split counts that frame there, so no other frame moves while the row is in doubt, no N-second group
is split, and nothing moves back once the row is fixed. Each case is chosen, with the split function itself,
as one where leaving the frame out of the split would move others.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import Bucket, run_cli
from season import FRAME, UNSUPERVISED, dataset_keys, frame_number, put_sheet, upload_season

from tuttle_prep.core.plan import wanted_frames
from tuttle_prep.settings import DEFAULT_SEED, DEFAULT_SPLIT, parse_split

SHARES = parse_split(DEFAULT_SPLIT)
EPISODE = "S01E01"
PATTERN = ["Common", "Rare", "Common", "Uncommon", "Trash", "Common", "Legendary", "Uncommon", "Common", "Rare"]


def rows_of(ticks: list[int], rarities: list[str]) -> list[dict[str, str]]:
    return [
        {FRAME: frame_number(EPISODE, t), "ROW_INDEX": str(i), UNSUPERVISED: r}
        for i, (t, r) in enumerate(zip(ticks, rarities, strict=True))
    ]


def frames_of(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame([(EPISODE, r[FRAME], r[UNSUPERVISED]) for r in rows], columns=["episode_id", "frame", "rarity"])


def split_of(rows: list[dict[str, str]], group_seconds: int = 0) -> dict[str, str]:
    wanted = wanted_frames(frames_of(rows), SHARES, DEFAULT_SEED, group_seconds)
    return dict(zip(wanted["frame"], wanted["dataset"], strict=True))


def damage(row: dict[str, str], how: str) -> dict[str, str]:
    return {**row, FRAME: ""} if how == "clear frame" else {**row, UNSUPERVISED: "Comon"}


def sync_ok(expect_finding: bool) -> str:
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert ("data findings: 0\n" not in result.output) == expect_finding, result.output
    return result.output


@pytest.mark.parametrize("how", ["clear frame", "mistype rarity"])
def test_a_row_in_doubt_moves_no_other_frame_and_fixing_it_moves_none_back(bucket: Bucket, how: str) -> None:
    rows = rows_of(list(range(60)), [PATTERN[(i * 3) % len(PATTERN)] for i in range(60)])
    full = split_of(rows)
    # a row whose frame, left out of its stratum, would move another frame (validate -> train, say)
    doubtful = next(
        i for i in range(len(rows)) if any(full[f] != d for f, d in split_of(rows[:i] + rows[i + 1 :]).items())
    )
    upload_season(bucket, {EPISODE: rows})
    sync_ok(expect_finding=False)
    synced = dataset_keys(bucket)
    assert {f: d for f, (d, _) in synced.items()} == full

    put_sheet(bucket, EPISODE, rows[:doubtful] + [damage(rows[doubtful], how)] + rows[doubtful + 1 :])
    sync_ok(expect_finding=True)
    assert dataset_keys(bucket) == synced  # the held frame stays, and no other frame moved

    put_sheet(bucket, EPISODE, rows)  # the row fixed as it was
    sync_ok(expect_finding=False)
    assert dataset_keys(bucket) == synced  # nothing moves back


def test_frames_in_doubt_keep_their_groups_whole(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 one-second windows of 3 frames, two of one rarity and one of a rarer one: a window whose frame of the
    # common rarity is in doubt would have the rarer one as its majority and change stratum
    monkeypatch.setenv("TUTTLE_SPLIT_GROUP_SECONDS", "1")
    ticks = [second * 24 + 8 * k for second in range(40) for k in range(3)]
    kinds = [("Common", "Rare"), ("Uncommon", "Legendary"), ("Trash", "Rare"), ("Common", "Uncommon")]
    rarities = [kinds[second % 4][k // 2] for second in range(40) for k in range(3)]
    rows = rows_of(ticks, rarities)
    full = split_of(rows, group_seconds=1)
    window = {r[FRAME]: ticks[i] // 24 for i, r in enumerate(rows)}

    def splits_a_window(doubt: tuple[int, ...]) -> bool:
        """Would the frames of `doubt`, left out of the split, see another frame of their window move away?"""
        without = split_of([r for i, r in enumerate(rows) if i not in doubt], group_seconds=1)
        held_windows = {window[rows[i][FRAME]]: full[rows[i][FRAME]] for i in doubt}
        return any(window[f] in held_windows and d != held_windows[window[f]] for f, d in without.items())

    candidates = [i for i in range(len(rows)) if splits_a_window((i,))]
    doubt = (candidates[0], next(i for i in candidates if window[rows[i][FRAME]] != window[rows[candidates[0]][FRAME]]))
    assert splits_a_window(doubt)
    upload_season(bucket, {EPISODE: rows})
    sync_ok(expect_finding=False)
    synced = dataset_keys(bucket)
    assert {f: d for f, (d, _) in synced.items()} == full

    put_sheet(bucket, EPISODE, [damage(r, "clear frame") if i in doubt else r for i, r in enumerate(rows)])
    sync_ok(expect_finding=True)
    during = dataset_keys(bucket)
    datasets_of_window: dict[int, set[str]] = {}
    for frame, (dataset, _) in during.items():
        datasets_of_window.setdefault(window[frame], set()).add(dataset)
    assert all(len(d) == 1 for d in datasets_of_window.values()), datasets_of_window  # no window split
    assert during == synced  # and no frame moved

    put_sheet(bucket, EPISODE, rows)
    sync_ok(expect_finding=False)
    assert dataset_keys(bucket) == synced
