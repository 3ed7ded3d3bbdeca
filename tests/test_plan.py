"""Planning as tables, and as properties: applying a plan gives the wanted state; a plan on it is all keep."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from season import dataset_key, frame_number, source_key

from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.plan import PLAN_COLUMNS, KeyLayout, plan_changes

LAYOUT = KeyLayout("tuttle_twins/ML/", "tuttle_twins/", "thumbnails", ("train", "validate", "test"))
E1, E2, E3 = "S01E01", "S01E02", "S02E01"


def wanted_table(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """(frame, dataset, rarity) rows -> the wanted frames of planned episodes."""
    return pd.DataFrame(
        [(f[3:6] + f[7:10], f, r, d) for f, d, r in rows], columns=["episode_id", "frame", "rarity", "dataset"]
    )


def current_of(keys) -> pd.DataFrame:
    current, unexpected = LAYOUT.parse_dataset_keys(keys)
    assert unexpected == []
    return current


def sources_of(frames) -> pd.DataFrame:
    return pd.DataFrame([(f[3:6] + f[7:10], f) for f in frames], columns=["episode_id", "frame"])


def plan(wanted, current_keys, source_frames, planned=(E1,), known=(E1, E2), prune=False):
    return plan_changes(
        wanted,
        current_of(current_keys),
        sources_of(source_frames),
        LAYOUT,
        planned_episodes=set(planned),
        known_episodes=set(known),
        prune_orphans=prune,
    )


def decisions(p) -> set[tuple[str, str, str, str]]:
    return {(a, f, s, d) for a, _, f, s, d in p.to_csv_frame().itertuples(index=False)}


A, B, C, D, X = (frame_number(E1, i) for i in range(5))


def test_first_run_copies_every_wanted_frame_from_its_source():
    p = plan(wanted_table((A, "train", "Common"), (B, "test", "Rare")), [], [A, B, C])
    assert decisions(p) == {
        ("copy", A, source_key(A), dataset_key("train", "Common", A)),
        ("copy", B, source_key(B), dataset_key("test", "Rare", B)),
    }
    assert p.writes == 2 and list(p.actions.columns) == PLAN_COLUMNS


def test_every_action_in_one_plan():
    wanted = wanted_table((A, "train", "Common"), (B, "train", "Legendary"), (C, "test", "Rare"), (D, "train", "Rare"))
    current = [
        dataset_key("train", "Common", A),  # keep
        dataset_key("train", "Common", B),  # reclassified: move
        dataset_key("validate", "Trash", X),  # no longer classified: delete
    ]
    p = plan(wanted, current, [A, B, C, X])  # D has no source frame
    assert decisions(p) == {
        ("keep", A, dataset_key("train", "Common", A), dataset_key("train", "Common", A)),
        ("move", B, dataset_key("train", "Common", B), dataset_key("train", "Legendary", B)),
        ("copy", C, source_key(C), dataset_key("test", "Rare", C)),
        ("delete", X, dataset_key("validate", "Trash", X), ""),
        ("missing", D, source_key(D), dataset_key("train", "Rare", D)),
    }
    assert {a: p.count(a) for a in ("keep", "copy", "move", "delete")} == {"keep": 1, "copy": 1, "move": 1, "delete": 1}
    assert p.writes == 1 + 2 + 1
    counts = p.counts_by_episode().loc[E1].to_dict()
    assert counts == {"keep": 1, "copy": 1, "move": 1, "refresh": 0, "delete": 1, "missing": 1}


def test_extra_copies_of_a_frame_are_deleted_and_one_is_kept():
    current = [dataset_key("train", "Common", A), dataset_key("test", "Common", A), dataset_key("train", "Rare", A)]
    p = plan(wanted_table((A, "train", "Common")), current, [A])
    assert decisions(p) == {
        ("keep", A, dataset_key("train", "Common", A), dataset_key("train", "Common", A)),
        ("delete", A, dataset_key("test", "Common", A), ""),
        ("delete", A, dataset_key("train", "Rare", A), ""),
    }


def test_a_frame_in_two_wrong_places_moves_once_and_the_other_copy_is_deleted():
    current = [dataset_key("test", "Common", A), dataset_key("validate", "Rare", A)]
    p = plan(wanted_table((A, "train", "Legendary")), current, [])
    moves, deletes = p.of("move"), p.of("delete")
    assert len(moves) == 1 and len(deletes) == 1
    assert moves["dst_key"].item() == dataset_key("train", "Legendary", A)
    assert {moves["src_key"].item(), deletes["src_key"].item()} == set(current)


def test_a_moved_frame_needs_no_source_object():
    p = plan(wanted_table((A, "validate", "Rare")), [dataset_key("train", "Rare", A)], [])
    assert p.count("move") == 1 and p.missing.empty


def test_only_planned_episodes_are_touched_and_unknown_episodes_are_orphans():
    e2_frame, e3_frame = frame_number(E2, 0), frame_number(E3, 0)
    current = [dataset_key("train", "Common", A), dataset_key("train", "Common", e2_frame)]
    current.append(dataset_key("test", "Rare", e3_frame))
    p = plan(wanted_table(), current, [], planned=(E1,), known=(E1, E2))
    # E1's sheet now has nothing classified: delete; E2 was not planned (skipped): untouched; E3 is an orphan
    assert decisions(p) == {("delete", A, dataset_key("train", "Common", A), "")}
    assert p.orphans["key"].tolist() == [dataset_key("test", "Rare", e3_frame)]
    assert p.current_count == 1
    pruned = plan(wanted_table(), current, [], planned=(E1,), known=(E1, E2), prune=True)
    assert {k for a, _, k, _ in decisions(pruned) if a == "delete"} == {
        dataset_key("train", "Common", A),
        dataset_key("test", "Rare", e3_frame),
    }
    assert pruned.current_count == 2


def test_a_source_of_another_episode_does_not_count():
    other = frame_number(E2, 0)
    wanted = wanted_table((A, "train", "Common"))
    p = plan_changes(
        wanted,
        current_of([]),
        pd.DataFrame({"episode_id": [E2], "frame": [other]}),
        LAYOUT,
        planned_episodes={E1, E2},
        known_episodes={E1, E2},
    )
    assert p.count("copy") == 0 and p.missing["frame"].tolist() == [A]


def test_keys_that_do_not_fit_the_layout_are_set_aside():
    keys = [
        dataset_key("train", "Common", A),
        "tuttle_twins/ML/train/Common/notes.txt",
        "tuttle_twins/ML/train/Junk/" + A + ".jpg",
        "tuttle_twins/ML/holdout/Common/" + A + ".jpg",
        "tuttle_twins/ML/train/Common/sub/" + A + ".jpg",
        "tuttle_twins/ML/train/Common/" + A + ".png",
    ]
    current, unexpected = LAYOUT.parse_dataset_keys(keys)
    assert current[["episode_id", "frame", "dataset", "rarity"]].values.tolist() == [[E1, A, "train", "Common"]]
    assert unexpected == keys[1:]


# ---- properties -----------------------------------------------------------------------------------------

FRAMES = [frame_number(e, i) for e in (E1, E2) for i in range(6)] + [frame_number(E3, 0)]
DATASETS = ("train", "validate", "test")
placement = st.tuples(st.sampled_from(DATASETS), st.sampled_from(RARITIES))


def apply_plan(keys: set[str], p) -> set[str]:
    """What a bucket holding `keys` holds after the plan runs: copies first, then all deletes."""
    after = set(keys)
    for row in p.actions.itertuples(index=False):
        if row.action in ("copy", "move"):
            assert row.action == "copy" or row.src_key in keys, "a move must copy from an existing dataset object"
            after.add(row.dst_key)
    for row in p.actions.itertuples(index=False):
        if row.action in ("move", "delete"):
            assert row.src_key in keys, f"{row.action} of an object that is not there: {row.src_key}"
            after.discard(row.src_key)
    return after


@st.composite
def scenarios(draw):
    """A bucket (dataset objects, possibly several per frame) and the sheets' wanted state."""
    wanted = draw(st.dictionaries(st.sampled_from(FRAMES), placement, max_size=len(FRAMES)))
    current = draw(st.lists(st.tuples(st.sampled_from(FRAMES), placement), max_size=20))
    sources = draw(st.sets(st.sampled_from(FRAMES)))
    planned = draw(st.sets(st.sampled_from([E1, E2, E3]), min_size=1))
    known = planned | draw(st.sets(st.sampled_from([E1, E2, E3])))
    prune = draw(st.booleans())
    return wanted, {dataset_key(d, r, f) for f, (d, r) in current}, sources, planned, known, prune


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_applying_a_plan_gives_the_wanted_state_and_a_second_plan_is_all_keep(scenario):
    wanted, keys, source_frames, planned, known, prune = scenario
    wanted_df = wanted_table(*[(f, d, r) for f, (d, r) in wanted.items()])
    p = plan(wanted_df, keys, source_frames, planned=planned, known=known, prune=prune)

    after = apply_plan(keys, p)

    def episode(key: str) -> str:
        name = key.rsplit("/", 1)[-1]
        return name[3:6] + name[7:10]

    wanted_keys = {dataset_key(d, r, f) for f, (d, r) in wanted.items() if episode(f) in planned}
    current_frames = {k.rsplit("/", 1)[-1][:-4] for k in keys}
    reachable = {k for k in wanted_keys if k.rsplit("/", 1)[-1][:-4] in current_frames | source_frames}
    untouched = {k for k in keys if episode(k) not in planned and (episode(k) in known or not prune)}
    assert after == reachable | untouched
    missing = set(p.missing["dst_key"])
    assert missing == wanted_keys - reachable

    again = plan(wanted_df, after, source_frames, planned=planned, known=known, prune=prune)
    assert set(again.actions["action"]) <= {"keep"}
    assert set(again.of("keep")["dst_key"]) == reachable
    assert again.writes == 0


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(FRAMES), placement, min_size=1))
def test_a_plan_on_the_wanted_state_is_all_keep(wanted):
    wanted = {f: v for f, v in wanted.items() if f[3:6] + f[7:10] in (E1, E2)}
    keys = {dataset_key(d, r, f) for f, (d, r) in wanted.items()}
    wanted_df = wanted_table(*[(f, d, r) for f, (d, r) in wanted.items()])
    p = plan(wanted_df, keys, [], planned=(E1, E2), known=(E1, E2))
    assert (p.actions["action"] == "keep").all()
    assert set(p.actions["dst_key"]) == keys and p.missing.empty


@pytest.mark.parametrize("n", [0, 1])
def test_empty_inputs_plan_nothing(n):
    wanted = wanted_table(*[(A, "train", "Common")] * n)
    p = plan(wanted, [dataset_key("train", "Common", A)] * n, [A] * n)
    assert p.writes == 0 and p.count("keep") == n
