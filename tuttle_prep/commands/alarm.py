"""`alarm setup` / `alarm test`: SMS alerts for failed or missing runs (SNS topic, subscription, two alarms),
and the data digest's email topic for the sheet owners."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from ..core.run_report import EXIT_CONFIG, EXIT_ERRORS
from ..edges.alarms import (
    DATA_TOPIC,
    DEFAULT_TOPIC,
    DID_NOT_RUN_ALARM,
    MAX_WINDOW_HOURS,
    RUN_FAILED_ALARM,
    check_email_addresses,
    check_phone_numbers,
    send_test_message,
    setup_alarms,
    setup_digest,
)
from ..edges.aws import describe
from ..errors import ConfigError
from ..settings import metrics_namespace
from .common import fail_config, invocation_clock


@contextmanager
def _aws_errors(action: str) -> Iterator[None]:
    """Exit 2 with one sentence for missing credentials or bad input, 1 for an AWS failure; no traceback."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        click.echo(
            "configuration error: no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run on an EC2 host with an instance role",
            err=True,
        )
        sys.exit(EXIT_CONFIG)
    except (ValueError, LookupError) as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except (BotoCoreError, ClientError) as exc:
        click.echo(f"{action} failed: {describe(exc)}", err=True)
        sys.exit(EXIT_ERRORS)


_topic_option: Callable = click.option(
    "--topic", default=DEFAULT_TOPIC, show_default=True, help="Name of the SNS topic the alarms notify."
)


@click.group()
def alarm() -> None:
    """SMS alerts when a run fails or does not run (SNS topic + CloudWatch alarms on the run metrics), and
    the data digest emailed to the sheet owners."""


@alarm.command()
@click.option(
    "--phone",
    "phones",
    multiple=True,
    metavar="+15555550123",
    help="Phone number (E.164) to text when a run fails; repeatable.",
)
@click.option(
    "--digest-email",
    "digest_emails",
    multiple=True,
    metavar="ADDRESS",
    help=f"Email address that receives the data digest (SNS topic {DATA_TOPIC}); repeatable.",
)
@click.option(
    "--schedule-hours",
    type=click.IntRange(1, MAX_WINDOW_HOURS - 1),
    default=24,
    show_default=True,
    help="Hours between scheduled runs (as in crontab.txt).",
)
@click.option(
    "--slack-hours",
    type=click.IntRange(1, 24),
    default=2,
    show_default=True,
    help="Extra hours a run may take before 'did not run' fires.",
)
@_topic_option
def setup(
    phones: tuple[str, ...], digest_emails: tuple[str, ...], schedule_hours: int, slack_hours: int, topic: str
) -> None:
    """Create or update the alerts (--phone) and the data digest (--digest-email); safe to run again.

    With --phone: the SNS topic, the SMS subscriptions and two alarms: RunFailed >= 1 (a job failure)
    and RunSucceeded < 1 over schedule + slack hours, with missing data breaching (no successful run,
    cron stopped, host down). Data findings never text anyone.

    With --digest-email: the SNS topic tuttle-prep-data and one email subscription per address (each
    confirms by the link AWS emails it). After a real run whose data findings differ from those last
    sent, `sync` emails one digest there: each rejected row with a link to its cell, then the missing
    source frames.
    """
    if not phones and not digest_emails:
        raise click.UsageError("give --phone (alerts) and/or --digest-email (data digest)")
    try:  # the alarms watch the namespace the runs publish to
        namespace = metrics_namespace()
    except ConfigError as exc:
        fail_config(str(exc))
    outcomes = []
    with _aws_errors("alarm setup"):
        check_phone_numbers(list(phones))  # every input checked before anything is created
        check_email_addresses(list(digest_emails))
        if phones:
            outcomes.append(setup_alarms(list(phones), schedule_hours, slack_hours, topic, namespace))
        if digest_emails:
            outcomes.append(setup_digest(list(digest_emails)))
    for outcome in outcomes:
        for label, items in (("created", outcome.created), ("updated", outcome.updated), ("exists", outcome.existing)):
            for item in items:
                click.echo(f"{label:<8} {item}")
    if phones:
        click.echo(
            f"alarms {RUN_FAILED_ALARM} and {DID_NOT_RUN_ALARM} watch namespace {namespace}; "
            f"`alarm test --topic {topic}` sends a test text"
        )
    if digest_emails:
        click.echo(f"data digests go to {DATA_TOPIC} after each real run whose data findings changed")


@alarm.command(name="test")
@_topic_option
def test_alarm(topic: str) -> None:
    """Send a test message through the alarm topic to every subscribed phone."""
    with _aws_errors("alarm test"):
        topic_arn, message_id = send_test_message(topic, invocation_clock()())
    click.echo(f"sent test message {message_id} through {topic_arn}")
