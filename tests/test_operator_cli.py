"""What an operator meets at the terminal (issue 23): unusable AWS settings, selectors that match nothing, `status`
pointed at the wrong place, where the metrics go, -v/-q, JSON output, `config show`. The real CLI against moto
server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
from conftest import SECRET, run_cli
from season import ML_PREFIX, frame_number, put_sources, sheet_rows, upload_season

from tuttle_prep.edges.cloudwatch import NAMESPACE

#: every command that talks to AWS, as an operator would type it (DEST is replaced by a temporary folder)
AWS_COMMANDS = [
    ("config", "show"),
    ("sync",),
    ("sync", "--dry-run"),
    ("status",),
    ("report",),
    ("manifests", "list"),
    ("versions", "list"),
    ("versions", "diff", "latest"),
    ("pull", "--dataset", "train", "--dest", "DEST"),
    ("pull", "--version", "latest", "--dest", "DEST"),
    ("split", "preview"),
    ("alarm", "test"),
]
BAD_AWS_SETTINGS = [
    ({"AWS_MAX_ATTEMPTS": "abc"}, "AWS_MAX_ATTEMPTS"),
    ({"AWS_PROFILE": "nosuch"}, "AWS_PROFILE"),
    ({"AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY"),
    ({"AWS_ENDPOINT_URL": "not-a-url"}, "AWS_ENDPOINT_URL"),
]


def season_of_four(bucket) -> list[str]:
    rows = sheet_rows("S01E01", ["Common", "Rare", "Uncommon", "Common"])
    upload_season(bucket, {"S01E01": rows}, sources=False)
    frames = [frame_number("S01E01", i) for i in range(4)]
    put_sources(bucket, frames)
    return frames


def metric_names(cloudwatch, namespace: str = NAMESPACE) -> set[str]:
    return {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]}


@pytest.mark.parametrize(("env", "setting"), BAD_AWS_SETTINGS, ids=[s for _, s in BAD_AWS_SETTINGS])
@pytest.mark.parametrize("command", AWS_COMMANDS, ids=[" ".join(c) for c in AWS_COMMANDS])
def test_an_unusable_aws_setting_is_one_sentence_naming_it_and_exit_2(
    bucket, monkeypatch, tmp_path, command, env, setting
):
    season_of_four(bucket)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = [str(tmp_path / "dest") if a == "DEST" else a for a in command]

    result = run_cli(*args)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("configuration error: ") and setting in errors[0], errors
    assert not any(k.startswith(ML_PREFIX) and k.endswith(".jpg") for k in bucket.keys(ML_PREFIX))


EPISODES = ("S01E01", "S01E02", "S01E09")
RARITIES = ["Common", "Rare", "Uncommon", "Trash", "Legendary", "Common"]


@pytest.fixture
def synced(bucket):
    """Three episodes of six frames (sources included) synced once, without CloudWatch."""
    upload_season(bucket, {eid: sheet_rows(eid, RARITIES) for eid in EPISODES})
    assert run_cli("sync").exit_code == 0
    return bucket


def only_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# ---- selectors that match nothing: usage errors ------------------------------------------------------------


def test_a_mistyped_sync_episode_is_a_usage_error_naming_the_nearest_and_pages_nobody(synced, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/mistyped")  # production-like: metrics on
    before = synced.etags(ML_PREFIX)

    result = run_cli("sync", "--episode", "S09E09")

    assert result.exit_code == 2, result.output
    line = only_line(result.stderr)
    assert line.startswith("usage error: --episode S09E09: no such episode in the manifests (nearest: ")
    assert "S01E09" in line
    assert metric_names(account("cloudwatch")) == set()  # no RunFailed, no RunSucceeded: no page, no reset
    assert synced.etags(ML_PREFIX) == before
    assert not synced.keys("tuttle_twins/locks/")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("sync", "--dry-run", "--season", "S02"), "--season S02: no such season in the manifests (nearest: S01)"),
        (("split", "preview", "--episode", "S01E99"), "--episode S01E99: no such episode in the manifests"),
        (("report", "--season", "S02"), "--season S02: no such season with dataset files or in a manifest"),
        (("report", "--episode", "S01E10"), "--episode S01E10: no such episode with dataset files or in a manifest"),
    ],
)
def test_a_selector_that_matches_nothing_is_exit_2_for_every_command(synced, args, named):
    result = run_cli(*args)

    assert result.exit_code == 2, result.output
    line = only_line(result.stderr)
    assert line.startswith(f"usage error: {named}"), line
    assert "nearest: " in line


def test_pull_of_an_episode_without_files_is_a_usage_error_and_writes_nothing(synced, tmp_path):
    dest = tmp_path / "dest"

    result = run_cli("pull", "--dataset", "train", "--dest", str(dest), "--episode", "S01E19")

    assert result.exit_code == 2, result.output
    assert "usage error: --episode S01E19: no such episode with files in train (nearest: S01E09" in result.stderr
    assert not dest.exists() or not any(dest.rglob("*"))


# ---- status ---------------------------------------------------------------------------------------------------


def test_status_with_a_wrong_bucket_is_exit_2_and_says_check_tuttle_bucket(bucket, monkeypatch):
    monkeypatch.setenv("TUTTLE_BUCKET", "no-such-bucket-h23a")

    result = run_cli("status")

    assert result.exit_code == 2, result.output
    assert only_line(result.stderr) == (
        "configuration error: bucket 'no-such-bucket-h23a' does not exist (check TUTTLE_BUCKET)"
    )


def test_status_says_a_log_group_that_does_not_exist(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/mistyped-group")

    result = run_cli("status")

    assert result.exit_code == 2, result.output
    assert "runs: none logged yet" not in result.stdout
    assert "CloudWatch Logs group /tuttle-twins/mistyped-group does not exist (check TUTTLE_LOG_GROUP" in result.stdout
    assert f"run lock s3://{bucket.name}/" in result.stdout  # the rest is still shown


def test_status_json_has_the_runs_the_lock_and_the_alarms(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/status-json")
    season_of_four(bucket)
    assert run_cli("sync").exit_code == 0

    result = run_cli("status", "--format", "json")

    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert [run["summary"]["copied"] for run in record["runs"]] == [4]
    assert record["lock"]["held"] is False and record["problems"] == 0
    assert set(record["alarms"]) == {"tuttle-prep-run-failed", "tuttle-prep-did-not-run"}


# ---- where the metrics go ---------------------------------------------------------------------------------


def test_a_sync_without_a_log_group_publishes_no_metrics_and_says_so(bucket, account):
    season_of_four(bucket)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    assert metric_names(account("cloudwatch")) == set()
    assert "metrics: not published: TUTTLE_LOG_GROUP is not set and TUTTLE_METRICS=auto" in result.stdout


def test_metrics_go_to_the_namespace_the_operator_names(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_METRICS", "on")
    monkeypatch.setenv("TUTTLE_METRICS_NAMESPACE", "TuttlePrepStaging")
    season_of_four(bucket)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    cloudwatch = account("cloudwatch")
    assert {"RunSucceeded", "RunFailed", "FilesCopied"} <= metric_names(cloudwatch, "TuttlePrepStaging")
    assert metric_names(cloudwatch) == set()  # nothing in the production namespace
    assert "metrics: CloudWatch namespace TuttlePrepStaging in us-east-1 (TUTTLE_METRICS=on)" in result.stdout
    assert run_cli("alarm", "setup", "--phone", "+15555550123").exit_code == 0
    alarms = cloudwatch.describe_alarms()["MetricAlarms"]
    assert {a["Namespace"] for a in alarms} == {"TuttlePrepStaging"}


def test_metrics_off_publishes_nothing_even_with_a_log_group(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/metrics-off")
    monkeypatch.setenv("TUTTLE_METRICS", "off")
    season_of_four(bucket)

    result = run_cli("sync", "--format", "json")

    assert result.exit_code == 0, result.output
    assert metric_names(account("cloudwatch")) == set()
    assert json.loads(result.stdout)["metrics"] == "not published: TUTTLE_METRICS=off"


def test_a_bad_metrics_setting_is_one_sentence_and_exit_2(bucket, monkeypatch):
    monkeypatch.setenv("TUTTLE_METRICS", "sometimes")

    result = run_cli("sync")

    assert result.exit_code == 2
    assert (
        only_line(result.stderr) == "configuration error: TUTTLE_METRICS must be one of auto, on, off; got 'sometimes'"
    )


# ---- -v, -q, global options after the command ---------------------------------------------------------------


def test_quiet_after_the_command_leaves_one_line_on_stdout_and_no_info_on_stderr(bucket):
    season_of_four(bucket)

    result = run_cli("sync", "-q")

    assert result.exit_code == 0, result.output
    assert only_line(result.stdout).startswith("done: copied 4, moved 0, deleted 0; failed 0; dataset version ")
    assert "INFO" not in result.stderr and "WARNING" not in result.stderr


def test_verbose_logs_debug_lines_before_or_after_the_command(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_METRICS", "on")
    season_of_four(bucket)

    before = run_cli("-v", "sync")
    after = run_cli("sync", "-v")

    for result in (before, after):
        assert result.exit_code == 0, result.output
        assert "DEBUG   metrics published to CloudWatch namespace TuttlePrep" in result.stderr


def test_env_file_after_the_command_wins_over_dot_env(bucket, monkeypatch, tmp_path):
    season_of_four(bucket)
    monkeypatch.delenv("TUTTLE_BUCKET")
    (tmp_path / ".env").write_text("TUTTLE_BUCKET=not-this-bucket\n")
    chosen = tmp_path / "chosen.env"
    chosen.write_text(f"TUTTLE_BUCKET={bucket.name}\n")

    result = run_cli("sync", "--dry-run", "--env-file", str(chosen))

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "dry run: would copy 4, move 0, delete 0; nothing was changed"


# ---- report writes files only with --out ------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_report_writes_no_file_without_out(synced, tmp_path, output_format):
    before = set(tmp_path.iterdir())  # the current folder of the test

    result = run_cli("report", "--format", output_format)

    assert result.exit_code == 0, result.output
    assert set(tmp_path.iterdir()) == before
    if output_format == "json":
        assert json.loads(result.stdout)["files"] == {}


# ---- --format json ----------------------------------------------------------------------------------------------


def test_sync_json_is_the_run_summary_with_the_program_version(bucket):
    from tuttle_prep import __version__

    season_of_four(bucket)

    result = run_cli("sync", "--format", "json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["copied"], summary["counts"]["copy"], summary["exit_code"]) == (4, 4, 0)
    assert summary["program_version"] == __version__
    assert summary["version"]  # the dataset version the run wrote
    assert only_line(run_cli("--version").stdout) == f"tuttle-prep, version {__version__}"


def test_manifests_list_json(synced):
    result = run_cli("manifests", "list", "--format", "json")

    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    [manifest] = record["manifests"]
    assert manifest["seasons"] == ["S01"] and [e["episode_id"] for e in manifest["episodes"]] == list(EPISODES)
    assert record["errors"] == 0


def test_versions_diff_json(synced):
    from season import put_sheet

    put_sheet(synced, "S01E01", sheet_rows("S01E01", ["Rare", *RARITIES[1:]]))  # frame 0: Common -> Rare
    assert run_cli("sync").exit_code == 0

    result = run_cli("versions", "diff", "previous", "latest", "--format", "json")

    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["counts"]["reclassified"] == 1 and record["unchanged"] == 17
    assert record["transitions"]["Common"]["Rare"] == 1
    [change] = [c for c in record["changes"] if c["frame"] == frame_number("S01E01", 0)]
    assert (change["from_rarity"], change["to_rarity"]) == ("Common", "Rare")


# ---- pull: --dry-run, --episode, --rarity, --format json ----------------------------------------------------


def local_frames(dest) -> set[str]:
    return {p.stem for p in dest.rglob("*.jpg")}


def test_pull_dry_run_writes_nothing_and_says_what_it_would_do(synced, tmp_path):
    dest = tmp_path / "dest"

    result = run_cli("pull", "--dataset", "train", "--dest", str(dest), "--dry-run", "--format", "json")

    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["dry_run"] is True and record["would_download"] == record["listed"] > 0
    assert record["downloaded"] == 0 and not dest.exists()


def test_pull_by_episode_and_rarity_downloads_only_those_files(synced, tmp_path):
    dest = tmp_path / "dest"
    datasets = ("--dataset", "train", "--dataset", "validate", "--dataset", "test")
    assert run_cli("pull", *datasets, "--dest", str(dest)).exit_code == 0
    everything = local_frames(dest)
    for path in dest.rglob("*.jpg"):
        path.unlink()

    result = run_cli("pull", *datasets, "--dest", str(dest), "--episode", "s01e02", "--rarity", "common")

    assert result.exit_code == 0, result.output
    wanted = {frame_number("S01E02", i) for i, r in enumerate(RARITIES) if r == "Common"}
    assert local_frames(dest) == wanted and wanted <= everything
    assert {p.parent.name for p in dest.rglob("*.jpg")} == {"Common"}


def test_a_filtered_pull_delete_removes_only_files_of_its_selection(synced, tmp_path):
    dest = tmp_path / "dest"
    assert run_cli("pull", "--dataset", "train", "--dest", str(dest)).exit_code == 0
    e01 = next(p for p in dest.rglob("*.jpg") if "_S01_E01_" in p.name)
    e02 = next(p for p in dest.rglob("*.jpg") if "_S01_E02_" in p.name)
    extra_e01 = e01.with_name(frame_number("S01E01", 30) + ".jpg")
    extra_e02 = e02.with_name(frame_number("S01E02", 30) + ".jpg")
    for path in (extra_e01, extra_e02):
        path.write_bytes(b"stale")
    notes = dest / "train" / "notes.txt"
    notes.write_text("mine")

    result = run_cli("pull", "--dataset", "train", "--dest", str(dest), "--episode", "S01E01", "--delete")

    assert result.exit_code == 0, result.output
    assert not extra_e01.exists()  # in the selection, not in S3: deleted
    assert extra_e02.exists() and notes.exists() and e02.exists()  # outside the selection: kept


def test_pull_rejects_a_rarity_that_is_none(synced, tmp_path):
    result = run_cli("pull", "--dataset", "train", "--dest", str(tmp_path / "d"), "--rarity", "Shiny")

    assert result.exit_code == 2
    assert "'Shiny' is not a rarity (Legendary, Rare, Uncommon, Common, Trash)" in result.output


# ---- config show ------------------------------------------------------------------------------------------------


def test_config_show_prints_the_resolved_settings_with_secrets_masked(bucket, account, monkeypatch, tmp_path):
    key = tmp_path / "service-account.json"
    private = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBg-not-a-real-key"
    key.write_text(json.dumps({"type": "service_account", "private_key": private, "client_email": "x@y"}))
    monkeypatch.setenv("GOOGLE_DRIVE_CREDENTIALS_FILE", str(key))
    monkeypatch.setenv("TUTTLE_SPLIT_SEED", "my-own-seed-h23a")

    text = run_cli("config", "show")
    as_json = run_cli("config", "show", "--format", "json")

    assert text.exit_code == as_json.exit_code == 0, text.output
    for output in (text.output, as_json.output):
        assert SECRET not in output and private not in output and "my-own-seed-h23a" not in output
        assert "testing" not in output  # the session token
        assert str(key) in output and bucket.name in output
    values = json.loads(as_json.stdout)
    assert values["TUTTLE_BUCKET"] == bucket.name and values["AWS_ENDPOINT_URL"] == bucket.endpoint
    assert values["AWS_SECRET_ACCESS_KEY"] == "**** (set, not shown)"
    assert values["metrics"].startswith("not published")


# ---- shell completion -------------------------------------------------------------------------------------------


def test_shell_completion_is_documented_and_works_as_documented():
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for doc in ("README.md", "docs/operations.md"):
        text = (repo / doc).read_text(encoding="utf-8")
        assert "_DATA_PREPARATION_COMPLETE=bash_source" in text and "_TUTTLE_PREP_COMPLETE=bash_source" in text, doc
    env = {
        **os.environ,
        "_DATA_PREPARATION_COMPLETE": "bash_complete",
        "COMP_WORDS": "data_preparation.py sy",
        "COMP_CWORD": "1",
    }

    done = subprocess.run(
        [sys.executable, "data_preparation.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "plain,sync" in done.stdout.splitlines()


def test_pull_version_json(synced, tmp_path):
    dest = tmp_path / "dest"

    result = run_cli("pull", "--version", "latest", "--dest", str(dest), "--format", "json")

    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["files"] == record["downloaded"] == 18 == len(local_frames(dest))
    assert record["version"] and record["failures"] == [] and record["missing_sources"] == []


@pytest.mark.parametrize(("env", "setting"), BAD_AWS_SETTINGS, ids=[s for _, s in BAD_AWS_SETTINGS])
def test_an_unusable_aws_setting_on_the_cron_host_is_still_one_sentence(bucket, monkeypatch, env, setting):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/data-prep")  # as .env.example sets it
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    result = run_cli("sync")

    assert result.exit_code == 2, result.output
    line = only_line(result.stderr)
    assert line.startswith("configuration error: ") and setting in line


@pytest.mark.parametrize(
    "args",
    [
        ("manifests", "list"),
        ("versions", "list"),
        ("versions", "show", "latest"),
        ("report",),
        ("split", "preview"),
        ("status",),
    ],
    ids=lambda a: " ".join(a),
)
def test_quiet_leaves_one_line_on_stdout_for_every_command(synced, args):
    result = run_cli(*args, "-q")

    assert result.exit_code == 0, result.output
    only_line(result.stdout)
    assert "INFO" not in result.stderr
