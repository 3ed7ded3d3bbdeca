"""What the job cannot read or trust never turns into deletes (issue 10): each case through the real CLI and moto
server on loopback, asserting the bucket's final state; S3 faults through botocore hooks (see test_faults.py).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from conftest import Bucket, make_s3_client, run_cli
from s3_fault_proxy import Answer, Request, S3FaultProxy, s3_error
from season import (
    FRAME,
    HEADER,
    JONNY,
    JPEG,
    ML_PREFIX,
    SUPERVISED,
    UNSUPERVISED,
    dataset_key,
    dataset_keys,
    frame_number,
    put_sheet,
    sheet_csv,
    sheet_rows,
    upload_season,
)
from test_bad_inputs import of_episode, place
from test_faults import (
    LOCK_KEY,
    edited_season,
    expected_state,
    key_of,
    put_lock,
    season_rows,
    snapshot,
)

from tuttle_prep.core.delete_guard import DeleteLimit, episode_delete_guard
from tuttle_prep.core.plan import KeyLayout
from tuttle_prep.edges.s3_lock import S3Lock
from tuttle_prep.errors import LockHeld

E01, E02, S02E01 = "S01E01", "S01E02", "S02E01"


@pytest.fixture
def faults(proxied: S3FaultProxy, monkeypatch: pytest.MonkeyPatch) -> S3FaultProxy:
    """The fault proxy every request of the CLI goes through, one retry per request (as test_faults' `faults`)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    return proxied


# ---- 1. an unreadable manifest ------------------------------------------------------------------------------


def test_an_unreadable_manifest_disables_pruning_and_its_episodes_are_not_orphans(
    bucket: Bucket, faults: S3FaultProxy
):
    sheets = {E01: season_rows(E01, 4), S02E01: season_rows(S02E01, 5)}
    placed = expected_state(sheets)
    place(bucket, placed)
    upload_season(bucket, sheets)

    def manifest_fault(request: Request) -> Answer | None:
        if request.operation == "GetObject" and request.key.endswith("/S02-episodes.json"):
            return s3_error(500, "InternalError", "We encountered an internal error.")
        return None

    faults.fail = manifest_fault
    result = run_cli("sync", "--prune-orphans")

    assert result.exit_code == 1, result.output
    assert "S02-episodes.json: cannot read the manifest" in result.output
    assert "--prune-orphans ignored" in result.output
    assert "episodes in no manifest" not in result.output  # S02's files count as known, not as orphans
    assert dataset_keys(bucket) == placed


# ---- 2. a rejected row that names no frame ------------------------------------------------------------------


def test_rows_whose_frame_number_is_broken_hold_back_every_plain_delete_of_their_episode(bucket: Bucket):
    sheets = {E01: season_rows(E01, 8), E02: season_rows(E02, 3)}
    placed = expected_state(sheets)
    place(bucket, placed)
    e01 = [dict(r) for r in sheets[E01]]
    e01[1][FRAME] = ""  # cleared, the rarity still on the row
    e01[2][FRAME] = e01[2][FRAME][:-5] + "-9-00"  # a typo
    e01[3][FRAME] += " (dup?)"
    e01[4][UNSUPERVISED] = ""  # a wanted removal: held back too while the episode has untied rows
    e02 = sheets[E02][:2]  # a removal in another episode goes ahead
    upload_season(bucket, {E01: e01, E02: e02}, sources=False)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # rejected rows are data findings: reported, files held
    # the dataset objects were put without sources: each kept frame is also a missing source (issue 22)
    findings = next(line for line in result.stdout.splitlines() if line.startswith("data findings:"))
    assert "3 rejected rows" in findings
    assert "S01E01: 3 rejected rows name no frame of this episode (sheet rows 3, 4, 5)" in result.output
    assert "every plain delete of S01E01 is held back" in result.output
    # nothing of S01E01 is deleted, and nothing of it moves: while its rows are in doubt its split counts the
    # frames they held where they are (issue 21.5), so the frames its sheet still classifies stay in place
    assert of_episode(dataset_keys(bucket), E01) == of_episode(placed, E01)
    assert of_episode(dataset_keys(bucket), E02) == expected_state({E02: e02})


# ---- 3. a rejected row and a sibling row of the same frame --------------------------------------------------


def test_a_frame_with_a_rejected_row_stays_exactly_where_it_is_even_if_another_row_places_it(bucket: Bucket):
    rows = sheet_rows(E01, ["Common", "Common", "Rare"])
    placed = expected_state({E01: rows})
    place(bucket, placed)
    edited = [dict(r) for r in rows]
    edited[0][UNSUPERVISED] = "Rare"  # row A moves frame 0 to Rare ...
    edited.append({**edited[0], UNSUPERVISED: "Comon"})  # ... row B names the same frame with a typo
    edited[1][UNSUPERVISED] = "Legendary"  # an ordinary move still happens
    upload_season(bucket, {E01: edited}, sources=False)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # a rejected row is a data finding: reported, its frame held
    findings = next(line for line in result.stdout.splitlines() if line.startswith("data findings:"))
    assert "1 rejected row" in findings
    assert "'Comon' not a rarity" in result.output
    after = dataset_keys(bucket)
    assert after[frame_number(E01, 0)] == placed[frame_number(E01, 0)]  # not moved
    assert after[frame_number(E01, 1)][1] == "Legendary"
    assert dataset_key(placed[frame_number(E01, 0)][0], "Rare", frame_number(E01, 0)) not in bucket.keys(ML_PREFIX)


# ---- 4. a renamed most-trusted header -----------------------------------------------------------------------


def test_a_renamed_rarity_header_skips_the_episode_unless_the_column_may_be_missing(bucket: Bucket, monkeypatch):
    renamed = "JONNY RECLASSIFICATION"
    rows = [{**r, SUPERVISED: "Rare", JONNY: "Legendary"} for r in sheet_rows(E01, ["Common"] * 4)]
    placed = {frame: (dataset, "Legendary") for frame, (dataset, _) in expected_state({E01: rows}).items()}
    place(bucket, placed)
    upload_season(bucket, {E01: rows}, sources=False)
    header = [renamed if h == JONNY else h for h in HEADER]
    put_sheet(bucket, E01, sheet_csv([{renamed if k == JONNY else k: v for k, v in r.items()} for r in rows], header))

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # what the sheet says: a data finding, the episode kept as it is
    assert f"S01E01 sheet: header '{renamed}' (column F) looks like a renamed '{JONNY}'" in result.output
    assert "skipped (data): sheet not usable" in result.stdout and "data findings: 1 (1 sheet skipped)" in result.stdout
    assert dataset_keys(bucket) == placed

    monkeypatch.setenv("TUTTLE_SHEET_OPTIONAL_COLUMNS", JONNY)  # the operator says the sheet may lack it
    intended = run_cli("sync")
    assert intended.exit_code == 0, intended.output
    assert {rarity for _, rarity in dataset_keys(bucket).values()} == {"Rare"}


def test_a_sheet_that_lost_a_rarity_column_earlier_runs_saw_skips_its_episode(bucket: Bucket, monkeypatch):
    rows = [{**r, SUPERVISED: "Rare", JONNY: "Legendary"} for r in sheet_rows(E01, ["Common"] * 3)]
    upload_season(bucket, {E01: rows})
    assert run_cli("sync").exit_code == 0
    placed = dataset_keys(bucket)
    memory = ML_PREFIX + "sheet_headers.json"
    assert json.loads(bucket.get(memory)) == {E01: sorted([JONNY, SUPERVISED, UNSUPERVISED])}
    without = [{k: v for k, v in r.items() if k != JONNY} for r in rows]
    put_sheet(bucket, E01, sheet_csv(without, [h for h in HEADER if h != JONNY]))  # the column deleted outright

    dry = run_cli("sync", "--dry-run")
    result = run_cli("sync")

    assert dry.exit_code == result.exit_code == 0, result.output  # a data finding: reported, the episode kept
    assert "skipped (data): rarity column lost" in result.stdout and "1 sheet skipped" in result.stdout
    assert run_cli("sync", "--strict").exit_code == 1
    assert f"S01E01 sheet: no '{JONNY}' column, which earlier runs saw; the episode is skipped" in result.output
    assert dataset_keys(bucket) == placed
    monkeypatch.setenv("TUTTLE_SHEET_OPTIONAL_COLUMNS", JONNY)  # removed on purpose
    assert run_cli("sync").exit_code == 0
    assert {rarity for _, rarity in dataset_keys(bucket).values()} == {"Rare"}
    monkeypatch.delenv("TUTTLE_SHEET_OPTIONAL_COLUMNS")
    assert run_cli("sync").exit_code == 0  # the memory now holds the sheet as it is
    assert json.loads(bucket.get(memory)) == {E01: sorted([SUPERVISED, UNSUPERVISED])}


# ---- 5. a run that lost its lock ----------------------------------------------------------------------------


def test_a_run_whose_lock_is_taken_over_deletes_nothing_and_exits_1_naming_the_new_holder(
    bucket: Bucket, faults: S3FaultProxy
):
    season = edited_season(bucket)
    before = set(snapshot(bucket, ML_PREFIX))

    def take_over(request: Request) -> None:
        if request.operation != "CopyObject":
            return
        if not bucket.keys(LOCK_KEY) or json.loads(bucket.get(LOCK_KEY))["run_id"] != "newholder001":
            put_lock(bucket, "ip-10-0-9-9", 4242, "newholder001", age_seconds=1)  # as a takeover would

    faults.fail = take_over
    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    assert "was taken over while this run worked" in result.output
    assert "run newholder001 (pid 4242 on ip-10-0-9-9" in result.output
    assert before <= bucket.keys(ML_PREFIX)  # no move source, no plain delete gone
    assert {key_of(season.after, frame) for frame in season.moved + season.added} <= bucket.keys(ML_PREFIX)
    assert json.loads(bucket.get(LOCK_KEY))["run_id"] == "newholder001"  # left to its holder


def test_a_renewed_lock_is_not_stale_and_a_renewal_after_a_takeover_fails(bucket: Bucket):
    now = [1_000_000.0]
    clock = lambda: now[0]  # noqa: E731
    first = S3Lock(make_s3_client(bucket.endpoint), bucket.name, LOCK_KEY, 60, "firstrun0001", clock=clock)
    second = S3Lock(make_s3_client(bucket.endpoint), bucket.name, LOCK_KEY, 60, "secondrun002", clock=clock)
    first.acquire()
    now[0] += 100  # older than the stale time, but renewed
    assert first.renew()
    with pytest.raises(LockHeld, match="run firstrun0001"):
        second.acquire()
    now[0] += 100  # not renewed since: stale, taken over
    second.acquire()
    assert first.still_ours() is not None and "run secondrun002" in first.still_ours()
    assert not first.renew()
    first.release()
    assert json.loads(bucket.get(LOCK_KEY))["run_id"] == "secondrun002"
    assert second.still_ours() is None
    second.release()


@pytest.mark.skipif(
    "faketime" in os.environ.get("LD_PRELOAD", ""),
    reason="under libfaketime 0.9.10 (any shifted date), Python's timed thread waits (threading.Event().wait(0.05), "
    "the renewal interval) never return; the renewal depends on intervals only, never on the date",
)
def test_a_held_lock_is_renewed_by_its_thread(bucket: Bucket):
    lock = S3Lock(make_s3_client(bucket.endpoint), bucket.name, LOCK_KEY, 60, "renewing0001", renew_seconds=0.05)
    with lock:
        deadline = time.monotonic() + 5
        while json.loads(bucket.get(LOCK_KEY)).get("renewed") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert json.loads(bucket.get(LOCK_KEY))["renewed"] is not None
        assert lock.still_ours() is None
    assert not bucket.keys(LOCK_KEY)


# ---- 7. the lock's own write answered 412 on a retry --------------------------------------------------------


def test_a_lock_write_whose_answer_was_lost_is_this_runs_own_lock(bucket: Bucket, faults: S3FaultProxy):
    rows = season_rows(E01, 3)
    upload_season(bucket, {E01: rows})
    lost: list[str] = []

    def answer_lost(request: Request) -> Answer | None:
        if lost or request.key != LOCK_KEY or request.operation != "PutObject":
            return None
        body = request.body
        bucket.client.put_object(Bucket=bucket.name, Key=LOCK_KEY, Body=body, IfNoneMatch="*")  # it went through
        lost.append(json.loads(body)["run_id"])
        return s3_error(500, "InternalError", "the answer never arrived")

    faults.fail = answer_lost
    result = run_cli("sync")

    assert lost
    assert result.exit_code == 0, result.output
    assert "another sync holds the run lock" not in result.output
    assert dataset_keys(bucket) == expected_state({E01: rows})
    assert not bucket.keys(LOCK_KEY)  # released, not left behind


# ---- 8. a key with a trailing newline -----------------------------------------------------------------------


def test_a_key_with_a_trailing_newline_is_not_a_dataset_object():
    layout = KeyLayout(ML_PREFIX, "tuttle_twins/", "thumbnails", ("train", "validate", "test"))
    good = dataset_key("train", "Rare", frame_number(E01, 0))
    current, unexpected = layout.parse_dataset_keys([good, good + "\n", dataset_key("test", "Trash", "x") + "\n"])
    assert current["key"].tolist() == [good]
    assert unexpected == [good + "\n", dataset_key("test", "Trash", "x") + "\n"]


# ---- 9. the per-episode delete guard ------------------------------------------------------------------------


def test_an_episode_losing_most_of_its_files_is_refused_though_the_run_as_a_whole_is_not(bucket: Bucket):
    e01 = season_rows(E01, 110)
    e02 = season_rows(E02, 950)
    placed = expected_state({E01: e01, E02: e02})
    put_many(bucket, [dataset_key(dataset, rarity, frame) for frame, (dataset, rarity) in placed.items()])
    upload_season(bucket, {E01: e01[:5], E02: e02}, sources=False)  # E01's sheet truncated: 105 of 110 leave

    refused = run_cli("sync")

    assert refused.exit_code == 1, refused.output
    assert "refusing the deletes: S01E01 would lose 105 of its 110 dataset files" in refused.output
    assert "more than 10% of its files and more than 100, per episode" in refused.output
    # nothing deleted; S01E01's five remaining frames are where the stratified split puts five frames
    # (--force and --max-delete: test_episode_delete_guard_boundaries)
    assert dataset_keys(bucket) == {**placed, **expected_state({E01: e01[:5]})}


def put_many(bucket: Bucket, keys: list[str]) -> None:
    """Place many small objects fast: straight into the session's in-process moto server (ThreadedMotoServer
    shares this process's backends), else by PutObject on threads. Only setup; the job itself goes through HTTP."""
    try:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        backend.get_bucket(bucket.name)
    except Exception:  # another moto layout: the slow way
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: bucket.put(k, JPEG), keys))
        return
    for key in keys:
        backend.put_object(bucket.name, key, JPEG)


@pytest.mark.parametrize(
    ("deletes", "files", "limit", "refused"),
    [(101, 110, None, True), (100, 110, None, False), (101, 1011, None, False), (5, 10, "20%", True),
     (5, 10, "50%", False), (5, 10, "4", True)],
)  # fmt: skip
def test_episode_delete_guard_boundaries(deletes: int, files: int, limit: str | None, refused: bool):
    index = pd.Index([E01, E02], name="episode_id")
    counts = pd.DataFrame({"deletes": [deletes, 0], "files": [files, 5000]}, index=index)
    message = episode_delete_guard(counts, DeleteLimit.parse(limit))
    assert (message is not None) == refused
    if refused:
        assert f"S01E01 would lose {deletes:,} of its {files:,} dataset files" in message and "S01E02" not in message
