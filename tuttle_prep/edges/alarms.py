"""SNS and CloudWatch alarms: the topic, its SMS subscriptions, the two alarms on the run metrics, a test text;
the data digest's topic and its email subscriptions."""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.clock import utc
from . import aws
from .cloudwatch import NAMESPACE

DEFAULT_TOPIC = "tuttle-prep-alerts"
#: the data digest's topic: email to the sheet owners (`alarm setup --digest-email`)
DATA_TOPIC = "tuttle-prep-data"
EMAIL_ADDRESS = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+$")
RUN_FAILED_ALARM = "tuttle-prep-run-failed"
DID_NOT_RUN_ALARM = "tuttle-prep-did-not-run"
MAX_WINDOW_HOURS = 168  # CloudWatch: Period × EvaluationPeriods ≤ 7 days
PHONE_NUMBER = re.compile(r"^\+[1-9][0-9]{7,14}$")
TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def masked_phone(phone: str) -> str:
    """`+1******0123`: enough to recognise a number in a log, not to dial it."""
    return phone[:2] + "*" * max(0, len(phone) - 6) + phone[-4:]


def alarm_definitions(
    topic_arn: str, schedule_hours: int, slack_hours: int, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """PutMetricAlarm arguments of the two alarms: a failed run, and no successful run within the window."""
    window_hours = schedule_hours + slack_hours
    if window_hours > MAX_WINDOW_HOURS:
        raise ValueError(f"schedule plus slack is {window_hours} hours; CloudWatch allows at most {MAX_WINDOW_HOURS}")
    common = {"Namespace": namespace, "ActionsEnabled": True, "AlarmActions": [topic_arn], "Threshold": 1.0}
    return [
        {
            "AlarmName": RUN_FAILED_ALARM,
            "AlarmDescription": "A tuttle-prep data-preparation run exited non-zero; read its log stream.",
            "MetricName": "RunFailed",
            "Statistic": "Maximum",
            "Period": 300,
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            **common,
        },
        {
            "AlarmName": DID_NOT_RUN_ALARM,
            "AlarmDescription": (
                f"No successful tuttle-prep run in the last {window_hours} hours "
                f"(schedule {schedule_hours} h + {slack_hours} h slack): check cron on the EC2 host."
            ),
            "MetricName": "RunSucceeded",
            "Statistic": "Sum",
            # hourly periods, all of them empty (missing = breaching) or zero, over the whole window
            "Period": 3600,
            "EvaluationPeriods": window_hours,
            "DatapointsToAlarm": window_hours,
            "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching",
            **common,
        },
    ]


@dataclass
class SetupOutcome:
    """What `alarm setup` did, one description per resource."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    topic_arn: str = ""


def find_topic(sns: Any, topic_name: str) -> str | None:
    """The ARN of the SNS topic named `topic_name` in the client's region, or None."""
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page.get("Topics", ()):
            if topic["TopicArn"].rsplit(":", 1)[-1] == topic_name:
                return topic["TopicArn"]
    return None


def _endpoints(sns: Any, topic_arn: str, protocol: str) -> set[str]:
    endpoints = set()
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for subscription in page.get("Subscriptions", ()):
            if subscription.get("Protocol") == protocol:
                endpoints.add(subscription.get("Endpoint", ""))
    return endpoints


def _ensure_topic(sns: Any, topic_name: str, outcome: SetupOutcome) -> str:
    topic_arn = find_topic(sns, topic_name)
    if topic_arn is None:
        topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]
        outcome.created.append(f"SNS topic {topic_arn}")
    else:
        outcome.existing.append(f"SNS topic {topic_arn}")
    return topic_arn


def check_email_addresses(emails: list[str]) -> None:
    """ValueError naming the first address that is not one."""
    for email in emails:
        if not EMAIL_ADDRESS.match(email):
            raise ValueError(f"'{email}' is not an email address (name@example.com)")


def check_phone_numbers(phones: list[str]) -> None:
    """ValueError naming the first number that is not in E.164 form."""
    for phone in phones:
        if not PHONE_NUMBER.match(phone):
            raise ValueError(f"'{phone}' is not a phone number in E.164 form (+15555550123)")


def setup_digest(emails: list[str], topic_name: str = DATA_TOPIC) -> SetupOutcome:
    """Create the data digest's topic and one email subscription per address; existing ones are left alone.

    Each new address gets a confirmation email from AWS and receives digests once it is confirmed.
    Raises ValueError for a malformed address, botocore errors for AWS failures.
    """
    check_email_addresses(emails)
    outcome = SetupOutcome()
    sns = aws.make_client("sns")
    topic_arn = _ensure_topic(sns, topic_name, outcome)
    outcome.topic_arn = topic_arn
    subscribed = {e.casefold() for e in _endpoints(sns, topic_arn, "email")}
    for email in dict.fromkeys(emails):
        if email.casefold() in subscribed:
            outcome.existing.append(f"email subscription {email}")
        else:
            sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=email)
            subscribed.add(email.casefold())
            outcome.created.append(f"email subscription {email} (AWS sends it a confirmation email)")
    return outcome


def setup_alarms(
    phones: list[str],
    schedule_hours: int,
    slack_hours: int = 2,
    topic_name: str = DEFAULT_TOPIC,
    namespace: str = NAMESPACE,
) -> SetupOutcome:
    """Create or update the topic, the SMS subscriptions and both alarms (watching the metrics of `namespace`);
    unchanged resources are left alone.

    Raises ValueError for a bad phone number or window, botocore errors for AWS failures.
    """
    check_phone_numbers(phones)
    if not TOPIC_NAME.match(topic_name):
        raise ValueError(f"'{topic_name}' is not an SNS topic name (letters, digits, '-' and '_')")
    outcome = SetupOutcome()
    sns = aws.make_client("sns")
    topic_arn = _ensure_topic(sns, topic_name, outcome)
    outcome.topic_arn = topic_arn

    subscribed = _endpoints(sns, topic_arn, "sms")
    for phone in phones:
        if phone in subscribed:
            outcome.existing.append(f"SMS subscription {masked_phone(phone)}")
        else:
            sns.subscribe(TopicArn=topic_arn, Protocol="sms", Endpoint=phone)
            outcome.created.append(f"SMS subscription {masked_phone(phone)}")

    cloudwatch = aws.make_client("cloudwatch")
    definitions = alarm_definitions(topic_arn, schedule_hours, slack_hours, namespace)
    names = [d["AlarmName"] for d in definitions]
    current = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", ())}
    for definition in definitions:
        name = definition["AlarmName"]
        described = f"alarm {name} ({definition['MetricName']} {definition['Statistic']})"
        existing = current.get(name)
        if existing is not None and all(existing.get(k) == v for k, v in definition.items()):
            outcome.existing.append(described)
            continue
        cloudwatch.put_metric_alarm(**definition)
        (outcome.updated if existing is not None else outcome.created).append(described)
    return outcome


def send_test_message(topic_name: str, now: float) -> tuple[str, str]:
    """Publish a short test text (saying when: `now`, seconds since the epoch) through the alarm topic; return
    (topic ARN, message id).

    Raises LookupError if the topic does not exist (run `alarm setup` first).
    """
    sns = aws.make_client("sns")
    topic_arn = find_topic(sns, topic_name)
    if topic_arn is None:
        raise LookupError(f"no SNS topic '{topic_name}' in {sns.meta.region_name}; run `alarm setup` first")
    sent = utc(now).strftime("%Y-%m-%d %H:%M UTC")
    message = f"tuttle-prep test alert from {platform.node() or 'unknown host'} at {sent}. Alerts reach this phone."
    response = sns.publish(TopicArn=topic_arn, Subject="tuttle-prep test alert", Message=message)
    return topic_arn, response["MessageId"]


def alarm_states(
    names: tuple[str, ...] = (RUN_FAILED_ALARM, DID_NOT_RUN_ALARM),
) -> dict[str, tuple[str, datetime | None]]:
    """State (OK, ALARM, INSUFFICIENT_DATA) and since when, of each alarm in `names` that exists."""
    cloudwatch = aws.make_client("cloudwatch", max_attempts=1, connect_timeout=2, read_timeout=5)
    described = cloudwatch.describe_alarms(AlarmNames=list(names)).get("MetricAlarms", ())
    return {a["AlarmName"]: (a.get("StateValue", "?"), a.get("StateUpdatedTimestamp")) for a in described}
