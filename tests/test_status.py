"""`status`: the last runs from their summaries in CloudWatch Logs (moto server), the run lock, the alarms."""

from __future__ import annotations

import json
import time

from conftest import run_cli
from season import put_sources, sheet_rows, upload_season

LOCK_KEY = "tuttle_twins/locks/data-prep.lock"


def run_lines(output: str) -> list[list[str]]:
    """The rows of the runs table (after its header and rule), split on whitespace."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("started (UTC)")) + 2
    rows = []
    for line in lines[start:]:
        if not line[:4].isdigit():
            if line.startswith(" "):
                continue  # a job failure message under its run
            break
        rows.append(line.split())
    return rows


def test_status_shows_the_last_runs_newest_first_the_lock_and_the_alarms(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/status")
    assert run_cli("alarm", "setup", "--phone", "+15555550123").exit_code == 0
    rows = sheet_rows("S01E01", ["Common", "Rare", "Uncommon", "Trash"])
    upload_season(bucket, {"S01E01": rows}, sources=False)
    put_sources(bucket, [r["FRAME NUMBER"] for r in rows[:3]])

    first = run_cli("sync")  # copies 3; one missing source (a data finding)
    second = run_cli("sync", "--strict")  # nothing to copy; the same finding fails it under --strict
    lock = {"host": "ip-10-0-0-9", "pid": 4242, "run_id": "other-run-1", "started": time.time() - 60}
    bucket.put(LOCK_KEY, json.dumps(lock))
    third = run_cli("sync")  # another run holds the lock: a job failure

    assert (first.exit_code, second.exit_code, third.exit_code) == (0, 1, 1)

    result = run_cli("status")

    assert result.exit_code == 0, result.output
    assert "last 3 runs, newest first (CloudWatch Logs group /tuttle-twins/status):" in result.stdout
    # started date, time, host, kind..., exit, copied, moved, deleted, job failures, data findings, duration
    table = [(r[-7], r[-6], r[-3], r[-2]) for r in run_lines(result.stdout)]
    assert table == [("1", "0", "1", "0"), ("1", "0", "0", "1"), ("0", "3", "0", "1")]
    kinds = [" ".join(r[3:-7]) for r in run_lines(result.stdout)]
    assert kinds == ["sync", "sync --strict", "sync"]
    assert "job failure: another sync holds the run lock" in result.stdout
    assert "held by run other-run-1 (pid 4242 on ip-10-0-0-9" in result.stdout
    assert "alarm tuttle-prep-run-failed: " in result.stdout and "alarm tuttle-prep-did-not-run: " in result.stdout


def test_status_without_cloudwatch_says_so_and_shows_the_lock(bucket):
    result = run_cli("status")

    assert result.exit_code == 0, result.output
    assert "CloudWatch is not configured (TUTTLE_LOG_GROUP is not set)" in result.stdout
    assert f"run lock s3://{bucket.name}/{LOCK_KEY}: free" in result.stdout
    assert "alarm tuttle-prep" not in result.stdout
