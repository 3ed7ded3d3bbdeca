"""Operations: the run's CloudWatch log stream and metrics, the SMS alarms, and CloudWatch being down.

Everything talks to the session's moto server. Each test gets its own moto account (an `x-moto-account-id`
header added to the logs/cloudwatch/sns/sqs requests through `tuttle_prep.edges.aws.new_session`), so metrics,
alarms and topics of other tests never mix in; S3 requests are left untouched.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
import watchtower
from botocore.awsrequest import AWSResponse
from conftest import SECRET, run_cli
from season import ML_PREFIX, frame_number, put_sources, sheet_rows, upload_season

from tuttle_prep.core.run_report import RunReport
from tuttle_prep.edges import aws
from tuttle_prep.edges.alarms import DID_NOT_RUN_ALARM, RUN_FAILED_ALARM
from tuttle_prep.edges.cloudwatch import METRIC_NAMES, NAMESPACE, stream_name

REPO = Path(__file__).resolve().parents[1]


class _Body:
    """The raw body of a fake AWSResponse."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_):
        yield self.data


def season_of_four(bucket, with_sources: int = 4, extra_rarities: tuple[str, ...] = ()) -> list[str]:
    """S01E01 with four classified frames (then `extra_rarities`); only the first `with_sources` have a source."""
    rows = sheet_rows("S01E01", ["Common", "Rare", "Uncommon", "Common", *extra_rarities])
    upload_season(bucket, {"S01E01": rows}, sources=False)
    frames = [frame_number("S01E01", i) for i in range(4)]
    put_sources(bucket, frames[:with_sources])
    return frames


def dataset_frames(bucket) -> set[str]:
    """The frames with a jpg in a dataset folder (the job's own labels index is not one)."""
    return {key.rsplit("/", 1)[-1][: -len(".jpg")] for key in bucket.keys(ML_PREFIX) if key.endswith(".jpg")}


def metric_sums(cloudwatch) -> dict[str, float]:
    """The Sum of every TuttlePrep metric over the last hour (metrics never published are absent)."""
    end = datetime.now(UTC) + timedelta(minutes=5)
    response = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": f"m{i}",
                "Label": name,
                "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": name}, "Period": 60, "Stat": "Sum"},
            }
            for i, name in enumerate(METRIC_NAMES)
        ],
        StartTime=end - timedelta(hours=1),
        EndTime=end,
    )
    return {r["Label"]: sum(r["Values"]) for r in response["MetricDataResults"] if r["Values"]}


def log_messages(logs, group: str) -> tuple[list[str], list[str]]:
    """(stream names, messages of the only stream) of a log group."""
    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    assert len(streams) == 1, streams
    events = logs.get_log_events(logGroupName=group, logStreamName=streams[0], startFromHead=True)["events"]
    return streams, [e["message"] for e in events]


def summary_of(messages: list[str]) -> dict:
    records = [json.loads(m) for m in messages if m.startswith("{")]
    assert len(records) == 1, messages
    assert records[0]["event"] == "run_summary"
    return records[0]


def test_clean_run_ships_its_lines_and_summary_to_its_own_stream(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/data-prep")
    season_of_four(bucket)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    streams, messages = log_messages(account("logs"), "/tuttle-twins/data-prep")
    summary = summary_of(messages)
    host, started, run_id = streams[0].split("/")
    assert run_id == summary["run_id"] and started.endswith("Z") and host
    assert summary["exit_code"] == 0 and summary["episodes"] == ["S01E01"] and summary["dry_run"] is False
    assert (summary["copied"], summary["moved"], summary["deleted"], summary["failed"]) == (4, 0, 0, 0)
    assert summary["config_error"] is None
    episode_lines = [m for m in messages if "S01E01: keep" in m]
    assert episode_lines == [
        "INFO tuttle_prep.run S01E01: keep 0, copy 4, move 0, refresh 0, delete 0, missing 0, rejected 0; ok"
    ]
    assert not any(SECRET in m for m in messages)
    assert not any(isinstance(h, watchtower.CloudWatchLogHandler) for h in logging.getLogger("tuttle_prep").handlers)


def test_copying_run_records_its_counts_in_logs_and_metrics(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/copy-run")
    frames = season_of_four(bucket)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    assert dataset_frames(bucket) == set(frames)
    summary = summary_of(log_messages(account("logs"), "/tuttle-twins/copy-run")[1])
    assert summary["copied"] == 4 and summary["counts"]["copy"] == 4 and summary["exit_code"] == 0
    # the dataset version the run wrote, in its summary and its log lines
    version = summary["version"]
    assert version and version.endswith(summary["run_id"]) and f"dataset version {version} written" in result.output
    assert any(
        f"_versions/{version}.parquet written" in m for m in log_messages(account("logs"), "/tuttle-twins/copy-run")[1]
    )
    sums = metric_sums(account("cloudwatch"))
    assert {k: v for k, v in sums.items() if k != "DurationSeconds"} == {
        "RunSucceeded": 1,
        "RunFailed": 0,
        "FilesCopied": 4,
        "FilesMoved": 0,
        "Refreshed": 0,
        "FilesDeleted": 0,
        "OperationErrors": 0,
        "MissingSources": 0,
        "RejectedRows": 0,
        "DataFindings": 0,
    }
    assert sums["DurationSeconds"] == pytest.approx(summary["duration_seconds"])


def test_a_run_with_only_data_findings_succeeds_and_counts_them_apart(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/data-findings-run")
    frames = season_of_four(bucket, with_sources=3, extra_rarities=("Shiny",))  # one rejected row

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # a missing source and a rejected row: data findings only
    assert "data findings: 2 (1 rejected row, 1 missing source frame)" in result.stdout
    assert dataset_frames(bucket) == set(frames[:3])
    sums = metric_sums(account("cloudwatch"))
    assert sums["RunFailed"] == 0 and sums["RunSucceeded"] == 1
    assert (sums["FilesCopied"], sums["MissingSources"], sums["RejectedRows"], sums["DataFindings"]) == (3, 1, 1, 2)
    messages = log_messages(account("logs"), "/tuttle-twins/data-findings-run")[1]
    summary = summary_of(messages)
    assert (summary["exit_code"], summary["missing_sources"], summary["rejected_rows"]) == (0, 1, 1)
    assert (summary["job_failures"], summary["job_failed"], summary["data_findings"]) == (0, False, 2)
    line = "INFO tuttle_prep.run S01E01: keep 0, copy 3, move 0, refresh 0, delete 0, missing 1, rejected 1; "
    line += "data findings"
    assert line in messages
    assert any(m.startswith("WARNING tuttle_prep data findings (2)") for m in messages)
    assert not any(m.startswith("ERROR") for m in messages)


def test_strict_run_exits_1_on_data_findings_but_raises_no_run_failed(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/strict-run")
    season_of_four(bucket, with_sources=3)  # one missing source

    result = run_cli("sync", "--strict")

    assert result.exit_code == 1, result.output
    assert "data findings: 1 (1 missing source frame); they fail the run (--strict)" in result.stdout
    sums = metric_sums(account("cloudwatch"))
    assert (sums["RunFailed"], sums["RunSucceeded"], sums["DataFindings"]) == (0, 1, 1)
    summary = summary_of(log_messages(account("logs"), "/tuttle-twins/strict-run")[1])
    assert (summary["exit_code"], summary["job_failed"], summary["strict"]) == (1, False, True)


def test_a_run_with_an_s3_failure_raises_run_failed(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/s3-failure")
    season_of_four(bucket)
    account_session = aws.new_session

    def manifest_fault(request, **_):  # S3 answers 500 to every read of the manifest, retries included
        if "/tuttle_twins/manifests/" in request.url and request.method == "GET" and "list-type" not in request.url:
            body = b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>injected</Message></Error>"
            return AWSResponse(request.url, 500, {}, _Body(body))
        return None

    def session_with_fault():
        session = account_session()
        session.events.register("before-send.s3.GetObject", manifest_fault)
        return session

    monkeypatch.setattr(aws, "new_session", session_with_fault)

    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    assert "cannot read the manifest" in result.stderr and "job failures: 1" in result.stdout
    sums = metric_sums(account("cloudwatch"))
    assert (sums["RunFailed"], sums["RunSucceeded"], sums["DataFindings"]) == (1, 0, 0)
    summary = summary_of(log_messages(account("logs"), "/tuttle-twins/s3-failure")[1])
    assert (summary["exit_code"], summary["job_failed"], summary["data_findings"]) == (1, True, 0)


def test_configuration_error_publishes_run_failed_and_logs_why(bucket, account, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/config-error")
    monkeypatch.setenv("TUTTLE_SPLIT", "train=0.5,test=0.1")

    result = run_cli("sync")

    assert result.exit_code == 2
    assert "TUTTLE_SPLIT" in result.stderr and "Traceback" not in result.output
    sums = metric_sums(account("cloudwatch"))
    assert (sums["RunFailed"], sums["RunSucceeded"], sums["FilesCopied"]) == (1, 0, 0)
    summary = summary_of(log_messages(account("logs"), "/tuttle-twins/config-error")[1])
    assert summary["exit_code"] == 2 and "TUTTLE_SPLIT" in summary["config_error"]
    assert result.stderr.strip() == f"configuration error: {summary['config_error']}"  # still one sentence


def test_dry_run_publishes_no_metrics(bucket, account):
    season_of_four(bucket)

    result = run_cli("sync", "--dry-run")

    assert result.exit_code == 0, result.output
    assert account("cloudwatch").list_metrics(Namespace=NAMESPACE)["Metrics"] == []
    assert dataset_frames(bucket) == set()


def test_stream_name_is_host_start_time_and_run_id():
    report = RunReport(run_id="abc123", started=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())
    assert stream_name(report, host="ip-10-0-0-1:x*y") == "ip-10-0-0-1-x-y/2026-01-02T03-04-05Z/abc123"


def _alarms(cloudwatch) -> dict[str, dict]:
    described = cloudwatch.describe_alarms(AlarmNames=[RUN_FAILED_ALARM, DID_NOT_RUN_ALARM])["MetricAlarms"]
    return {a["AlarmName"]: a for a in described}


def test_alarm_setup_twice_creates_once_and_updates_a_changed_schedule(bucket, account):
    first = run_cli("alarm", "setup", "--phone", "+15555550123")
    second = run_cli("alarm", "setup", "--phone", "+15555550123")

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert [line.split()[0] for line in first.stdout.splitlines()[:4]] == ["created"] * 4
    assert "created" not in second.stdout and second.stdout.count("exists") == 4
    assert "5555550123" not in first.output  # the number is masked
    sns, cloudwatch = account("sns"), account("cloudwatch")
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert len(topics) == 1 and topics[0].endswith(":tuttle-prep-alerts")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topics[0])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("sms", "+15555550123")]
    alarms = _alarms(cloudwatch)
    failed, missing = alarms[RUN_FAILED_ALARM], alarms[DID_NOT_RUN_ALARM]
    assert (failed["Namespace"], failed["MetricName"], failed["ComparisonOperator"], failed["Threshold"]) == (
        NAMESPACE,
        "RunFailed",
        "GreaterThanOrEqualToThreshold",
        1,
    )
    assert (missing["MetricName"], missing["Statistic"], missing["ComparisonOperator"]) == (
        "RunSucceeded",
        "Sum",
        "LessThanThreshold",
    )
    assert missing["Period"] * missing["EvaluationPeriods"] == (24 + 2) * 3600
    assert missing["DatapointsToAlarm"] == missing["EvaluationPeriods"] and missing["TreatMissingData"] == "breaching"
    assert failed["AlarmActions"] == missing["AlarmActions"] == topics

    third = run_cli("alarm", "setup", "--phone", "+15555550123", "--schedule-hours", "12")

    assert third.exit_code == 0, third.output
    assert f"updated  alarm {DID_NOT_RUN_ALARM}" in third.stdout and "created" not in third.stdout
    missing = _alarms(cloudwatch)[DID_NOT_RUN_ALARM]
    assert missing["Period"] * missing["EvaluationPeriods"] == (12 + 2) * 3600


def test_alarm_setup_rejects_a_number_that_is_not_e164(bucket, account):
    result = run_cli("alarm", "setup", "--phone", "555-0123")

    assert result.exit_code == 2
    assert "E.164" in result.stderr and "Traceback" not in result.output
    assert account("sns").list_topics()["Topics"] == []


def test_alarm_test_sends_a_message_through_the_topic(bucket, account):
    assert run_cli("alarm", "setup", "--phone", "+15555550123").exit_code == 0
    sns, sqs = account("sns"), account("sqs")
    topic = sns.list_topics()["Topics"][0]["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alarm-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

    result = run_cli("alarm", "test")

    assert result.exit_code == 0, result.output
    received = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
    assert len(received) == 1 and "tuttle-prep test alert" in received[0]["Body"]


def test_alarm_test_without_setup_says_what_to_run(bucket, account):
    result = run_cli("alarm", "test")

    assert result.exit_code == 2
    assert "alarm setup" in result.stderr and "Traceback" not in result.output


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("extra_env", "expected_exit"),
    [({}, 0), ({"TUTTLE_SPLIT": "train=0.5,test=0.1"}, 2)],
    ids=["clean-run", "config-error"],
)
def test_refusing_cloudwatch_endpoint_leaves_the_sync_result_and_exit_code(bucket, tmp_path, extra_env, expected_exit):
    frames = season_of_four(bucket)
    refused = f"http://127.0.0.1:{_closed_port()}"
    env = {
        **os.environ,
        **extra_env,
        "TUTTLE_LOG_GROUP": "/tuttle-twins/data-prep",
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": refused,
        "AWS_ENDPOINT_URL_CLOUDWATCH": refused,
    }

    # the timeout only guards against a hang; the run itself takes a few seconds
    done = subprocess.run(
        [sys.executable, str(REPO / "data_preparation.py"), "sync"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == expected_exit, done.stderr
    assert "CloudWatch Logs unavailable" in done.stderr and "CloudWatch metrics not published" in done.stderr
    assert "Traceback" not in done.stderr
    assert dataset_frames(bucket) == (set(frames) if expected_exit == 0 else set())


def test_crontab_runs_sync_under_flock_with_absolute_paths_and_a_known_env_file_option():
    from tuttle_prep.cli import main

    lines = [line for line in (REPO / "crontab.txt").read_text().splitlines() if line and not line.startswith("#")]
    schedules = [line for line in lines if "=" not in line.split()[0]]
    assert len(schedules) == 1
    fields = schedules[0].split()
    minute, hour = int(fields[0]), int(fields[1])
    assert 0 <= minute < 60 and 0 <= hour < 24 and fields[2:5] == ["*", "*", "*"]
    command = fields[5:]
    assert command[0] == "/usr/bin/flock" and command[1] == "-n" and command[2].startswith("/")
    python, script = command[3], command[4]
    assert python.startswith("/") and python.endswith("/bin/python") and script.endswith("/data_preparation.py")
    args = command[5 : command.index(">>")]
    assert args[0] == "--env-file" and args[1].startswith("/") and args[2:] == ["sync"]
    assert "--env-file" in {opt for param in main.params for opt in param.opts}
    assert main.get_command(click.Context(main), "sync") is not None  # commands are imported when asked for
    assert command[command.index(">>") + 1].startswith("/") and command[-1] == "2>&1"


def test_a_run_stopped_by_sigterm_is_recorded_with_the_exit_code_it_returns(bucket, account, proxied, monkeypatch):
    import signal
    import threading

    from tuttle_prep.cli import stop_on_signal

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed in the main thread")
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/terminated-run")
    season_of_four(bucket)
    sent = []

    def terminate_on_first_copy(request):  # cron's `timeout` sends SIGTERM mid-apply (seen at the fault proxy)
        if request.operation == "CopyObject" and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    proxied.fail = terminate_on_first_copy
    previous = signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        result = run_cli("sync", "--workers", "1")
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert sent and result.exit_code == 128 + signal.SIGTERM, result.output
    summary = summary_of(log_messages(account("logs"), "/tuttle-twins/terminated-run")[1])
    assert summary["exit_code"] == 143
    sums = metric_sums(account("cloudwatch"))
    assert (sums["RunFailed"], sums["RunSucceeded"]) == (1, 0)
