"""The data digest: data findings go by email to the sheet owners, once per change, never to the pager.

Digests are read back black-box: an SQS queue subscribed (raw delivery) to the digest topic on the moto
server receives exactly what the email subscribers would.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import SECRET, run_cli
from fake_google import PRIVATE_KEY_ID, FakeGoogle
from season import (
    FRAME,
    UNSUPERVISED,
    dataset_keys,
    frame_number,
    manifest_entry,
    put_manifest,
    put_sheet,
    put_sources,
    sheet_key,
    sheet_rows,
    upload_season,
)
from test_cloudwatch import metric_sums

from tuttle_prep.core.findings import LIST_ALL_COMMAND, SNS_MAX_BYTES
from tuttle_prep.core.frame_table import SHEET_HEADER
from tuttle_prep.edges.alarms import DATA_TOPIC

HEADER = list(SHEET_HEADER)  # column C is FRAME NUMBER, F is JONNY's RECLASSIFICATION
SHEET_ID = "1tt01" + "Xy_z-" * 7 + "abcd"
GID = 1000  # the fake API's sheetId of the first worksheet


def google_row(frame: str, unsupervised: str = "", jonny: str = "") -> list[str]:
    return ["", "0", frame, unsupervised, "", jonny, ""]


def inbox(account) -> callable:
    """Subscribe a queue to the digest topic; return a function that drains it (the messages' bodies)."""
    sns, sqs = account("sns"), account("sqs")
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":" + DATA_TOPIC))
    url = sqs.create_queue(QueueName="digest-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})

    def drain() -> list[str]:
        bodies = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(message["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    return drain


def test_alarm_setup_digest_email_is_idempotent_and_needs_no_phone(bucket, account):
    first = run_cli("alarm", "setup", "--digest-email", "a@example.com", "--digest-email", "b@example.com")
    second = run_cli("alarm", "setup", "--digest-email", "a@example.com", "--digest-email", "B@example.com")

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert first.stdout.count("created") == 3 and "created" not in second.stdout and second.stdout.count("exists") == 3
    sns = account("sns")
    [topic] = [t["TopicArn"] for t in sns.list_topics()["Topics"]]  # no SMS topic without --phone
    assert topic.endswith(":tuttle-prep-data")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert sorted((s["Protocol"], s["Endpoint"]) for s in subscriptions) == [
        ("email", "a@example.com"),
        ("email", "b@example.com"),
    ]
    assert account("cloudwatch").describe_alarms()["MetricAlarms"] == []


def test_alarm_setup_refuses_a_bad_address_before_creating_anything(bucket, account):
    result = run_cli("alarm", "setup", "--phone", "+15555550123", "--digest-email", "not-an-address")

    assert result.exit_code == 2 and "not-an-address" in result.stderr
    assert account("sns").list_topics()["Topics"] == []
    assert run_cli("alarm", "setup").exit_code == 2  # neither --phone nor --digest-email


def test_digest_is_sent_once_per_change_of_the_findings_with_links_to_the_cells(
    bucket, account, fake_google: FakeGoogle, tmp_path, monkeypatch
):
    monkeypatch.setenv("GOOGLE_DRIVE_CREDENTIALS_FILE", str(fake_google.key_file(tmp_path)))
    monkeypatch.setenv("TUTTLE_GOOGLE_API_URL", fake_google.url)
    monkeypatch.setenv("TUTTLE_METRICS", "on")  # the runs' metrics are checked below (no log group here)
    good = [frame_number("S01E01", i) for i in range(4)]
    typo, bad_frame = frame_number("S01E01", 4), "TT_S01_E01_FRM-00-00-99"
    rows = [HEADER, *(google_row(f, "Common") for f in good)]
    rows += [google_row(typo, "Common", jonny="Comon"), google_row(bad_frame, "Rare")]  # sheet rows 6 and 7
    sheet = fake_google.add_sheet(SHEET_ID, rows, title="Tuttle Twins S01E01 Unsupervised Clustering")
    put_sources(bucket, good)
    put_manifest(bucket, "S01", [manifest_entry("S01E01", f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit")])

    unconfigured = run_cli("sync")  # no --digest-email yet: no digest, no topic

    assert unconfigured.exit_code == 0, unconfigured.output
    assert "data digest: not configured" in unconfigured.stderr
    assert account("sns").list_topics()["Topics"] == []

    assert run_cli("alarm", "setup", "--digest-email", "owners@example.com").exit_code == 0
    drain = inbox(account)

    first = run_cli("sync")

    assert first.exit_code == 0, first.output  # only data findings
    assert "data findings: 2 (2 rejected rows)" in first.stdout
    sums = metric_sums(account("cloudwatch"))
    assert (sums["RunFailed"], sums["RunSucceeded"]) == (0, 2) and sums["DataFindings"] == 4  # 2 runs × 2
    [digest] = drain()
    link = f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit#gid={GID}"
    assert f"{link}&range=F6" in digest and "row 6, column \"JONNY's RECLASSIFICATION\": 'Comon'" in digest
    assert f"{link}&range=C7" in digest and f"row 7, column 'FRAME NUMBER': '{bad_frame}'" in digest
    assert "S01E01 — Tuttle Twins S01E01 Unsupervised Clustering" in digest
    for secret in (SECRET, PRIVATE_KEY_ID, "PRIVATE KEY", "testing"):
        assert secret not in digest
    assert set(dataset_keys(bucket)) == set(good)

    again = run_cli("sync")  # the same rows: nothing new to tell

    assert again.exit_code == 0 and "data digest: unchanged" in again.stderr
    assert drain() == []

    sheet.rows[5] = google_row(typo, "Common", jonny="Common")  # the typo fixed, the bad frame number stays
    put_sources(bucket, [typo])

    fixed = run_cli("sync")

    assert fixed.exit_code == 0, fixed.output
    [second] = drain()
    assert f"{link}&range=C7" in second and "range=F6" not in second and "1 rejected row" in second
    assert typo in dataset_keys(bucket)

    assert run_cli("sync", "--dry-run").exit_code == 0 and drain() == []  # a dry run never sends one
    strict = run_cli("sync", "--strict")
    assert strict.exit_code == 1 and drain() == []  # the same findings: exit 1 for the terminal, no digest


def test_an_oversized_digest_is_cut_with_the_count_and_the_command_that_lists_all(bucket, account, tmp_path):
    bad = 3000
    rows = sheet_rows("S01E01", ["Common"]) + sheet_rows("S01E01", ["Légendaire ✨"] * bad, start=1)
    upload_season(bucket, {"S01E01": rows}, sources=False)
    put_sources(bucket, [rows[0][FRAME]])
    assert run_cli("alarm", "setup", "--digest-email", "owners@example.com").exit_code == 0
    drain = inbox(account)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    [digest] = drain()
    size = len(digest.encode("utf-8"))
    assert SNS_MAX_BYTES - 2000 < size <= SNS_MAX_BYTES  # filled up to the limit, in UTF-8 bytes
    shown = digest.count("not a rarity")
    assert 0 < shown < bad
    assert f"... and {bad - shown:,} more data findings ({bad - shown:,} rejected rows)" in digest
    assert digest.rstrip().endswith(LIST_ALL_COMMAND)
    assert f"s3://{bucket.name}/{sheet_key('S01E01')}, row 2, cell D2" not in digest  # row 2 is good
    assert f"s3://{bucket.name}/{sheet_key('S01E01')}, row 3, cell D3" in digest  # a CSV sheet: file and row

    out = tmp_path / "findings.csv"
    listed = run_cli("sync", "--dry-run", "--findings-out", str(out))  # the command the digest names

    assert listed.exit_code == 0, listed.output
    findings = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(findings) == bad and set(findings["kind"]) == {"rejected row"}
    assert findings["where"].iloc[-1] == f"s3://{bucket.name}/{sheet_key('S01E01')}, row {bad + 2}, cell D{bad + 2}"


@pytest.mark.parametrize("option", ["--episode", "--season"])
def test_a_partial_run_sends_no_digest(bucket, account, option):
    upload_season(bucket, {"S01E01": sheet_rows("S01E01", ["Common", "Shiny"])})
    put_sheet(bucket, "S01E01", [{FRAME: frame_number("S01E01", 0), UNSUPERVISED: "Shiny"}])
    assert run_cli("alarm", "setup", "--digest-email", "owners@example.com").exit_code == 0
    drain = inbox(account)

    result = run_cli("sync", option, "S01E01" if option == "--episode" else "S01")

    assert result.exit_code == 0, result.output
    assert "data digest: not sent: --season/--episode" in result.stderr and drain() == []
