"""Large plans and listings spread over worker processes: the same outcome as on threads, failures included."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.plan import INVENTORY_COLUMNS, PLAN_COLUMNS, KeyLayout, Plan
from tuttle_prep.edges import s3_apply, s3_listing
from tuttle_prep.edges.aws import make_client
from tuttle_prep.edges.s3_apply import apply_plan
from tuttle_prep.edges.s3_bucket import S3Bucket
from tuttle_prep.edges.s3_listing import list_datasets, list_sources

ML = "tuttle_twins/ML/"
SOURCES = "tuttle_twins/s01e01/default_eng/v1/frames/thumbnails/"


def frame(i: int) -> str:
    return f"TT_S01_E01_FRM-00-00-{i // 24:02d}-{i % 24:02d}"


class CopiesForbidden:
    """The parent's client: everything but copies, so copies that succeed were made in the copy processes."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def copy_object(self, **kwargs: Any) -> None:
        raise AssertionError(f"copied in the parent process: {kwargs['Key']}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def seed(bucket, missing_source: bool) -> Plan:
    """12 copies (with `missing_source`, frame 5's source is missing), 3 moves, 2 plain deletes."""
    rows = []
    for i in range(12):
        if i != 5 or not missing_source:
            bucket.put(f"{SOURCES}{frame(i)}.jpg", f"source {i}")
        rows.append(("copy", "S01E01", frame(i), f"{SOURCES}{frame(i)}.jpg", f"{ML}train/Common/{frame(i)}.jpg"))
    for i in range(12, 15):
        bucket.put(f"{ML}test/Rare/{frame(i)}.jpg", f"dataset {i}")
        rows.append(("move", "S01E01", frame(i), f"{ML}test/Rare/{frame(i)}.jpg", f"{ML}train/Trash/{frame(i)}.jpg"))
    for i in range(15, 17):
        bucket.put(f"{ML}validate/Common/{frame(i)}.jpg", f"dataset {i}")
        rows.append(("delete", "S01E01", frame(i), f"{ML}validate/Common/{frame(i)}.jpg", ""))
    return Plan(
        actions=pd.DataFrame(rows, columns=PLAN_COLUMNS),
        missing=pd.DataFrame(columns=PLAN_COLUMNS),
        orphans=pd.DataFrame(columns=INVENTORY_COLUMNS),
        episodes=["S01E01"],
    )


def bucket_state(bucket) -> dict[str, bytes]:
    return {key: bucket.get(key) for key in sorted(bucket.keys(ML))}


@pytest.fixture
def processes_for_every_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_apply, "PROCESS_MIN_COPIES", 1)
    monkeypatch.setattr(s3_apply, "COPY_CHUNK", 4)  # several chunks per process


@pytest.mark.parametrize("missing_source", [False, True])
def test_copies_in_processes_end_like_copies_on_threads(bucket, processes_for_every_plan, missing_source):
    plan = seed(bucket, missing_source)
    before = bucket_state(bucket)
    on_threads = apply_plan(S3Bucket(make_client("s3"), bucket.name, workers=4), plan)
    after_threads = bucket_state(bucket)

    for key in set(after_threads) - set(before):
        bucket.client.delete_object(Bucket=bucket.name, Key=key)
    for key, body in before.items():
        bucket.put(key, body)
    assert bucket_state(bucket) == before

    store = S3Bucket(CopiesForbidden(make_client("s3")), bucket.name, workers=4, processes=2)
    in_processes = apply_plan(store, plan)

    assert bucket_state(bucket) == after_threads
    assert after_threads[f"{ML}train/Common/{frame(0)}.jpg"] == b"source 0"
    assert after_threads[f"{ML}train/Trash/{frame(12)}.jpg"] == b"dataset 12"
    assert f"{ML}test/Rare/{frame(12)}.jpg" not in after_threads
    counts = (11, 3, 0, 2) if missing_source else (12, 3, 2, 0)  # a failed copy holds back the plain deletes
    for result in (on_threads, in_processes):
        assert (result.copied, result.moved, result.deleted, result.deletes_held_back) == counts
    assert [(f.action, f.key, f.error) for f in in_processes.failures] == [
        (f.action, f.key, f.error) for f in on_threads.failures
    ]
    if missing_source:
        assert [(f.action, f.key) for f in in_processes.failures] == [("copy", f"{ML}train/Common/{frame(5)}.jpg")]
        assert "NoSuchKey" in in_processes.failures[0].error


def test_small_plans_stay_on_threads(bucket):
    plan = seed(bucket, missing_source=False)
    store = S3Bucket(CopiesForbidden(make_client("s3")), bucket.name, workers=4, processes=2)
    with pytest.raises(AssertionError, match="copied in the parent process"):
        apply_plan(store, plan)


class ParentListings:
    """The parent's client, recording the prefixes it lists (the worker processes have their own clients)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.prefixes: list[str] = []

    def get_paginator(self, name: str) -> Any:
        paginator = self._client.get_paginator(name)
        record = self.prefixes.append

        class Recording:
            def paginate(self, **kwargs: Any) -> Any:
                record(kwargs["Prefix"])
                return paginator.paginate(**kwargs)

        return Recording()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_large_listings_in_processes_find_what_threads_find(bucket, monkeypatch):
    monkeypatch.setattr(s3_listing, "PROCESS_MIN_KEYS", 10)
    layout = KeyLayout(ML, "tuttle_twins/", "thumbnails", ("train", "validate", "test"))
    for i in range(30):
        bucket.put(f"{ML}{('train', 'validate', 'test')[i % 3]}/{RARITIES[i % 5]}/{frame(i)}.jpg")
        bucket.put(f"tuttle_twins/s01e0{1 + i % 2}/default_eng/v1/frames/thumbnails/{frame(i)}.jpg")
    bucket.put(f"{ML}train/Rare/odd.txt")
    bucket.put(f"{ML}misc/readme.txt")
    folders = {e: layout.source_folder(e) for e in ("S01E01", "S01E02", "S01E03")}

    on_threads = S3Bucket(make_client("s3"), bucket.name, workers=4)
    parent = ParentListings(make_client("s3"))
    in_processes = S3Bucket(parent, bucket.name, workers=4, processes=2)
    try:
        inventory = list_datasets(in_processes, layout, expected_keys=30)
        sources, errors = list_sources(in_processes, folders, expected_keys=30)
    finally:
        in_processes.close()
    expected = list_datasets(on_threads, layout)
    assert sorted(inventory.keys) == sorted(expected.keys) and len(inventory.keys) == 31
    assert inventory.unexpected == expected.unexpected
    expected_sources, expected_errors = list_sources(on_threads, folders)
    assert sorted(map(tuple, sources.to_numpy())) == sorted(map(tuple, expected_sources.to_numpy()))
    assert len(sources) == 30 and errors == expected_errors == {}
    # each source's ETag and size, as a dataset version records them
    first = sources.set_index("frame").loc[frame(0)]
    head = bucket.client.head_object(Bucket=bucket.name, Key=f"{layout.source_folder('S01E01')}{frame(0)}.jpg")
    assert (first["etag"], first["size"]) == (head["ETag"], head["ContentLength"])
    # the parent only discovered the folders: every rarity and source folder was listed by a worker process
    assert set(parent.prefixes) == {ML, f"{ML}train/", f"{ML}validate/", f"{ML}test/"}
