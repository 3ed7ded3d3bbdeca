"""Fault injection: every case runs the real CLI against moto server on loopback and checks the bucket.

Faults are injected at the HTTP level by the fault proxy of `s3_fault_proxy` (the `proxied` fixture): it sees
and can answer every request of both S3 clients, boto3's and obstore's (botocore event hooks cannot see
obstore's). The SIGKILL and SIGTERM cases run data_preparation.py in a process. After each fault the bucket
must hold every wanted frame or its previous copy, every source frame, and nothing outside the ML prefix may
have changed; the next run without the fault must converge.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import pandas as pd
import pytest
from conftest import Bucket, make_s3_client, run_cli
from s3_fault_proxy import Answer, Request, S3FaultProxy, delete_result, internal_error, s3_error, slow_down
from season import (
    FRAME,
    JPEG,
    ML_PREFIX,
    UNSUPERVISED,
    dataset_key,
    dataset_keys,
    frame_number,
    sheet_rows,
    upload_season,
)

from tuttle_prep.core.plan import wanted_frames
from tuttle_prep.edges.s3_dataplane import DataPlane
from tuttle_prep.edges.s3_lock import LockHolder, S3Lock
from tuttle_prep.errors import LockHeld
from tuttle_prep.settings import Settings

REPO = Path(__file__).resolve().parent.parent
LOCK_KEY = Settings().lock_key
RARITY_CYCLE = ["Common", "Rare", "Uncommon", "Common", "Trash", "Legendary", "Common", "Uncommon"]


# ---- helpers ---------------------------------------------------------------------------------------


def frame_of(key: str) -> str:
    """The frame a CopyObject request writes (its destination key ends in `<frame>.jpg`)."""
    return key.rsplit("/", 1)[-1].removesuffix(".jpg")


WRITES = ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects")


def writes(proxy: S3FaultProxy) -> list[tuple[str, str]]:
    """Every write request the job sent: (operation, key); a DeleteObjects once per key it names."""
    out: list[tuple[str, str]] = []
    for request in list(proxy.requests):
        if request.operation == "DeleteObjects":
            out += [("DeleteObjects", key) for key in request.delete_keys()]
        elif request.operation in WRITES:
            out.append((request.operation, request.key))
    return out


@pytest.fixture
def faults(proxied: S3FaultProxy, monkeypatch: pytest.MonkeyPatch) -> S3FaultProxy:
    """The proxy every request of the CLI goes through; AWS_MAX_ATTEMPTS=2 (one retry: exhausting them is fast)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    return proxied


def snapshot(bucket: Bucket, prefix: str = "") -> dict[str, str]:
    """{key: ETag} of every object under `prefix`."""
    return {key: etag for key, (etag, _) in bucket.etags(prefix).items()}


def outside_ml(state: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in state.items() if not k.startswith(ML_PREFIX)}


def season_rows(episode_id: str, count: int) -> list[dict[str, str]]:
    return sheet_rows(episode_id, [RARITY_CYCLE[i % len(RARITY_CYCLE)] for i in range(count)])


def expected_state(sheets: dict[str, list[dict[str, str]]]) -> dict[str, tuple[str, str]]:
    """{frame: (dataset, rarity)} the datasets must converge to (rows carry canonical UNSUPERVISED rarities)."""
    settings = Settings()
    frames = pd.DataFrame(
        [
            (episode_id, r[FRAME], r[UNSUPERVISED])
            for episode_id, rows in sheets.items()
            for r in rows
            if r.get(UNSUPERVISED)
        ],
        columns=["episode_id", "frame", "rarity"],
    )
    wanted = wanted_frames(
        frames, settings.split, settings.split_seed, settings.split_group_seconds, stratify=settings.split_stratify
    )
    return {w.frame: (w.dataset, w.rarity) for w in wanted.itertuples()}


@dataclass
class EditedSeason:
    """Datasets a previous sync left, and sheets edited since (S01E01: 4 moves, 3 plain deletes, 4 copies)."""

    sheets: dict[str, list[dict[str, str]]]
    before: dict[str, tuple[str, str]]
    after: dict[str, tuple[str, str]]
    moved: list[str]
    blanked: list[str]
    added: list[str]


def edited_season(bucket: Bucket) -> EditedSeason:
    """Place a synced season in the datasets, then upload its sheets with S01E01 edited (and every source)."""
    original = {"S01E01": season_rows("S01E01", 14), "S01E02": season_rows("S01E02", 3)}
    before = expected_state(original)
    for frame, (dataset, rarity) in before.items():
        bucket.put(dataset_key(dataset, rarity, frame), JPEG + frame.encode())
    rows = [dict(r) for r in original["S01E01"]]
    for r in rows[:4]:
        r[UNSUPERVISED] = "Legendary" if r[UNSUPERVISED] != "Legendary" else "Rare"
    for r in rows[4:7]:
        r[UNSUPERVISED] = ""
    rows += sheet_rows("S01E01", ["Rare"] * 4, start=14)
    sheets = {**original, "S01E01": rows}
    upload_season(bucket, sheets)
    return EditedSeason(
        sheets=sheets,
        before=before,
        after=expected_state(sheets),
        moved=[frame_number("S01E01", i) for i in range(4)],
        blanked=[frame_number("S01E01", i) for i in range(4, 7)],
        added=[frame_number("S01E01", i) for i in range(14, 18)],
    )


def moving(season: EditedSeason) -> list[str]:
    """Frames in the datasets before and after the edit, elsewhere after: the 4 reclassified ones, and the
    frames the stratified split moves within a rarity to keep its shares (computed by the split itself)."""
    return [f for f, place in season.after.items() if f in season.before and season.before[f] != place]


def key_of(state: dict[str, tuple[str, str]], frame: str) -> str:
    dataset, rarity = state[frame]
    return dataset_key(dataset, rarity, frame)


# ---- 1. S3 500 / SlowDown on a share of copies ---------------------------------------------------------


def test_failing_copies_are_retried_then_reported_and_no_source_of_a_failed_move_is_deleted(
    bucket: Bucket, faults: S3FaultProxy
) -> None:
    season = edited_season(bucket)
    before, after = season.before, season.after
    uploaded = snapshot(bucket)
    transient = {season.moved[0], season.added[0]}  # fail once with SlowDown, then succeed
    permanent = {season.moved[1], season.added[1]}  # fail on every attempt with InternalError
    attempts: Counter[str] = Counter()

    def copy_fault(request: Request) -> Answer | None:
        if request.operation != "CopyObject":
            return None
        frame = frame_of(request.key)
        attempts[frame] += 1
        if frame in permanent:
            return s3_error(500, "InternalError", "We encountered an internal error.")
        if frame in transient and attempts[frame] == 1:
            return slow_down()
        return None

    faults.fail = copy_fault
    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    moves = moving(season)
    assert set(season.moved) <= set(moves)
    assert f"copied 3, moved {len(moves) - 1}, deleted 0; failed 2; 3 deletes held back" in result.output
    for frame in permanent:
        assert f"{key_of(after, frame)} failed" in result.output
        assert attempts[frame] == 2  # AWS_MAX_ATTEMPTS=2 is honoured: one retry, then reported
    assert all(attempts[frame] == 2 for frame in transient)
    keys = bucket.keys()
    # the failed move's source stays; its destination was never written
    assert key_of(before, season.moved[1]) in keys and key_of(after, season.moved[1]) not in keys
    # retried copies and the other moves landed; those moves' sources are gone
    for frame in transient | set(moves) - {season.moved[1]}:
        assert key_of(after, frame) in keys
    for frame in set(moves) - {season.moved[1]}:
        assert key_of(before, frame) not in keys
    assert key_of(after, season.added[1]) not in keys
    # no plain delete ran while a copy had failed
    assert all(key_of(before, frame) in keys for frame in season.blanked)
    assert outside_ml(snapshot(bucket)) == outside_ml(uploaded)

    faults.reset()
    rerun = run_cli("sync")
    assert rerun.exit_code == 0, rerun.output
    assert dataset_keys(bucket) == after
    assert outside_ml(snapshot(bucket)) == outside_ml(uploaded)


# ---- 3. DeleteObjects answering 200 with per-key errors ------------------------------------------------


def test_per_key_delete_errors_in_a_200_response_are_counted_and_the_next_run_deletes_them(
    bucket: Bucket, faults: S3FaultProxy
) -> None:
    season = edited_season(bucket)
    uploaded = snapshot(bucket)
    # one plain delete and one move source refuse to go; everything else in the batch is really deleted
    refusing = {key_of(season.before, season.blanked[1]), key_of(season.before, season.moved[2])}
    batches: list[list[str]] = []

    def delete_fault(request: Request) -> Answer | None:
        if request.operation != "DeleteObjects":
            return None
        keys = request.delete_keys()
        batches.append(keys)
        others = [k for k in keys if k not in refusing]
        if others:
            bucket.client.delete_objects(Bucket=bucket.name, Delete={"Objects": [{"Key": k} for k in others]})
        return delete_result({k: ("InternalError", "try again") for k in keys if k in refusing})

    faults.fail = delete_fault
    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    assert refusing <= {k for batch in batches for k in batch}
    for key in refusing:
        assert f"delete {key} failed: InternalError: try again" in result.output
    assert f"copied 4, moved {len(moving(season)) - 1}, deleted 2; failed 2" in result.output
    keys = bucket.keys()
    assert refusing <= keys
    assert not ({key_of(season.before, f) for f in season.blanked} - refusing) & keys
    assert outside_ml(snapshot(bucket)) == outside_ml(uploaded)

    faults.reset()
    rerun = run_cli("sync")
    assert rerun.exit_code == 0, rerun.output
    assert not (refusing & bucket.keys())
    assert dataset_keys(bucket) == season.after


# ---- 4. ListObjectsV2 failing mid-pagination ------------------------------------------------------------


def _fail_second_pages_under(prefix: str) -> Callable[[Request], Answer | None]:
    def list_fault(request: Request) -> Answer | None:
        continued = request.operation == "ListObjectsV2" and "continuation-token" in request.query
        if continued and request.query.get("prefix") == prefix:
            return internal_error()
        return None

    return list_fault


@pytest.mark.parametrize(
    ("scope", "prefix"),
    [
        ("datasets", "tuttle_twins/ML/train/"),
        ("rarity folder", "tuttle_twins/ML/train/Common/"),
        ("manifests", "tuttle_twins/manifests/"),
    ],
)
def test_a_listing_failing_mid_pagination_changes_nothing(
    bucket: Bucket, faults: S3FaultProxy, scope: str, prefix: str
) -> None:
    edited_season(bucket)
    if scope == "manifests":  # more manifest files than one page holds
        for season in ("S02", "S03"):
            bucket.put(f"tuttle_twins/manifests/{season}-episodes.json", "[]")
    uploaded = snapshot(bucket)
    assert len(snapshot(bucket, prefix)) > 2  # more than one page
    faults.page_size = 2  # many pages from a small bucket
    faults.fail = _fail_second_pages_under(prefix)

    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"listing s3://{bucket.name}/{prefix}" in result.output and "InternalError" in result.output
    assert "nothing was planned or changed" in result.output
    assert snapshot(bucket) == uploaded
    assert any("continuation-token" in r.query for r in faults.of("ListObjectsV2"))
    assert not [w for w in writes(faults) if w[1] != LOCK_KEY]


def test_a_source_listing_failing_mid_pagination_skips_only_that_episode(
    bucket: Bucket, faults: S3FaultProxy
) -> None:
    season = edited_season(bucket)
    e02 = [dict(r) for r in season.sheets["S01E02"]]
    e02[0][UNSUPERVISED] = "Legendary" if e02[0][UNSUPERVISED] != "Legendary" else "Rare"
    upload_season(bucket, {**season.sheets, "S01E02": e02}, sources=False)
    wanted_e02 = expected_state({"S01E02": e02})
    ml_before = snapshot(bucket, ML_PREFIX)
    e01_folder = "tuttle_twins/s01e01/default_eng/v1/frames/thumbnails/"
    faults.page_size = 2
    faults.fail = _fail_second_pages_under(e01_folder)

    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    assert "S01E01" in result.output and "source listing failed" in result.output
    e01_keys = {k: v for k, v in snapshot(bucket, ML_PREFIX).items() if "_S01_E01_" in k}
    assert e01_keys == {k: v for k, v in ml_before.items() if "_S01_E01_" in k}
    assert {f: v for f, v in dataset_keys(bucket).items() if f.startswith("TT_S01_E02")} == wanted_e02


# ---- 5. two runs at once: the S3 run lock ----------------------------------------------------------------


def put_lock(bucket: Bucket, host: str, pid: int, run_id: str, age_seconds: float) -> None:
    bucket.put(LOCK_KEY, LockHolder(host, pid, run_id, time.time() - age_seconds).to_json())


def test_a_run_finding_the_lock_held_on_this_host_exits_1_naming_the_holder_and_writes_nothing(
    bucket: Bucket, faults: S3FaultProxy
) -> None:
    edited_season(bucket)
    put_lock(bucket, socket.gethostname(), os.getpid(), "f00dcafe0001", age_seconds=90)
    uploaded = snapshot(bucket)

    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    assert "another sync holds the run lock" in result.output
    assert f"run f00dcafe0001 (pid {os.getpid()} on {socket.gethostname()}" in result.output
    assert snapshot(bucket) == uploaded
    assert writes(faults) == [("PutObject", LOCK_KEY)]  # only the conditional write that lost


def test_a_lock_held_on_another_host_blocks_a_real_run_but_not_a_dry_run(bucket: Bucket) -> None:
    season = edited_season(bucket)
    put_lock(bucket, "ip-10-0-3-17", 4242, "beefbeef0002", age_seconds=600)
    uploaded = snapshot(bucket)

    blocked = run_cli("sync")
    dry = run_cli("sync", "--dry-run")

    assert blocked.exit_code == 1
    assert "run beefbeef0002 (pid 4242 on ip-10-0-3-17" in blocked.output and "10 min ago" in blocked.output
    assert dry.exit_code == 0, dry.output
    assert f"dry run: would copy 4, move {len(moving(season))}, delete 3" in dry.output
    assert snapshot(bucket) == uploaded


@pytest.mark.parametrize("holder", ["stale on another host", "dead process on this host"])
def test_a_stale_lock_is_taken_over_and_released_at_the_end(bucket: Bucket, holder: str) -> None:
    season = edited_season(bucket)
    if holder == "stale on another host":
        put_lock(bucket, "ip-10-0-3-17", 4242, "0ldrun000003", age_seconds=Settings().lock_stale_seconds + 60)
    else:
        finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        put_lock(bucket, socket.gethostname(), int(finished.stdout), "k1lledrun004", age_seconds=30)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    assert "took over the run lock" in result.output
    assert dataset_keys(bucket) == season.after
    assert not bucket.keys(LOCK_KEY)


def test_the_lock_timeout_is_read_from_tuttle_lock_stale_seconds(bucket: Bucket, monkeypatch) -> None:
    bucket.put("tuttle_twins/manifests/S01-episodes.json", "[]")  # a run with nothing to do
    put_lock(bucket, "ip-10-0-3-17", 4242, "beefbeef0005", age_seconds=150)
    monkeypatch.setenv("TUTTLE_LOCK_STALE_SECONDS", "600")
    assert "another sync holds the run lock" in run_cli("sync").output
    monkeypatch.setenv("TUTTLE_LOCK_STALE_SECONDS", "120")
    taken = run_cli("sync")
    assert taken.exit_code == 0 and "took over the run lock" in taken.output
    assert not bucket.keys(LOCK_KEY)


def test_the_lock_is_released_when_the_run_fails_or_raises(
    bucket: Bucket, faults: S3FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_season(bucket, {"S01E01": season_rows("S01E01", 2)})

    async def broken_copy(self: DataPlane, src: str, dst: str) -> None:
        raise RuntimeError("injected bug")

    with monkeypatch.context() as patched:
        patched.setattr(DataPlane, "copy", broken_copy)
        with pytest.raises(RuntimeError, match="injected bug"):
            run_cli("sync")
    assert not bucket.keys(LOCK_KEY)

    faults.fail = lambda request: internal_error() if request.operation == "CopyObject" else None
    assert run_cli("sync").exit_code == 1
    assert not bucket.keys(LOCK_KEY)


def test_a_second_lock_on_the_same_key_is_refused_naming_the_first(bucket: Bucket) -> None:
    first = S3Lock(make_s3_client(bucket.endpoint), bucket.name, LOCK_KEY, 3600, "firstrun0001")
    second = S3Lock(make_s3_client(bucket.endpoint), bucket.name, LOCK_KEY, 3600, "secondrun002")
    with first:
        with pytest.raises(LockHeld, match=f"run firstrun0001 \\(pid {os.getpid()} on "):
            second.acquire()
        assert json.loads(bucket.get(LOCK_KEY))["run_id"] == "firstrun0001"
    with second:
        assert json.loads(bucket.get(LOCK_KEY))["run_id"] == "secondrun002"
    assert not bucket.keys(LOCK_KEY)


def test_of_two_runs_taking_over_one_stale_lock_exactly_one_wins(bucket: Bucket) -> None:
    put_lock(bucket, "ip-10-0-3-17", 4242, "0ldrun000006", age_seconds=7200)
    contenders = [S3Lock(make_s3_client(bucket.endpoint), bucket.name, LOCK_KEY, 3600, f"run{i}") for i in range(2)]
    # both read the stale lock before either writes: the conditional takeover must let only one through
    stale = contenders[0]._read()
    for lock in contenders:
        lock._read = lambda stale=stale: stale  # type: ignore[method-assign]
    results = []
    for lock in contenders:
        try:
            lock.acquire()
            results.append("won")
        except LockHeld:
            results.append("held")
    assert results == ["won", "held"]
    assert json.loads(bucket.get(LOCK_KEY))["run_id"] == "run0"


def test_a_lock_taken_over_while_running_is_not_deleted_by_its_old_holder(bucket: Bucket) -> None:
    old = S3Lock(make_s3_client(bucket.endpoint), bucket.name, LOCK_KEY, 3600, "slowrun00007")
    old.acquire()
    put_lock(bucket, "ip-10-0-3-17", 4242, "newrun000008", age_seconds=1)  # as a takeover would
    old.release()
    assert json.loads(bucket.get(LOCK_KEY))["run_id"] == "newrun000008"


# ---- 2. SIGKILL in the middle of a large apply ------------------------------------------------------------


def test_a_run_killed_mid_apply_is_converged_by_the_next_run(bucket: Bucket, tmp_path: Path) -> None:
    sheets = {eid: season_rows(eid, 150) for eid in ("S01E01", "S01E02")}
    upload_season(bucket, sheets)
    wanted = expected_state(sheets)
    sources = snapshot(bucket, "tuttle_twins/s01")
    command = [sys.executable, str(REPO / "data_preparation.py"), "sync", "--workers", "1"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if len(bucket.keys(ML_PREFIX)) >= 10:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGSTOP)  # frozen mid-apply: the lock is held by a live process
        assert process.poll() is None, "the run finished before it could be killed; make the plan larger"
        time.sleep(0.5)  # a copy request sent just before the freeze may still land on the server
        copied = len(dataset_keys(bucket))
        assert 0 < copied < len(wanted)

        second = run_cli("sync")  # another run on this host meanwhile: refused, naming the first
        assert second.exit_code == 1
        assert f"(pid {process.pid} on {socket.gethostname()}" in second.output
        assert len(dataset_keys(bucket)) == copied

        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    interrupted = dataset_keys(bucket)
    assert 0 < len(interrupted) < len(wanted)
    assert all(wanted[frame] == place for frame, place in interrupted.items())
    assert bucket.keys(LOCK_KEY)  # SIGKILL skips every finally

    rerun = run_cli("sync")
    assert rerun.exit_code == 0, rerun.output
    assert "took over the run lock" in rerun.output and "no longer runs on this host" in rerun.output
    assert dataset_keys(bucket) == wanted
    assert snapshot(bucket, "tuttle_twins/s01") == sources
    assert not bucket.keys(LOCK_KEY)


def start_sync(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    """`python data_preparation.py sync ARGS` in a process (the real entry point and its signal handlers);
    its stdout and stderr go to files in `tmp_path` (returned: the stderr file)."""
    command = [sys.executable, str(REPO / "data_preparation.py"), "sync", *args]
    err = tmp_path / "stderr.txt"
    with (tmp_path / "stdout.txt").open("wb") as out, err.open("wb") as errors:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=errors, env={**os.environ, **(env or {})})
    return process, err


def run_summary(bucket: Bucket, log_group: str) -> dict:
    """The run summary the (only) run shipped to `log_group` on moto (read directly, not through the proxy)."""
    logs = boto3.client(
        "logs",
        endpoint_url=bucket.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=log_group)["logStreams"]]
    assert len(streams) == 1, streams
    events = logs.get_log_events(logGroupName=log_group, logStreamName=streams[0], startFromHead=True)["events"]
    records = [json.loads(e["message"]) for e in events if e["message"].startswith("{")]
    summaries = [r for r in records if r.get("event") == "run_summary"]
    assert len(summaries) == 1, events
    return summaries[0]


def wait_for_copies(proxy: S3FaultProxy, process: subprocess.Popen, count: int) -> None:
    """Until `count` CopyObject requests reached the proxy (the run is mid-apply, copies in flight)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and len(proxy.of("CopyObject")) < count:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be stopped"


def copy_destinations(proxy: S3FaultProxy) -> set[str]:
    return {request.key for request in proxy.of("CopyObject")}


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "Ctrl-C", "SIGHUP"]
)
def test_a_run_stopped_mid_apply_drains_its_copies_releases_the_lock_and_deletes_nothing(
    bucket: Bucket, proxied: S3FaultProxy, tmp_path: Path, signum: signal.Signals
) -> None:
    rows = season_rows("S01E01", 300)
    upload_season(bucket, {"S01E01": rows})
    stray = dataset_key("train", "Rare", frame_number("S01E01", 9999))  # a plain delete the run would make
    bucket.put(stray, JPEG)
    group = f"/tuttle-twins/stopped-{bucket.name}"
    proxied.delay = {"CopyObject": 0.8}  # every copy is in flight 0.8 s: 8 of them at any time
    process, stderr = start_sync(tmp_path, "--workers", "8", env={"TUTTLE_LOG_GROUP": group})
    try:
        wait_for_copies(proxied, process, 12)
        process.send_signal(signum)
        code = process.wait(timeout=30)
        at_exit = dataset_keys(bucket)  # what the bucket holds the moment the process has ended
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    sent = copy_destinations(proxied)
    time.sleep(1.0)  # a copy the process let go of would land now (the proxy forwards it after its delay)
    # every copy sent had landed before the process ended: it waited for them (none lands after)
    assert at_exit == dataset_keys(bucket)
    assert {dataset_key(dataset, rarity, frame) for frame, (dataset, rarity) in at_exit.items()} == sent | {stray}
    assert 12 <= len(sent) < 300  # stopped mid-way, queued copies never sent
    assert code == 128 + signum
    assert stray in bucket.keys(ML_PREFIX)  # deletes come after every copy: none started
    assert not proxied.of("DeleteObjects") and not [r for r in proxied.of("DeleteObject") if r.key != LOCK_KEY]
    assert not bucket.keys(LOCK_KEY)  # the finally ran: the next run need not wait for a takeover
    lines = stderr.read_text().splitlines()
    name = signal.Signals(signum).name
    assert lines[-1].startswith(f"stopped by {name}: ") and lines[-1].endswith(f"(exit code {128 + signum})")
    assert sum("stopped by" in line for line in lines) == 1 and "Traceback" not in stderr.read_text(), lines
    assert "Aborted!" not in lines
    assert run_summary(bucket, group)["exit_code"] == 128 + signum
    proxied.delay = {}
    rerun = run_cli("sync")
    assert rerun.exit_code == 0, rerun.output
    assert dataset_keys(bucket) == expected_state({"S01E01": rows})


def wait_until_it_catches_sigterm(pid: int, timeout: float = 60.0) -> None:
    """Wait until the process has installed its SIGTERM handler (Linux: the SigCgt mask in /proc/PID/status).

    A fixed sleep is not enough on a loaded machine: a signal sent before the handler exists kills the process
    by the default action, which is the interpreter's start-up, not the job's.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:") and int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
                return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not install a SIGTERM handler within {timeout} s")


def test_signals_in_a_burst_while_the_program_starts_end_it_with_143_and_one_line(
    bucket: Bucket, tmp_path: Path
) -> None:
    # the first SIGTERM stops the imports; the next ones arrive while the process leaves: none may kill it
    # by the signal's default action (the interpreter restores it while it finalizes)
    upload_season(bucket, {"S01E01": season_rows("S01E01", 4)})
    for attempt in range(3):
        process, stderr = start_sync(tmp_path)
        try:
            wait_until_it_catches_sigterm(process.pid)  # the entry script's first lines; then the libraries load
            while process.poll() is None:
                process.send_signal(signal.SIGTERM)
                time.sleep(0.002)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        lines = stderr.read_text().splitlines()
        assert code == 143, (attempt, code, lines)
        assert lines and lines[-1].startswith("stopped by SIGTERM: "), lines
        assert sum("stopped by" in line for line in lines) == 1 and "Traceback" not in stderr.read_text()
    assert not bucket.keys(ML_PREFIX) and not bucket.keys(LOCK_KEY)


def test_a_sync_whose_stdout_is_closed_ends_as_its_summary_says_with_one_line(bucket: Bucket, tmp_path: Path) -> None:
    # `sync | head -1`: the reader is gone before the table is written; the run's work and its outcome stand
    rows = season_rows("S01E01", 20)
    upload_season(bucket, {"S01E01": rows})
    group = f"/tuttle-twins/pipe-{bucket.name}"
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout fails with EPIPE (Python ignores SIGPIPE)
    err = tmp_path / "stderr.txt"
    command = [sys.executable, str(REPO / "data_preparation.py"), "sync"]
    try:
        with err.open("wb") as errors:
            process = subprocess.run(
                command, cwd=tmp_path, stdout=write_end, stderr=errors, timeout=120,
                env={**os.environ, "TUTTLE_LOG_GROUP": group},
            )
    finally:
        os.close(write_end)
    text = err.read_text()
    summary = run_summary(bucket, group)
    assert dataset_keys(bucket) == expected_state({"S01E01": rows})
    assert summary["exit_code"] == 0 and summary.get("job_failures", 0) == 0, summary
    assert process.returncode == 0, text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    line = "stdout was closed (broken pipe): the rest of the output was not shown (exit code 0)"
    assert text.splitlines()[-1] == line


def _sigterm_during(process_box: list[subprocess.Popen], marker: bytes) -> Callable[[Request], Answer | None]:
    """A fault-proxy hook: on the first request whose body or target names `marker`, SIGTERM the run's process
    and hold the request 0.3 s, so the signal is handled while the run is on its way out."""

    def hook(request: Request) -> Answer | None:
        named = marker in request.body or marker.decode() in request.headers.get("x-amz-target", "")
        if named and process_box and not getattr(hook, "sent", False):
            hook.sent = True  # type: ignore[attr-defined]
            process_box[0].send_signal(signal.SIGTERM)
            time.sleep(0.3)
        return None

    return hook


@pytest.mark.parametrize("marker", [b"PutMetricData", b"run_summary"], ids=["metrics", "summary"])
def test_a_sigterm_while_the_run_writes_its_outcome_changes_nothing(
    bucket: Bucket, proxied: S3FaultProxy, tmp_path: Path, marker: bytes
) -> None:
    upload_season(bucket, {"S01E01": season_rows("S01E01", 8)})
    group = f"/tuttle-twins/late-{bucket.name}"
    box: list[subprocess.Popen] = []
    proxied.fail = hook = _sigterm_during(box, marker)
    process, stderr = start_sync(tmp_path, env={"TUTTLE_LOG_GROUP": group})
    box.append(process)
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert getattr(hook, "sent", False), "the run never wrote its outcome"
    text = stderr.read_text()
    assert "Traceback" not in text and "Exception ignored" not in text, text
    summary = run_summary(bucket, group)
    assert code == summary["exit_code"] == 0, text
    assert text.splitlines()[-1] == "SIGTERM arrived as the run was ending and changed nothing (exit code 0)"


def test_the_copies_a_run_killed_mid_move_leaves_behind_are_removed_without_force(bucket: Bucket) -> None:
    # a big reclassification killed after its copies, before its deletes: every moved frame is in two places
    rows = sheet_rows("S01E01", ["Rare"] * 105)
    wanted = expected_state({"S01E01": rows})
    upload_season(bucket, {"S01E01": rows}, sources=False)
    for frame, (dataset, rarity) in wanted.items():
        bucket.put(dataset_key(dataset, rarity, frame), JPEG + frame.encode())
        bucket.put(dataset_key(dataset, "Common", frame), JPEG + frame.encode())

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    assert "done: copied 0, moved 0, deleted 105; failed 0" in result.output
    assert dataset_keys(bucket) == wanted


def test_the_delete_guard_still_counts_frames_leaving_the_datasets(bucket: Bucket) -> None:
    rows = sheet_rows("S01E01", ["Rare"] * 105)
    placed = expected_state({"S01E01": rows})
    upload_season(bucket, {"S01E01": rows[:4]}, sources=False)  # 101 rows removed from the sheet
    for frame, (dataset, rarity) in placed.items():
        bucket.put(dataset_key(dataset, rarity, frame), JPEG + frame.encode())

    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    assert "refusing 101 deletes of the 105 dataset files" in result.output
    # the four frames still in the sheet are where the split puts four Rare frames; the others stay
    assert dataset_keys(bucket) == {**placed, **expected_state({"S01E01": rows[:4]})}


# ---- 6. credentials missing, wrong region, bucket missing -------------------------------------------------


def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254 from a test


def _moved_permanently(request: Request) -> Answer | None:
    # botocore follows one redirect to the named region; a store that redirects again is reported
    if request.operation == "HeadBucket" or (request.key == "" and request.method == "GET"):
        return Answer(301, headers={"x-amz-bucket-region": "eu-west-1"})
    return None


def _listing_without_a_prefix_denied(request: Request) -> Answer | None:
    # docs/deploy.md's policy: s3:ListBucket only with `StringLike` on s3:prefix, so a HeadBucket or a listing
    # without a prefix is denied, as AWS denies it
    if request.key == "" and request.method in ("GET", "HEAD") and not request.query.get("prefix"):
        return s3_error(403, "AccessDenied", "no s3:prefix")
    return None


def test_sync_works_under_a_policy_that_denies_a_listing_without_a_prefix(
    bucket: Bucket, faults: S3FaultProxy
) -> None:
    upload_season(bucket, {"S01E01": season_rows("S01E01", 3)})
    faults.fail = _listing_without_a_prefix_denied
    result = run_cli("sync")
    assert result.exit_code == 0, result.output + result.stderr
    assert len([k for k in snapshot(bucket, ML_PREFIX) if k.endswith(".jpg")]) == 3


@pytest.mark.parametrize(
    ("case", "sentence"),
    [
        ("credentials missing", "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
        ("bucket in another region", "is in another region than us-east-1 (set AWS_REGION)"),
        ("bucket missing", "bucket 'no-such-bucket-here' does not exist (check TUTTLE_BUCKET)"),
        ("lock not writable", "cannot write the run lock"),
    ],
)
def test_a_configuration_fault_exits_2_with_one_sentence_and_changes_nothing(
    bucket: Bucket, faults: S3FaultProxy, monkeypatch: pytest.MonkeyPatch, case: str, sentence: str
) -> None:
    upload_season(bucket, {"S01E01": season_rows("S01E01", 3)})
    uploaded = snapshot(bucket)
    if case == "credentials missing":
        _no_credentials(monkeypatch)
    elif case == "bucket in another region":
        faults.fail = _moved_permanently
    elif case == "bucket missing":
        monkeypatch.setenv("TUTTLE_BUCKET", "no-such-bucket-here")
    else:
        faults.fail = lambda request: s3_error(403, "AccessDenied") if request.operation == "PutObject" else None

    result = run_cli("sync")

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("configuration error: ") and sentence in first_line
    assert "Traceback" not in result.output
    assert snapshot(bucket) == uploaded
