"""`alarm` on a running host: adding a phone keeps the window, a phone can be removed, `alarm test` tests both
topics, and setup in a region without the run metrics warns. Against moto (SNS, CloudWatch, SQS read-back)."""

from __future__ import annotations

from conftest import run_cli
from test_cloudwatch import _alarms
from test_digest import inbox

from tuttle_prep.edges.alarms import DEFAULT_TOPIC, DID_NOT_RUN_ALARM
from tuttle_prep.edges.cloudwatch import NAMESPACE


def _sms(account) -> list[str]:
    sns = account("sns")
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":" + DEFAULT_TOPIC))
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    return sorted(s["Endpoint"] for s in subscriptions if s["Protocol"] == "sms")


def test_adding_a_phone_keeps_the_did_not_run_window_set_before(bucket, account):
    assert run_cli("alarm", "setup", "--phone", "+15555550123", "--schedule-hours", "12").exit_code == 0

    added = run_cli("alarm", "setup", "--phone", "+15555550199")

    assert added.exit_code == 0, added.output
    missing = _alarms(account("cloudwatch"))[DID_NOT_RUN_ALARM]
    assert missing["Period"] * missing["EvaluationPeriods"] == (12 + 2) * 3600
    assert f"updated  alarm {DID_NOT_RUN_ALARM}" not in added.stdout
    assert _sms(account) == ["+15555550123", "+15555550199"]


def test_a_phone_can_be_removed_and_the_others_stay(bucket, account):
    assert run_cli("alarm", "setup", "--phone", "+15555550123", "--phone", "+15555550199").exit_code == 0

    removed = run_cli("alarm", "remove-phone", "+15555550123", "+15555550100")

    assert removed.exit_code == 0, removed.output
    assert "removed  SMS subscription +1******0123" in removed.stdout
    assert "absent   SMS subscription +1******0100" in removed.stdout and "5555550123" not in removed.output
    assert _sms(account) == ["+15555550199"]
    assert run_cli("alarm", "remove-phone", "555-0123").exit_code == 2


def test_alarm_test_tests_the_digest_topic_too(bucket, account):
    assert run_cli("alarm", "setup", "--phone", "+15555550123", "--digest-email", "owners@example.com").exit_code == 0
    drain = inbox(account)

    result = run_cli("alarm", "test")

    assert result.exit_code == 0, result.output
    assert "sent test message" in result.stdout and "sent test digest" in result.stdout
    [digest] = drain()
    assert "test of the data digest" in digest


def test_setup_in_a_region_without_the_run_metrics_warns(bucket, account):
    result = run_cli("alarm", "setup", "--phone", "+15555550123")

    assert result.exit_code == 0, result.output
    assert f"no {NAMESPACE} metrics in us-east-1 yet" in result.stderr
    account("cloudwatch").put_metric_data(Namespace=NAMESPACE, MetricData=[{"MetricName": "RunSucceeded", "Value": 1}])
    again = run_cli("alarm", "setup", "--phone", "+15555550123")
    assert again.exit_code == 0 and "metrics in" not in again.stderr
