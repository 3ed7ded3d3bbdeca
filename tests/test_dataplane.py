"""The obstore data plane: odd keys, one configuration for both S3 clients, retries, no process left behind.

Every case runs against moto server through the fault proxy (`proxied`), which sees the requests of both
clients; the CLI runs in-process, or as data_preparation.py in a process where exit codes and processes matter.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from conftest import Bucket, run_cli
from s3_fault_proxy import Answer, Request, S3FaultProxy, internal_error, slow_down
from season import (
    JPEG,
    ML_PREFIX,
    UNSUPERVISED,
    dataset_key,
    dataset_keys,
    frame_number,
    sheet_rows,
    source_key,
    upload_season,
)
from test_faults import expected_state

from tuttle_prep.core.plan import INVENTORY_COLUMNS, PLAN_COLUMNS, KeyLayout, Plan
from tuttle_prep.core.text import escape_control
from tuttle_prep.edges import aws
from tuttle_prep.edges.aws import make_client
from tuttle_prep.edges.s3_apply import apply_plan
from tuttle_prep.edges.s3_bucket import S3Bucket
from tuttle_prep.edges.s3_dataplane import (
    DataPlane,
    SessionCredentials,
    copy_objects,
    open_object_store,
    retries_from,
)
from tuttle_prep.edges.s3_listing import list_datasets

REPO = Path(__file__).resolve().parent.parent
SOURCES = source_key(frame_number("S01E01", 0)).rsplit("/", 1)[0] + "/"


def cli_process(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    """data_preparation.py ARGS in a process of its own process group (the environment is the test's)."""
    return subprocess.Popen(
        [sys.executable, str(REPO / "data_preparation.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kwargs,
    )


def state(bucket: Bucket, keys: list[str]) -> dict[str, tuple[str, bytes]]:
    """(ETag, body) of each key that exists."""
    etags = {k: e for k, (e, _) in bucket.etags().items()}
    return {k: (etags[k], bucket.get(k)) for k in keys if k in etags}


# ---- keys obstore cannot name -------------------------------------------------------------------------------

ODD_ML_KEYS = [
    f"{ML_PREFIX}train//x.jpg",  # an empty segment outside the rarity folders
    f"{ML_PREFIX}train/Rare//y.jpg",  # an empty segment in a rarity folder: obstore refuses the listing
    f"{ML_PREFIX}train/Common/./z.jpg",  # a `.` segment
    f"{ML_PREFIX}validate/Common/../w.jpg",  # a `..` segment
    f"{ML_PREFIX}test/",  # a folder marker of a dataset folder
    f"{ML_PREFIX}train/Uncommon/",  # a folder marker of a rarity folder: obstore names it without its '/'
    f"{ML_PREFIX}train/Trash/old/",  # a folder marker inside a rarity folder
    # not empty, each alone in its folder: obstore lists `<frame>.jpg/` as `<frame>.jpg`, refuses nothing
    f"{ML_PREFIX}train/Legendary/{frame_number('S01E01', 20)}.jpg/",
    f"{ML_PREFIX}validate/Rare/{frame_number('S01E01', 21)}.jpg//",
    f"{ML_PREFIX}test/Trash/{frame_number('S01E01', 22)[:-1]}\u0661.jpg",  # a non-ASCII digit (١)
    f"{ML_PREFIX}validate/Legendary/{frame_number('S01E01', 23)}\x07.jpg",  # a control character
]
#: the odd keys that are 0-byte folder markers (the others have a body)
MARKERS = {f"{ML_PREFIX}test/", f"{ML_PREFIX}train/Uncommon/", f"{ML_PREFIX}train/Trash/old/"}


def frames_placed(bucket: Bucket) -> dict[str, tuple[str, str]]:
    """The dataset objects of frames; AssertionError if the odd keys are not exactly the strangers."""
    strangers: set[str] = set()
    placed = dataset_keys(bucket, strangers=strangers)
    assert strangers == set(ODD_ML_KEYS)
    return placed


ODD_SOURCE_KEYS = [f"{SOURCES}/q.jpg", f"{SOURCES}./r.jpg", SOURCES]
MARKERS.add(SOURCES)


def test_keys_obstore_cannot_name_are_reported_as_named_and_left_byte_identical(
    bucket: Bucket, proxied: S3FaultProxy
) -> None:
    rarities = ["Rare", "Common", "Uncommon", "Trash", "Legendary", "Common"] * 3
    rows = sheet_rows("S01E01", rarities)
    upload_season(bucket, {"S01E01": rows[:15]})
    # a previous sync placed frames 0-11 in the folders the odd keys share; 12-14 are new; 16, 17 must go
    placed = run_cli("sync")
    assert placed.exit_code == 0, placed.output
    for i in (16, 17):
        bucket.put(dataset_key("train", "Rare", frame_number("S01E01", i)), JPEG)
    for n, key in enumerate(ODD_ML_KEYS + ODD_SOURCE_KEYS):
        bucket.put(key, b"" if key in MARKERS else f"odd {n}".encode())
    edited = rows[:12] + [{**r, UNSUPERVISED: "Legendary"} for r in rows[12:15]]  # three moves
    upload_season(bucket, {"S01E01": edited})
    odd_before = state(bucket, ODD_ML_KEYS + ODD_SOURCE_KEYS)
    assert set(odd_before) == set(ODD_ML_KEYS + ODD_SOURCE_KEYS)  # moto stores every one of them as named
    proxied.reset()

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    assert "copied 0, moved " in result.output and "deleted 2; failed 0" in result.output
    assert frames_placed(bucket) == expected_state({"S01E01": edited})
    assert state(bucket, ODD_ML_KEYS + ODD_SOURCE_KEYS) == odd_before
    for key in ODD_ML_KEYS:
        if key == f"{ML_PREFIX}train//x.jpg":
            assert f"left alone: {ML_PREFIX}train// (not a rarity folder; not listed)" in result.output
        else:
            assert f"left alone: {escape_control(key)}\n" in result.output, key  # as messages name keys
    touched = {r.key for r in proxied.requests if r.operation in ("CopyObject", "PutObject", "DeleteObject")}
    touched |= {k for r in proxied.of("DeleteObjects") for k in r.delete_keys()}
    assert not touched & set(ODD_ML_KEYS + ODD_SOURCE_KEYS)
    deleted = {k for r in proxied.of("DeleteObjects") for k in r.delete_keys()}
    strays = {dataset_key("train", "Rare", frame_number("S01E01", i)) for i in (16, 17)}
    assert strays <= deleted and len(deleted) == 5  # the two strays and the sources of the three moves

    # a frame whose only source is in a folder with odd keys is still found there
    bucket.put(source_key(frame_number("S01E01", 15)), b"frame 15")
    upload_season(bucket, {"S01E01": rows[:16]}, sources=False)
    again = run_cli("sync")
    assert again.exit_code == 0, again.output
    assert "copied 1, moved " in again.output and "deleted 0; failed 0" in again.output
    assert frames_placed(bucket) == expected_state({"S01E01": rows[:16]})  # planned from the whole listing
    assert state(bucket, ODD_ML_KEYS + ODD_SOURCE_KEYS) == odd_before


def test_rarity_folders_are_listed_by_obstore_into_arrow_columns(bucket: Bucket, proxied: S3FaultProxy) -> None:
    keys = {dataset_key(d, r, frame_number("S01E01", i)) for i, (d, r) in enumerate([("train", "Rare")] * 3)}
    keys.add(dataset_key("test", "Common", frame_number("S01E01", 9)))
    for key in keys:
        bucket.put(key, JPEG)
    layout = KeyLayout(ML_PREFIX, "tuttle_twins/", "thumbnails", ("train", "validate", "test"))

    inventory = list_datasets(S3Bucket(make_client("s3"), bucket.name), layout)

    assert set(inventory.keys) == keys
    assert isinstance(inventory.keys.array, pd.arrays.ArrowStringArray)  # no Python object per key
    assert isinstance(inventory.every_key().array, pd.arrays.ArrowStringArray)
    leaves = {r.query["prefix"]: r.headers.get("user-agent", "") for r in proxied.of("ListObjectsV2")}
    assert leaves[f"{ML_PREFIX}train/Rare/"] == leaves[f"{ML_PREFIX}test/Common/"] == "tuttle-prep"  # obstore's
    assert leaves[ML_PREFIX].startswith("Boto3/")  # the '/' listing that discovers the folders


# ---- one configuration: the credentials boto3 finds reach obstore -----------------------------------------


@pytest.mark.parametrize("where", ["profile", "environment"])
def test_obstore_signs_with_the_credentials_boto3_finds(
    bucket: Bucket, proxied: S3FaultProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    upload_season(bucket, {"S01E01": sheet_rows("S01E01", ["Rare", "Common", "Trash"])})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if where == "profile":
        key_id, token = "AKIAPROFILE00000001", None
        (tmp_path / "credentials").write_text(f"[nightly]\naws_access_key_id = {key_id}\naws_secret_access_key = s\n")
        (tmp_path / "config").write_text("[profile nightly]\nregion = us-east-1\n")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        monkeypatch.setenv("AWS_PROFILE", "nightly")
    else:
        key_id, token = "AKIAENVIRONMENT0002", "session-token-2"
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    copies = proxied.of("CopyObject")
    source_listings = [r for r in proxied.of("ListObjectsV2") if r.query.get("prefix") == SOURCES]
    assert len(copies) == 3 and source_listings  # obstore's requests (boto3 makes none of these)
    for request in copies + source_listings:
        assert request.access_key == key_id
        assert request.headers.get("x-amz-security-token") == token
    assert {r.access_key for r in proxied.requests} == {key_id}  # boto3's requests too


class _Meta:
    def __init__(self, endpoint_url: str, region_name: str) -> None:
        self.endpoint_url, self.region_name = endpoint_url, region_name


class _Client:
    def __init__(self, endpoint_url: str, region_name: str) -> None:
        self.meta = _Meta(endpoint_url, region_name)


@pytest.mark.parametrize(
    ("bucket_name", "endpoint", "region", "expected_endpoint", "virtual"),
    [
        (
            "tuttle-media",
            "https://s3.eu-west-1.amazonaws.com",
            "eu-west-1",
            "https://tuttle-media.s3.eu-west-1.amazonaws.com",
            "true",
        ),
        ("media.angel-nft.com", "https://s3.amazonaws.com", "us-east-1", "https://s3.amazonaws.com", "false"),
        ("tuttle-media", "http://127.0.0.1:9000", "us-east-1", "http://127.0.0.1:9000", "false"),
    ],
)
def test_obstore_addresses_the_endpoint_and_region_boto3_resolved(
    bucket_name: str, endpoint: str, region: str, expected_endpoint: str, virtual: str
) -> None:
    store = open_object_store(
        bucket_name, _Session(Credentials("AKIA", "s")), _Client(endpoint, region), workers=8, retries=2
    )
    assert store.config["endpoint"] == expected_endpoint
    assert store.config["region"] == region and store.config["virtual_hosted_style_request"] == virtual
    assert store.client_options["allow_http"] == str(endpoint.startswith("http://")).lower()
    assert store.retry_config["max_retries"] == 2


# ---- retries ------------------------------------------------------------------------------------------------


def small_plan(bucket: Bucket, copies: int) -> Plan:
    rows = []
    for i in range(copies):
        frame = frame_number("S01E01", i)
        bucket.put(source_key(frame), f"frame {i}")
        rows.append(("copy", "S01E01", frame, source_key(frame), dataset_key("train", "Common", frame)))
    return Plan(
        actions=pd.DataFrame(rows, columns=PLAN_COLUMNS),
        missing=pd.DataFrame(columns=PLAN_COLUMNS),
        orphans=pd.DataFrame(columns=INVENTORY_COLUMNS),
        episodes=["S01E01"],
    )


@pytest.mark.parametrize("attempts", [1, 3])
def test_copies_are_tried_aws_max_attempts_times_then_reported_by_key(
    bucket: Bucket, proxied: S3FaultProxy, monkeypatch: pytest.MonkeyPatch, attempts: int
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", str(attempts))
    plan = small_plan(bucket, 4)
    failing = {dataset_key("train", "Common", frame_number("S01E01", i)): answer for i, answer in ((1, 500), (2, 503))}

    def fail(request: Request) -> Answer | None:
        if request.operation != "CopyObject" or request.key not in failing:
            return None
        return internal_error() if failing[request.key] == 500 else slow_down()

    proxied.fail = fail

    result = apply_plan(S3Bucket(make_client("s3"), bucket.name, workers=8), plan)

    assert result.copied == 2
    assert sorted((f.action, f.key) for f in result.failures) == sorted(("copy", k) for k in failing)
    errors = {f.key: f.error for f in result.failures}
    assert "InternalError: We encountered an internal error" in errors[min(failing)]
    assert "SlowDown: Please reduce your request rate." in errors[max(failing)]
    for key in failing:
        assert len([r for r in proxied.of("CopyObject") if r.key == key]) == attempts
    assert set(bucket.keys(ML_PREFIX)) == {k for k in plan.actions["dst_key"] if k not in failing}


@pytest.mark.parametrize(("env", "retries"), [({}, 5), ({"AWS_MAX_ATTEMPTS": "3"}, 2), ({"AWS_MAX_ATTEMPTS": "1"}, 0)])
def test_obstore_retries_as_often_as_boto3(env: dict[str, str], retries: int) -> None:
    assert retries_from(env, aws.DEFAULT_RETRIES) == retries
    if not env:  # boto3's tries, the first included
        assert aws.make_client("s3").meta.config.retries["total_max_attempts"] == retries + 1


@pytest.mark.parametrize("fault", ["timeout", "error in a 200 answer"])
def test_a_copy_that_timed_out_or_got_an_error_inside_a_200_answer_is_retried(
    bucket: Bucket, proxied: S3FaultProxy, fault: str
) -> None:
    bucket.put("src/frame.jpg", b"frame")
    client = make_client("s3")
    store = open_object_store(bucket.name, aws.new_session(), client, workers=4, retries=1, timeout=1)
    first = (
        Answer(200, b"", delay=1.5)
        if fault == "timeout"
        else Answer(200, b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>x</Message></Error>")
    )
    proxied.fail = lambda r: first if r.operation == "CopyObject" and r.attempt == 1 else None
    outcomes: list[BaseException | None] = []

    copy_objects(DataPlane(store), [("src/frame.jpg", "dst/frame.jpg")], 4, lambda _, error: outcomes.append(error))

    assert outcomes == [None]
    assert [r.attempt for r in proxied.of("CopyObject")] == [1, 2]
    assert bucket.get("dst/frame.jpg") == b"frame"


# ---- the process: its own exit code, nothing left behind ---------------------------------------------------


def _process_group(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def test_a_sync_killed_mid_copy_leaves_no_process_of_its_run_alive(
    bucket: Bucket, proxied: S3FaultProxy, tmp_path: Path
) -> None:
    upload_season(bucket, {"S01E01": sheet_rows("S01E01", ["Common"] * 120)})
    proxied.delay = {"CopyObject": 0.05}  # a slow S3: the run is mid-copy for seconds
    process = cli_process("sync", "--workers", "4", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(proxied.of("CopyObject")) < 8 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed"
        assert _children(process.pid) == []  # copies and listings run in the process itself
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _process_group(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _process_group(process.pid) == [], "processes of the killed run are still alive"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if _process_group(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.stdout.close()


def test_the_process_exits_with_the_jobs_own_exit_code(bucket: Bucket, proxied: S3FaultProxy, tmp_path: Path) -> None:
    upload_season(bucket, {"S01E01": sheet_rows("S01E01", ["Rare", "Common", "Trash", "Legendary"])})
    failing = f"/{frame_number('S01E01', 0)}.jpg"
    proxied.fail = lambda r: internal_error() if r.operation == "CopyObject" and r.key.endswith(failing) else None
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1"}
    # obstore's runtime threads must be quiet before the interpreter finalizes, after listings and copies alike:
    # a run that aborted there would exit 134 instead of its own code
    for expected_code in (1, 0):
        if expected_code == 0:
            proxied.fail = None
        process = cli_process("sync", cwd=tmp_path, env=env)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == expected_code, output.decode(errors="replace")



# ---- credentials that expire ----------------------------------------------------------------------------


class _Session:
    def __init__(self, credentials) -> None:
        self._credentials = credentials

    def get_credentials(self):
        return self._credentials


def test_expiring_credentials_are_refreshed_by_botocore_and_handed_on_with_their_expiry() -> None:
    issued: list[str] = []

    def refresh() -> dict[str, str]:  # what SSO, an assumed role or the instance role hand botocore
        issued.append(f"ASIAROLE{len(issued):04d}")
        expiry = datetime.now(UTC) + (timedelta(hours=1) if len(issued) > 1 else timedelta(minutes=5))
        return {"access_key": issued[-1], "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

    provider = SessionCredentials(_Session(RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")))
    handed = provider()  # 5 minutes left: inside botocore's refresh window, so it fetched new ones first
    assert handed["access_key_id"] == "ASIAROLE0001" and handed["token"] == "t"
    assert timedelta(minutes=55) < handed["expires_at"] - datetime.now(UTC) <= timedelta(hours=1)
    assert provider()["access_key_id"] == "ASIAROLE0001"  # still fresh: not fetched again


def test_static_credentials_never_expire() -> None:
    handed = SessionCredentials(_Session(Credentials("AKIASTATIC", "s")))()
    assert handed == {"access_key_id": "AKIASTATIC", "secret_access_key": "s", "token": None, "expires_at": None}


# ---- progress on a terminal ---------------------------------------------------------------------------------


def test_a_sync_on_a_terminal_shows_listing_and_copy_progress(bucket: Bucket, proxied: S3FaultProxy, tmp_path) -> None:
    upload_season(bucket, {"S01E01": sheet_rows("S01E01", ["Rare", "Common"] * 10)})
    bucket.put(dataset_key("train", "Trash", frame_number("S01E01", 99)), JPEG)  # a dataset folder to list
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a fresh pty is 0 columns wide
    try:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "data_preparation.py"), "sync", "--max-delete", "5"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            ready, _, _ = select.select([controller], [], [], 60)
            try:
                chunk = os.read(controller, 65536) if ready else b""
            except OSError:  # the terminal closed: the process ended
                chunk = b""
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=60) == 0, shown.decode(errors="replace")
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    text = shown.decode(errors="replace")
    assert "list:" in text and "copy:" in text and "/20 [" in text, text  # the copy bar knows its total
