"""The columnar plan equals a plain-Python reference on random inventories (hypothesis).

The reference below is the planning rule written the simplest way: one loop per step, Python sets and
dicts. The columnar code (pyarrow.compute, no Python per row) must give exactly the same rows in the same
order: the parsed inventory and the unexpected keys, every action, the missing sources, the orphans, the
counts and the delete-guard count. Random inventories mix dataset objects of several episodes (some listed
twice, some in two places), keys that are not the job's (wrong folder, a sub-folder, a trailing newline,
another extension, a frame number with non-ASCII digits), and wanted frames with and without sources.
"""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuttle_prep.core.frame_table import FRAME_PATTERN, RARITIES
from tuttle_prep.core.plan import INVENTORY_COLUMNS, PLAN_COLUMNS, KeyLayout, plan_changes

DATASETS = ("train", "validate", "test")
EPISODES = ("S01E01", "S01E02", "S02E01")
LAYOUTS = [
    KeyLayout("tuttle_twins/ML/", "tuttle_twins/", "thumbnails", DATASETS),
    KeyLayout("ml/", "src/", "low_res", ("a", "b.c", "d+")),
    KeyLayout("", "", "high_res", DATASETS),
]
_FILE_RE = re.compile(f"{FRAME_PATTERN}\\.jpg")


def frame_number(episode_id: str, index: int, digits: str = "0123456789") -> str:
    ss, ff = divmod(index, 24)
    two = lambda n: digits[n // 10] + digits[n % 10]  # noqa: E731
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-{two(0)}-{two(0)}-{two(ss)}-{two(ff)}"


# ---- the reference ------------------------------------------------------------------------------------


def reference_parse(layout: KeyLayout, keys: list) -> tuple[list[tuple[str, ...]], list]:
    folders = {f"{layout.ml_prefix}{d}/{r}/": (d, r) for d in layout.datasets for r in RARITIES}
    rows, unexpected = [], []
    for key in keys:
        if not isinstance(key, str):
            unexpected.append(key)
            continue
        cut = key.rfind("/") + 1
        place = folders.get(key[:cut])
        name = key[cut:]
        if place is None or _FILE_RE.fullmatch(name) is None:
            unexpected.append(key)
            continue
        frame = name[:-4]
        rows.append((key, frame[3:6] + frame[7:10], frame, *place))
    return rows, unexpected


def reference_plan(layout, wanted, current, source_frames, planned, known, prune, held, held_episodes):
    """(actions, missing, orphans, current_count) as lists of tuples."""

    def dst(d, r, f):
        return f"{layout.ml_prefix}{d}/{r}/{f}.jpg"

    def src(e, f):
        return f"{layout.source_prefix}{e.lower()}/default_eng/v1/frames/{layout.img_size}/{f}.jpg"

    wanted = [(e, f, r, d) for e, f, r, d in wanted if e in planned]
    mine = [row for row in current if row[1] in planned]
    mine_keys = {row[0] for row in mine}
    keep = [w for w in wanted if dst(w[3], w[2], w[1]) in mine_keys]
    pending = [w for w in wanted if dst(w[3], w[2], w[1]) not in mine_keys]
    pending_frames = {w[1] for w in pending}
    first: dict[str, str] = {}
    for row in sorted((row for row in mine if row[2] in pending_frames), key=lambda row: row[0]):
        first.setdefault(row[2], row[0])
    moves = [w for w in pending if w[1] in first]
    unplaced = [w for w in pending if w[1] not in first]
    copies = [w for w in unplaced if w[1] in source_frames]
    missing = [w for w in unplaced if w[1] not in source_frames]
    used = {dst(w[3], w[2], w[1]) for w in keep} | {first[w[1]] for w in moves}
    deletes = [row for row in mine if row[0] not in used and row[2] not in held and row[1] not in held_episodes]
    orphans = [row for row in current if row[1] not in known]
    if prune:
        deletes += orphans
    actions = (
        [("keep", e, f, dst(d, r, f), dst(d, r, f)) for e, f, r, d in keep]
        + [("copy", e, f, src(e, f), dst(d, r, f)) for e, f, r, d in copies]
        + [("move", e, f, first[f], dst(d, r, f)) for e, f, r, d in moves]
        + [("delete", row[1], row[2], row[0], "") for row in deletes]
    )
    missing_rows = [("missing", e, f, src(e, f), dst(d, r, f)) for e, f, r, d in missing]
    return actions, missing_rows, orphans, len(mine) + (len(orphans) if prune else 0)


def rows_of(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    return [tuple(row) for row in frame[columns].astype(object).itertuples(index=False)]


# ---- random inventories ---------------------------------------------------------------------------------

#: one frame number with non-ASCII digits (Python's \d takes them): the plan must not rely on ASCII frames
FRAMES = [frame_number(e, i) for e in EPISODES for i in range(5)] + [frame_number("S01E02", 7, "٠١٢٣٤٥٦٧٨٩")]


@st.composite
def odd_key(draw: st.DrawFn, layout: KeyLayout) -> str:
    frame = draw(st.sampled_from(FRAMES))
    dataset, rarity = draw(st.sampled_from(layout.datasets)), draw(st.sampled_from(RARITIES))
    good = f"{layout.ml_prefix}{dataset}/{rarity}/{frame}.jpg"
    return draw(
        st.sampled_from(
            [
                good + "\n",
                good[:-4] + ".png",
                f"{layout.ml_prefix}{dataset}/Junk/{frame}.jpg",
                f"{layout.ml_prefix}holdout/{rarity}/{frame}.jpg",
                f"{layout.ml_prefix}{dataset}/{rarity}/sub/{frame}.jpg",
                f"{layout.ml_prefix}{dataset}/{rarity}/x{frame}.jpg",
                f"{layout.ml_prefix}{dataset}/{rarity}/",
                f"{layout.ml_prefix}{dataset}/{rarity}/{frame_number('S01E01', 3, '٠١٢٣٤٥٦٧٨٩')}.jpg",
                f"{layout.ml_prefix}{dataset}/{rarity}/{frame[:-2]}24.jpg",
                f"{layout.ml_prefix}labels.csv",
                f"other/{dataset}/{rarity}/{frame}.jpg",
                f"{frame}.jpg",
                "",
                "é/" + good,
            ]
        )
    )


@st.composite
def inventories(draw: st.DrawFn):
    layout = draw(st.sampled_from(LAYOUTS))
    placement = st.tuples(st.sampled_from(FRAMES), st.sampled_from(layout.datasets), st.sampled_from(RARITIES))
    good = [f"{layout.ml_prefix}{d}/{r}/{f}.jpg" for f, d, r in draw(st.lists(placement, max_size=25))]
    keys = draw(st.permutations(good + draw(st.lists(odd_key(layout), max_size=6))))
    return layout, list(keys)


@st.composite
def scenarios(draw: st.DrawFn):
    layout, keys = draw(inventories())
    frames = draw(st.lists(st.sampled_from(FRAMES), unique=True, max_size=len(FRAMES)))
    if draw(st.integers(0, 9)) == 0 and frames:  # off-contract: a frame wanted twice
        frames.append(frames[0])
    wanted = [
        (f[3:6] + f[7:10], f, draw(st.sampled_from(RARITIES)), draw(st.sampled_from(layout.datasets)))
        for f in frames
    ]
    sources = draw(st.sets(st.sampled_from(FRAMES)))
    planned = draw(st.sets(st.sampled_from(EPISODES)))
    known = planned | draw(st.sets(st.sampled_from(EPISODES)))
    held = draw(st.sets(st.sampled_from(FRAMES), max_size=3))
    held_episodes = draw(st.sets(st.sampled_from(EPISODES), max_size=1))
    return layout, keys, wanted, sources, planned, known, draw(st.booleans()), held, held_episodes


# ---- the properties -------------------------------------------------------------------------------------

AS_INPUT = {
    "list": list,
    "arrow": lambda keys: pa.array(keys, pa.string()),
    "chunked large_string": lambda keys: pa.chunked_array([keys[:3], keys[3:]], pa.large_string()),
    "series": lambda keys: pd.Series(keys, dtype="str"),
    "object series": lambda keys: pd.Series(keys, dtype=object),
    "generator": lambda keys: (k for k in keys),
}


@pytest.mark.parametrize("kind", AS_INPUT)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inventories())
def test_parsing_keys_equals_the_reference(kind: str, inventory) -> None:
    layout, keys = inventory
    parsed, unexpected = layout.parse_dataset_keys(AS_INPUT[kind](keys))
    rows, reference_unexpected = reference_parse(layout, keys)
    assert list(parsed.columns) == INVENTORY_COLUMNS
    assert rows_of(parsed, INVENTORY_COLUMNS) == rows
    assert unexpected == reference_unexpected


def test_keys_that_are_not_strings_are_unexpected_as_given() -> None:
    layout = LAYOUTS[0]
    good = f"tuttle_twins/ML/train/Rare/{FRAMES[0]}.jpg"
    parsed, unexpected = layout.parse_dataset_keys([None, good, 7, b"x"])
    assert parsed["key"].tolist() == [good]
    assert unexpected == [None, 7, b"x"]
    parsed, unexpected = layout.parse_dataset_keys(pa.array([None, good]))
    assert parsed["key"].tolist() == [good] and unexpected == [None]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_the_columnar_plan_equals_the_reference(scenario) -> None:
    layout, keys, wanted, sources, planned, known, prune, held, held_episodes = scenario
    current, _ = layout.parse_dataset_keys(keys)
    wanted_df = pd.DataFrame(wanted, columns=["episode_id", "frame", "rarity", "dataset"])
    sources_df = pd.DataFrame([(f[3:6] + f[7:10], f) for f in sorted(sources)], columns=["episode_id", "frame"])
    plan = plan_changes(wanted_df, current, sources_df, layout, planned, known, prune, held, held_episodes)

    inventory = reference_parse(layout, keys)[0]
    actions, missing, orphans, current_count = reference_plan(
        layout, wanted, inventory, sources, planned, known, prune, held, held_episodes
    )
    assert rows_of(plan.actions, PLAN_COLUMNS) == actions
    assert rows_of(plan.missing, PLAN_COLUMNS) == missing
    assert rows_of(plan.orphans, INVENTORY_COLUMNS) == orphans
    assert plan.current_count == current_count
    staying = {f for a, _, f, _, _ in actions if a != "delete"}
    assert plan.deletes_leaving() == sum(1 for a, _, f, _, _ in actions if a == "delete" and f not in staying)
    counts = plan.counts_by_episode()
    for episode in sorted({e for _, e, *_ in actions + missing} | planned):
        expected = {a: sum(1 for row in actions + missing if row[0] == a and row[1] == episode) for a in counts}
        assert counts.loc[episode].to_dict() == expected
    assert list(counts.index) == sorted({e for _, e, *_ in actions + missing} | planned)
    leaving = [e for a, e, f, _, _ in actions if a == "delete" and f not in staying]
    files = [row[1] for row in inventory if row[1] in planned]
    by_episode = plan.deletes_leaving_by_episode()
    expected_episodes = sorted(set(leaving) | set(files))
    assert list(by_episode.index) == [e for e in expected_episodes if e in planned]
    assert list(by_episode.columns) == ["deletes", "files"]
    for episode in by_episode.index:
        assert by_episode.loc[episode].to_dict() == {"deletes": leaving.count(episode), "files": files.count(episode)}


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=8), st.lists(st.text(max_size=30), max_size=50))
def test_the_split_hash_equals_round_1s(seed: str, keys: list[str]) -> None:
    """unit_hash reads the digests as one big-endian buffer; the numbers must be round 1's exactly."""
    import hashlib

    import numpy as np

    from tuttle_prep.core.split import unit_hash

    seeded = hashlib.blake2b(seed.encode("utf-8") + b"\0", digest_size=8)
    values = []
    for key in keys:
        h = seeded.copy()
        h.update(key.encode("utf-8"))
        values.append(int.from_bytes(h.digest(), "big"))
    expected = np.asarray(values, dtype=np.uint64).astype(np.float64) / float(2**64)
    assert unit_hash(seed, iter(keys)).tolist() == expected.tolist()
