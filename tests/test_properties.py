"""Safety properties of planning and applying, over random bucket states (hypothesis).

Each example is a bucket (source frames, dataset objects of planned, unplanned and orphan episodes, stray
keys under the ML prefix, keys elsewhere) and the frames the sheets want. The plan is applied by the real
`s3_apply.apply_plan` against an in-memory S3 that fails a random share of copies and deletes. Whatever fails:
nothing outside the ML prefix changes, no source frame is deleted, no frame that had a dataset copy loses
its last one, and no plain delete runs after a failed copy. Then a run without faults reaches the wanted
state exactly, and the plan after it is all keep.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from obstore.exceptions import GenericError

from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.plan import KeyLayout, Plan, plan_changes
from tuttle_prep.edges.s3_apply import apply_plan
from tuttle_prep.edges.s3_bucket import S3Bucket

BUCKET = "media.example"
DATASETS = ("train", "validate", "test")
EPISODES = ("S01E01", "S01E02", "S02E01")
SOURCE_PREFIX = "tuttle_twins/"
ELSEWHERE = ["tuttle_twins/manifests/S01-episodes.json", "tuttle_twins/locks/data-prep.lock", "other/ML/train/x.jpg"]


def frame_number(episode_id: str, index: int) -> str:
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-00-00-{index // 24:02d}-{index % 24:02d}"


class MemoryS3:
    """The calls `s3_apply.apply_plan` makes, on a dict {key: body}; chosen copies and deletes fail.

    Copies are the data plane's (obstore's in the job: `DataPlane.copy`), deletes boto3's `delete_objects`.
    """

    def __init__(self, objects: dict[str, bytes], failing_copies: set[str], failing_deletes: set[str]) -> None:
        self.objects = objects
        self.failing_copies = failing_copies
        self.failing_deletes = failing_deletes
        self._lock = threading.Lock()

    async def copy(self, src: str, dst: str) -> None:
        with self._lock:
            if dst in self.failing_copies:
                raise GenericError("<Error><Code>InternalError</Code><Message>injected</Message></Error>")
            if src not in self.objects:
                raise FileNotFoundError(f"<Error><Code>NoSuchKey</Code><Message>no such key {src}</Message></Error>")
            self.objects[dst] = self.objects[src]

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        assert Bucket == BUCKET and len(Delete["Objects"]) <= 1000
        errors = []
        with self._lock:
            for item in Delete["Objects"]:
                if item["Key"] in self.failing_deletes:
                    errors.append({"Key": item["Key"], "Code": "InternalError", "Message": "injected"})
                else:
                    self.objects.pop(item["Key"], None)
        return {"Errors": errors} if errors else {}


def memory_bucket(memory: MemoryS3) -> S3Bucket:
    return S3Bucket(memory, BUCKET, workers=4, data_plane=memory)  # type: ignore[arg-type]


@dataclass
class Scenario:
    layout: KeyLayout
    objects: dict[str, bytes]
    wanted: pd.DataFrame
    planned: set[str]
    known: set[str]
    prune: bool


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    ml_prefix = draw(st.sampled_from(["tuttle_twins/ML/", "ml/", "tuttle_twins/ML/v2/"]))
    layout = KeyLayout(ml_prefix, SOURCE_PREFIX, "thumbnails", DATASETS)
    planned = draw(st.sets(st.sampled_from(EPISODES)))
    known = planned | draw(st.sets(st.sampled_from(EPISODES)))
    places = st.tuples(st.sampled_from(DATASETS), st.sampled_from(RARITIES))
    objects: dict[str, bytes] = {key: b"elsewhere" for key in ELSEWHERE}
    wanted_rows = []
    for episode_id in EPISODES:
        for index in range(draw(st.integers(0, 5))):
            frame = frame_number(episode_id, index)
            if draw(st.booleans()):
                objects[layout.source_folder(episode_id) + frame + ".jpg"] = frame.encode()
            for dataset, rarity in draw(st.lists(places, max_size=3, unique=True)):
                objects[f"{ml_prefix}{dataset}/{rarity}/{frame}.jpg"] = frame.encode()
            place = draw(st.none() | places)
            if place is not None and episode_id in planned:
                wanted_rows.append((episode_id, frame, place[1], place[0]))
    strays = ["README.txt", "train/Common/notes.png", "train/Common/TT_S01_E01_FRM-00-00-00-00.JPG", "old/Rare/x.jpg"]
    for stray in draw(st.lists(st.sampled_from(strays), unique=True)):
        objects[ml_prefix + stray] = b"stray"
    wanted = pd.DataFrame(wanted_rows, columns=["episode_id", "frame", "rarity", "dataset"])
    return Scenario(layout, objects, wanted, planned, known, draw(st.booleans()))


def plan_for(scenario: Scenario, objects: dict[str, bytes]) -> Plan:
    """Plan the way a run does: parse the ML listing, list the planned episodes' source folders."""
    layout = scenario.layout
    current, _ = layout.parse_dataset_keys(sorted(k for k in objects if k.startswith(layout.ml_prefix)))
    sources = pd.DataFrame(
        [
            (episode_id, key[len(layout.source_folder(episode_id)) : -len(".jpg")])
            for episode_id in scenario.planned
            for key in objects
            if key.startswith(layout.source_folder(episode_id))
        ],
        columns=["episode_id", "frame"],
    )
    return plan_changes(scenario.wanted, current, sources, layout, scenario.planned, scenario.known, scenario.prune)


def dataset_frames(layout: KeyLayout, objects: dict[str, bytes]) -> dict[str, set[str]]:
    """{frame: its dataset object keys}."""
    current, _ = layout.parse_dataset_keys(k for k in objects if k.startswith(layout.ml_prefix))
    return current.groupby("frame")["key"].agg(set).to_dict() if len(current) else {}


def is_source(layout: KeyLayout, key: str) -> bool:
    return any(key.startswith(layout.source_folder(e)) for e in EPISODES)


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_no_plan_deletes_outside_the_ml_prefix_a_source_frame_or_a_stray_key(scenario: Scenario) -> None:
    plan = plan_for(scenario, scenario.objects)
    layout = scenario.layout
    current, strays = layout.parse_dataset_keys(k for k in scenario.objects if k.startswith(layout.ml_prefix))
    removed = set(plan.of("delete")["src_key"]) | set(plan.of("move")["src_key"])
    written = set(plan.of("copy")["dst_key"]) | set(plan.of("move")["dst_key"])

    assert removed <= set(current["key"])
    assert all(key.startswith(layout.ml_prefix) and not is_source(layout, key) for key in removed)
    assert not removed & set(strays)
    assert all(key.startswith(layout.ml_prefix) for key in written)
    assert set(plan.of("copy")["src_key"]) <= {k for k in scenario.objects if is_source(layout, k)}
    touched_episodes = set(plan.actions.loc[plan.actions["action"] != "keep", "episode_id"])
    orphans = set(EPISODES) - scenario.known
    assert touched_episodes <= scenario.planned | (orphans if scenario.prune else set())


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_no_plan_deletes_the_only_copy_of_a_wanted_frame(scenario: Scenario) -> None:
    plan = plan_for(scenario, scenario.objects)
    copies = dataset_frames(scenario.layout, scenario.objects)
    deleted = set(plan.of("delete")["src_key"])
    moved_from = set(plan.of("move")["src_key"])
    for frame in scenario.wanted["frame"]:
        kept_or_moved = copies.get(frame, set()) - deleted
        assert not copies.get(frame) or kept_or_moved, f"every dataset copy of wanted {frame} is deleted"
        # the copy a move reads from is never also a plain delete
        assert not (copies.get(frame, set()) & moved_from & deleted)


@PROPERTY_SETTINGS
@given(
    scenario=scenarios(),
    copy_failure_share=st.sampled_from([0.0, 0.3, 1.0]),
    delete_failure_share=st.sampled_from([0.0, 0.5]),
    plain_deletes=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_partly_failing_apply_loses_nothing_and_the_next_run_converges(
    scenario: Scenario, copy_failure_share: float, delete_failure_share: float, plain_deletes: bool, seed: int
) -> None:
    layout = scenario.layout
    objects = dict(scenario.objects)
    plan = plan_for(scenario, objects)
    targets = sorted(set(plan.of("copy")["dst_key"]) | set(plan.of("move")["dst_key"]))
    removals = sorted(set(plan.of("delete")["src_key"]) | set(plan.of("move")["src_key"]))
    failing_copies = {k for i, k in enumerate(targets) if (hash((seed, i)) % 100) < copy_failure_share * 100}
    failing_deletes = {k for i, k in enumerate(removals) if (hash((seed, -i)) % 100) < delete_failure_share * 100}
    before = dataset_frames(layout, objects)

    store = memory_bucket(MemoryS3(objects, failing_copies, failing_deletes))
    result = apply_plan(store, plan, plain_deletes=plain_deletes)

    outside = {k: v for k, v in scenario.objects.items() if not k.startswith(layout.ml_prefix)}
    assert {k: v for k, v in objects.items() if not k.startswith(layout.ml_prefix)} == outside
    strays = layout.parse_dataset_keys(k for k in scenario.objects if k.startswith(layout.ml_prefix))[1]
    assert all(objects.get(k) == scenario.objects[k] for k in strays)
    after = dataset_frames(layout, objects)
    lost = [frame for frame in scenario.wanted["frame"] if before.get(frame) and not after.get(frame)]
    assert not lost, "a wanted frame lost its last dataset copy"
    for key, body in objects.items():  # every dataset object still holds its own frame
        if key.startswith(layout.ml_prefix) and key not in strays:
            assert body == key.rsplit("/", 1)[-1].removesuffix(".jpg").encode()
    plain = set(plan.of("delete")["src_key"])
    if failing_copies & set(targets) or not plain_deletes:
        assert plain <= set(objects), "a plain delete ran although a copy failed or deletes were refused"
    moves = plan.of("move")
    attempted = {src for src, dst in zip(moves["src_key"], moves["dst_key"], strict=True) if dst not in failing_copies}
    if plain_deletes and not failing_copies:
        attempted |= plain
    assert result.failed == len(failing_copies) + len(failing_deletes & attempted)

    # the next run, without faults, reaches the wanted state; the one after it has nothing to do
    apply_plan(memory_bucket(MemoryS3(objects, set(), set())), plan_for(scenario, objects))
    replan = plan_for(scenario, objects)
    assert set(replan.actions["action"]) <= {"keep"}
    placed = dataset_frames(layout, objects)
    for row in scenario.wanted.itertuples():
        reachable = row.frame in before or any(
            k.endswith(f"/{row.frame}.jpg") and is_source(layout, k) for k in outside
        )
        expected = {f"{layout.ml_prefix}{row.dataset}/{row.rarity}/{row.frame}.jpg"} if reachable else set()
        assert placed.get(row.frame, set()) == expected
    assert set(replan.missing["frame"]) == {
        row.frame for row in scenario.wanted.itertuples() if row.frame not in placed
    }
    wanted_frames = set(scenario.wanted["frame"])
    assert all(frame in wanted_frames for frame in placed if frame[3:6] + frame[7:10] in scenario.planned)
    untouched = set(EPISODES) - scenario.planned - (set(EPISODES) - scenario.known if scenario.prune else set())
    for frame, keys in before.items():
        if frame[3:6] + frame[7:10] in untouched:
            assert placed.get(frame) == keys
