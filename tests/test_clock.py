"""What a command records and decides about time follows the clock it is handed, never the day the test runs:
version ids, the run lock's age and staleness, `status`. Each test hands a clock far from any real date."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from conftest import run_cli
from season import ML_PREFIX, put_sources, sheet_rows, upload_season

from tuttle_prep.core.clock import fixed_clock
from tuttle_prep.core.versions import versions_prefix

LOCK_KEY = "tuttle_twins/locks/data-prep.lock"
TAKEN = datetime(2031, 6, 1, 2, 0, tzinfo=UTC)


def upload_episode(bucket) -> None:
    rows = sheet_rows("S01E01", ["Common", "Rare", "Uncommon", "Trash"])
    upload_season(bucket, {"S01E01": rows}, sources=False)
    put_sources(bucket, [r["FRAME NUMBER"] for r in rows])


def test_the_run_lock_is_stale_by_the_handed_clock_and_status_tells_its_age_by_it(bucket, monkeypatch):
    upload_episode(bucket)
    monkeypatch.setenv("TUTTLE_LOCK_STALE_SECONDS", "3600")
    other = {"host": "ip-10-0-0-9", "pid": 4242, "run_id": "other-run-1", "started": TAKEN.timestamp()}
    bucket.put(LOCK_KEY, json.dumps(other))

    half_an_hour = fixed_clock(TAKEN + timedelta(minutes=30))
    young = run_cli("sync", clock=half_an_hour)
    assert young.exit_code == 1 and "another sync holds the run lock" in young.output + young.stderr
    assert not any(k.endswith(".jpg") for k in bucket.keys(ML_PREFIX))
    shown = run_cli("status", clock=half_an_hour)
    assert "held by run other-run-1 (pid 4242 on ip-10-0-0-9, started 2031-06-01 02:00:00 UTC, 30 min ago)" in (
        shown.stdout
    )

    two_hours = fixed_clock(TAKEN + timedelta(hours=2))
    assert "is older than TUTTLE_LOCK_STALE_SECONDS=3600" in run_cli("status", clock=two_hours).stdout
    old = run_cli("sync", clock=two_hours)  # the holder is taken for dead: this run takes the lock over
    assert old.exit_code == 0, old.output + old.stderr
    assert sum(k.endswith(".jpg") for k in bucket.keys(ML_PREFIX)) == 4
    assert LOCK_KEY not in bucket.keys(LOCK_KEY)  # released at the end


def test_the_version_id_is_the_sync_start_by_its_clock_and_a_clock_set_back_still_sorts_last(bucket):
    upload_episode(bucket)
    first = run_cli("sync", clock=fixed_clock(TAKEN))
    assert first.exit_code == 0, first.output
    [written] = {k for k in bucket.keys(versions_prefix(ML_PREFIX)) if k.endswith(".parquet")}
    assert written.startswith(f"{versions_prefix(ML_PREFIX)}20310601T020000Z-")

    rows = sheet_rows("S01E01", ["Rare", "Rare", "Uncommon", "Trash"])  # one reclassification: a new version
    upload_season(bucket, {"S01E01": rows}, sources=False)
    back = run_cli("sync", clock=fixed_clock(TAKEN - timedelta(days=365)))
    assert back.exit_code == 0, back.output + back.stderr
    ids = sorted(k for k in bucket.keys(versions_prefix(ML_PREFIX)) if k.endswith(".parquet"))
    assert len(ids) == 2 and ids[-1].startswith(f"{versions_prefix(ML_PREFIX)}20310601T020001Z-")


def test_an_unreadable_lock_object_is_as_old_as_its_last_modified_by_the_handed_clock(bucket, monkeypatch):
    """Its age is S3's LastModified against the clock: moto runs in this process, so a faked system clock moves
    both; a handed clock two hours ahead finds it stale."""
    upload_episode(bucket)
    monkeypatch.setenv("TUTTLE_LOCK_STALE_SECONDS", "3600")
    bucket.put(LOCK_KEY, b"\x00 not a lock written by tuttle-prep")
    [(_, modified)] = bucket.etags(LOCK_KEY).values()

    young = run_cli("sync", clock=fixed_clock(modified + timedelta(minutes=5)))
    assert young.exit_code == 1 and "the lock object is not readable" in young.output + young.stderr
    assert bucket.get(LOCK_KEY).startswith(b"\x00 not a lock")
    old = run_cli("sync", clock=fixed_clock(modified + timedelta(hours=2)))
    assert old.exit_code == 0, old.output + old.stderr
    assert sum(k.endswith(".jpg") for k in bucket.keys(ML_PREFIX)) == 4
