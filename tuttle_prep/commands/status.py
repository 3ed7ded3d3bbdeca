"""`status`: for the person on call, the last runs, who holds the run lock, and the alarms' states.

Reads only: the run summaries in CloudWatch Logs (TUTTLE_LOG_GROUP), the lock object in S3, the two alarms.
Exit status: 0 everything could be read, 1 some part could not (it says which), 2 configuration.
"""

from __future__ import annotations

from datetime import UTC

import click

from ..core.names import EXIT_ERRORS, EXIT_OK
from ..core.run_history import history_table, record_from_stream
from ..errors import LockError
from .common import invocation_clock, load_settings

# boto3 (through the edges) is imported by the functions that call AWS, not to print `status --help`


@click.command("status")
@click.option(
    "--runs", type=click.IntRange(1, 50), default=10, show_default=True, metavar="N", help="How many runs to show."
)
def status(runs: int) -> None:
    """Show the last runs (time, host, exit code, copied/moved/deleted, job failures, data findings,
    duration) from their run summaries in CloudWatch Logs, the run lock's holder, and the alarms.

    Without TUTTLE_LOG_GROUP (CloudWatch not configured) it says so and shows the lock only.
    """
    settings = load_settings()
    problems = 0
    if settings.log_group is None:
        click.echo(
            "CloudWatch is not configured (TUTTLE_LOG_GROUP is not set): no run history or alarm states; "
            "the cron log file on the host has the runs"
        )
    else:
        problems += _show_runs(settings.log_group, runs)
    problems += _show_lock(settings.bucket, settings.lock_key, settings.lock_stale_seconds)
    if settings.log_group is not None:
        problems += _show_alarms()
    raise SystemExit(EXIT_ERRORS if problems else EXIT_OK)


def _show_runs(log_group: str, count: int) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from ..edges import aws
    from ..edges.cloudwatch import recent_run_summaries

    try:
        found = recent_run_summaries(log_group, count)
    except (BotoCoreError, ClientError) as exc:
        click.echo(f"runs: cannot read CloudWatch Logs group {log_group}: {aws.describe(exc)}")
        return 1
    if not found:
        click.echo(f"runs: none logged yet in CloudWatch Logs group {log_group}")
        return 0
    click.echo(f"last {len(found)} runs, newest first (CloudWatch Logs group {log_group}):")
    click.echo(history_table([record_from_stream(*run) for run in found]))
    return 0


def _show_lock(bucket: str, key: str, stale_seconds: int) -> int:
    from ..edges import aws
    from ..edges.s3_lock import S3Lock

    url = f"s3://{bucket}/{key}"
    clock = invocation_clock()
    try:
        current = S3Lock(aws.make_client("s3", max_attempts=1), bucket, key, stale_seconds, clock=clock).peek()
    except LockError as exc:
        click.echo(f"run lock: {exc}")
        return 1
    if current is None:
        click.echo(f"run lock {url}: free (no sync is running)")
        return 0
    holder, stale = current
    click.echo(f"run lock {url}: held by {holder.describe(clock())}")
    if stale:
        click.echo(f"  stale, the next run takes it over: {stale}")
    return 0


def _show_alarms() -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from ..edges import aws
    from ..edges.alarms import DID_NOT_RUN_ALARM, RUN_FAILED_ALARM, alarm_states

    names = (RUN_FAILED_ALARM, DID_NOT_RUN_ALARM)
    try:
        states = alarm_states(names)
    except (BotoCoreError, ClientError) as exc:
        click.echo(f"alarms: cannot read them: {aws.describe(exc)}")
        return 1
    for name in names:
        if name not in states:
            click.echo(f"alarm {name}: not set up (`alarm setup --phone ...`)")
            continue
        state, since = states[name]
        when = f" since {since.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}" if since else ""
        click.echo(f"alarm {name}: {state}{when}")
    return 0
