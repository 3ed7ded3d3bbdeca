"""`status`: for the person on call, the last runs, who holds the run lock, and the alarms' states.

Reads only: the run summaries in CloudWatch Logs (TUTTLE_LOG_GROUP), the lock object in S3, the two alarms.
Exit status: 0 everything could be read, 1 some part could not (it says which), 2 configuration: the bucket is
unusable (checked first, as every command does) or TUTTLE_LOG_GROUP names a group that does not exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import click

from ..core.names import EXIT_CONFIG, EXIT_ERRORS, EXIT_OK
from ..core.run_history import history_table, record_from_stream
from ..core.text import escape_control
from ..errors import ConfigError, LockError
from .common import echo_detail, fail_config, format_option, invocation_clock, load_settings, quiet


@dataclass
class StatusReport:
    """What `status` found: lines for people, a record for machines, and the exit code."""

    record: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    problems: int = 0
    #: a setting names something that does not exist (exit 2)
    config_problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CONFIG if self.config_problems else EXIT_ERRORS if self.problems else EXIT_OK


@click.command("status")
@click.option(
    "--runs", type=click.IntRange(1, 50), default=10, show_default=True, metavar="N", help="How many runs to show."
)
@format_option("Lines for people, or one JSON object (runs, lock, alarms) for machines.")
def status(runs: int, output_format: str) -> None:
    """Show the last runs (time, host, exit code, copied/moved/deleted, job failures, data findings,
    duration) from their run summaries in CloudWatch Logs, the run lock's holder, and the alarms.

    Without TUTTLE_LOG_GROUP (CloudWatch not configured) it says so and shows the lock only.
    """
    settings = load_settings()
    from ..edges import aws  # boto3: imported to run, not to print `status --help`

    client = aws.make_client("s3", max_attempts=1)
    try:  # a wrong TUTTLE_BUCKET is one sentence and exit 2, as for every command
        aws.check_bucket(client, settings.bucket, settings.manifests_prefix)
    except ConfigError as exc:
        fail_config(str(exc))
    found = StatusReport(record={"bucket": settings.bucket, "log_group": settings.log_group})
    if settings.log_group is None:
        found.lines.append(
            "CloudWatch is not configured (TUTTLE_LOG_GROUP is not set): no run history or alarm states; "
            "the cron log file on the host has the runs"
        )
        found.record["runs"] = None
    else:
        _show_runs(found, settings.log_group, runs)
    _show_lock(found, client, settings.bucket, settings.lock_key, settings.lock_stale_seconds)
    if settings.log_group is not None:
        _show_alarms(found)
    found.record["problems"] = found.problems
    found.record["configuration_errors"] = list(found.config_problems)
    if output_format == "json":
        click.echo(json.dumps(found.record, indent=2, default=str))
    else:
        for line in found.lines:
            echo_detail(escape_control(line))
        if quiet():
            click.echo(f"status: {found.problems} problems, {len(found.config_problems)} configuration errors")
    for message in found.config_problems:
        click.echo(escape_control(f"configuration error: {message}"), err=True)
    raise SystemExit(found.exit_code)


def _show_runs(found: StatusReport, log_group: str, count: int) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from ..edges import aws
    from ..edges.cloudwatch import recent_run_summaries

    try:
        runs = recent_run_summaries(log_group, count)
    except (BotoCoreError, ClientError) as exc:
        found.lines.append(f"runs: cannot read CloudWatch Logs group {log_group}: {aws.describe(exc)}")
        found.record["runs"] = None
        found.problems += 1
        return
    if runs is None:
        message = (
            f"CloudWatch Logs group {log_group} does not exist (check TUTTLE_LOG_GROUP; the first sync that logs "
            "to it creates it)"
        )
        found.lines.append(f"runs: {message}")
        found.record["runs"] = None
        found.config_problems.append(message)
        return
    records = [record_from_stream(*run) for run in runs]
    found.record["runs"] = [
        {"stream": r.stream, "started": r.started, "host": r.host, "summary": r.summary} for r in records
    ]
    if not records:
        found.lines.append(f"runs: none logged yet in CloudWatch Logs group {log_group}")
        return
    found.lines.append(f"last {len(records)} runs, newest first (CloudWatch Logs group {log_group}):")
    found.lines.extend(history_table(records).splitlines())


def _show_lock(found: StatusReport, client: Any, bucket: str, key: str, stale_seconds: int) -> None:
    from ..edges.s3_lock import S3Lock

    url = f"s3://{bucket}/{key}"
    clock = invocation_clock()
    found.record["lock"] = {"url": url, "held": None}
    try:
        current = S3Lock(client, bucket, key, stale_seconds, clock=clock).peek()
    except LockError as exc:
        found.lines.append(f"run lock: {exc}")
        found.record["lock"]["error"] = str(exc)
        found.problems += 1
        return
    if current is None:
        found.lines.append(f"run lock {url}: free (no sync is running)")
        found.record["lock"]["held"] = False
        return
    holder, stale = current
    found.lines.append(f"run lock {url}: held by {holder.describe(clock())}")
    found.record["lock"].update(
        held=True,
        holder={"run_id": holder.run_id, "host": holder.host, "pid": holder.pid, "started": holder.started},
        stale=stale,
    )
    if stale:
        found.lines.append(f"  stale, the next run takes it over: {stale}")


def _show_alarms(found: StatusReport) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from ..edges import aws
    from ..edges.alarms import DID_NOT_RUN_ALARM, RUN_FAILED_ALARM, alarm_states

    names = (RUN_FAILED_ALARM, DID_NOT_RUN_ALARM)
    try:
        states = alarm_states(names)
    except (BotoCoreError, ClientError) as exc:
        found.lines.append(f"alarms: cannot read them: {aws.describe(exc)}")
        found.record["alarms"] = None
        found.problems += 1
        return
    found.record["alarms"] = {}
    for name in names:
        if name not in states:
            found.lines.append(f"alarm {name}: not set up (`alarm setup --phone ...`)")
            found.record["alarms"][name] = None
            continue
        state, since = states[name]
        when = f" since {since.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}" if since else ""
        found.lines.append(f"alarm {name}: {state}{when}")
        found.record["alarms"][name] = {"state": state, "since": since.isoformat() if since else None}
