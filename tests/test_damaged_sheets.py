"""Property: no plan deletes or moves a frame whose sheet row is damaged (hypothesis, pure core).

Each example is a set of clean episode sheets whose frames a previous sync placed (some also left in a second
folder, as an interrupted move leaves them), and the same sheets after random edits: intended ones (a rarity
cleared, a row dropped, a row repeated as it is) and damage (a FRAME NUMBER cleared or mistyped, a rarity
mistyped, a row repeated with another rarity, a rarity header renamed). The run's own steps then plan:
`build_frame_table` (a SheetError skips the episode), `wanted_frames`, `plan_changes` with the held frames and
held episodes. A mistyped frame number is one that no longer parses: a typo that yields another valid frame
number is indistinguishable from an intended edit.
"""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from season import FRAME, HEADER, JONNY, SUPERVISED, UNSUPERVISED, frame_number

from tuttle_prep.core.frame_table import RARITIES, build_frame_table, normalize_rarity, parse_frame
from tuttle_prep.core.plan import KeyLayout, plan_changes, wanted_frames
from tuttle_prep.errors import SheetError
from tuttle_prep.settings import Settings

EPISODES = ("S01E01", "S01E02")
LAYOUT = KeyLayout("tuttle_twins/ML/", "tuttle_twins/", "thumbnails", ("train", "validate", "test"))
RARITY_HEADERS = (JONNY, SUPERVISED, UNSUPERVISED)
RENAMED = {
    JONNY: ["JONNY RECLASSIFICATION", "JONNYs RECLASSIFICATION", "JONNY's RECLASIFICATION"],
    SUPERVISED: ["SUPERVISED CLASSIFICATON", "SUPERVISD CLASSIFICATION"],
    UNSUPERVISED: ["UNSUPERVISED CLASIFICATION", "UN-SUPERVISED CLASSIFICATION"],
}
INTENDED = ("none", "clear rarity", "drop", "repeat")
DAMAGE = ("clear frame", "mistype frame", "mistype rarity", "repeat with another rarity")
RARITY_TYPOS = ("Comon", "Rarre", "Legend", "Uncommn", "Trsh", "?", "Rare!")
SETTINGS = Settings()


def mistyped_frame(frame: str, how: int) -> str:
    typo = [frame + " (dup?)", frame[:-5] + "-9-00", frame.replace("FRM-", "FRM"), frame[:-1], "#" + frame][how]
    assert parse_frame(typo) is None
    return typo


def most_trusted(row: dict[str, str]) -> str | None:
    return next((h for h in RARITY_HEADERS if row.get(h, "")), None)


@st.composite
def damaged_season(draw: st.DrawFn) -> tuple[dict[str, list[dict[str, str]]], dict[str, pd.DataFrame], set[str]]:
    """(clean sheets as rows, damaged sheets as raw tables, damaged frames)."""
    clean: dict[str, list[dict[str, str]]] = {}
    damaged_tables: dict[str, pd.DataFrame] = {}
    damaged: set[str] = set()
    cell = st.sampled_from(("", *RARITIES, "junk", " rare "))
    for episode_id in EPISODES:
        rows = []
        for index in range(draw(st.integers(1, 10))):
            row = {FRAME: frame_number(episode_id, index), "ROW_INDEX": str(index)}
            row.update({h: draw(cell) for h in RARITY_HEADERS})
            rows.append(row)
        clean[episode_id] = rows
        edited: list[dict[str, str]] = []
        for row in rows:
            edit = draw(st.sampled_from(INTENDED + DAMAGE))
            new = dict(row)
            top = most_trusted(row) or JONNY
            if edit == "drop":
                continue
            if edit == "clear rarity":
                new[draw(st.sampled_from(RARITY_HEADERS))] = ""
            elif edit == "repeat":
                edited.append(dict(row))
            elif edit == "clear frame":
                new[FRAME] = ""
            elif edit == "mistype frame":
                new[FRAME] = mistyped_frame(row[FRAME], draw(st.integers(0, 4)))
            elif edit == "mistype rarity":
                new[top] = draw(st.sampled_from(RARITY_TYPOS))
                assert normalize_rarity(new[top]) is None
            elif edit == "repeat with another rarity":
                first = normalize_rarity(row[top]) if row.get(top) else None
                edited.append(dict(row))
                new[top] = draw(st.sampled_from([r for r in RARITIES if r != first]))
            if edit in DAMAGE:
                damaged.add(row[FRAME])
            edited.append(new)
        order = draw(st.permutations(range(len(edited))))
        edited = [edited[i] for i in order]
        header = list(HEADER)
        if draw(st.integers(0, 5)) == 0:  # a renamed rarity header: every frame of the sheet is in doubt
            column = draw(st.sampled_from(RARITY_HEADERS))
            header = [draw(st.sampled_from(RENAMED[column])) if h == column else h for h in header]
            edited = [{header[HEADER.index(k)] if k in HEADER else k: v for k, v in r.items()} for r in edited]
            damaged |= {r[FRAME] for r in rows}
        damaged_tables[episode_id] = pd.DataFrame(
            [[r.get(c, "") for c in header] for r in edited], columns=header, dtype=object
        )
    return clean, damaged_tables, damaged


def classified(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frames = [build_frame_table(t, e).frames.assign(episode_id=e) for e, t in tables.items()]
    return pd.concat(frames, ignore_index=True)


def as_table(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame([[r.get(c, "") for c in HEADER] for r in rows], columns=HEADER, dtype=object)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(season=damaged_season(), extra_copies=st.sets(st.integers(0, 9)))
def test_no_plan_deletes_or_moves_a_frame_whose_row_is_damaged(season, extra_copies: set[int]) -> None:
    clean, damaged_tables, damaged = season
    # the bucket as the previous sync of the clean sheets left it, plus second copies of a few frames
    before = wanted_frames(
        classified({e: as_table(rows) for e, rows in clean.items()}),
        SETTINGS.split,
        SETTINGS.split_seed,
    )
    keys = LAYOUT.dataset_keys(before["dataset"], before["rarity"], before["frame"]).tolist()
    for index, row in enumerate(before.itertuples()):
        if index in extra_copies:
            other = next(r for r in RARITIES if r != row.rarity)
            keys.append(f"{LAYOUT.ml_prefix}{row.dataset}/{other}/{row.frame}.jpg")
    current, _ = LAYOUT.parse_dataset_keys(keys)
    sources = pd.DataFrame(
        [(e, r[FRAME]) for e, rows in clean.items() for r in rows], columns=["episode_id", "frame"]
    )

    # the run: what cannot be read skips its episode; rejected rows hold frames or the whole episode
    planned, frames, held, held_episodes = set(), [], set(), set()
    for episode_id, table in damaged_tables.items():
        try:
            built = build_frame_table(table, episode_id)
        except SheetError:
            continue
        planned.add(episode_id)
        frames.append(built.frames.assign(episode_id=episode_id))
        held |= built.held_frames
        if built.untied_rows:
            held_episodes.add(episode_id)
    columns = ["episode_id", "frame", "rarity", "metadata"]
    all_frames = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    wanted = wanted_frames(all_frames, SETTINGS.split, SETTINGS.split_seed)
    plan = plan_changes(
        wanted, current, sources, LAYOUT, planned, set(EPISODES), held_frames=held, held_episodes=held_episodes
    )

    touched = plan.actions[plan.actions["action"].isin(["delete", "move"])]
    assert not set(touched["frame"]) & damaged, touched[touched["frame"].isin(damaged)].to_string()
