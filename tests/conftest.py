"""Shared fixtures: a moto server on loopback, one fresh bucket per test, and the real CLI."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.config import Config
from click.testing import CliRunner, Result
from moto.server import ThreadedMotoServer
from s3_fault_proxy import S3FaultProxy

from tuttle_prep.core.clock import Clock

_bucket_numbers = itertools.count()

# Nothing a test runs may reach a real AWS account or read the developer's own settings.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in list(os.environ):
        if name.startswith(("TUTTLE_", "GOOGLE_", "AWS_")):
            monkeypatch.delenv(name, raising=False)
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    # the content hashes GET every source frame: only the tests of them turn them on (the synthetic sources of the
    # other tests are a few bytes that are no picture, and their request counts leave the GETs out)
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "off")
    monkeypatch.chdir(tmp_path)  # no developer .env is picked up


@pytest.fixture(autouse=True)
def _isolated_log_levels() -> Iterator[None]:
    """Commands set logger levels for their process (the demo quiets `tuttle_prep`); one test's run must not
    decide what the next test's logs show."""
    loggers = [logging.getLogger(), logging.getLogger("tuttle_prep")]
    levels = [lg.level for lg in loggers]
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 (a free port), shared by the session; stopped at the end."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Bucket:
    """A fresh bucket on the moto server, with the environment the CLI needs to use it."""

    name: str
    endpoint: str
    client: object
    env: dict[str, str] = field(default_factory=dict)

    def put(self, key: str, body: bytes | str = b"\xff\xd8\xff\xe0jpeg\xff\xd9") -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> set[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        return {
            obj["Key"]
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix)
            for obj in page.get("Contents", [])
        }

    def etags(self, prefix: str = "") -> dict[str, tuple[str, object]]:
        paginator = self.client.get_paginator("list_objects_v2")
        return {
            obj["Key"]: (obj["ETag"], obj["LastModified"])
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix)
            for obj in page.get("Contents", [])
        }


def make_s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 2}),
    )


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A new, empty bucket; AWS_ENDPOINT_URL and TUTTLE_BUCKET point the CLI at it."""
    name = f"test-bucket-{os.getpid()}-{next(_bucket_numbers)}"
    client = make_s3_client(s3_endpoint)
    client.create_bucket(Bucket=name)
    env = {"AWS_ENDPOINT_URL": s3_endpoint, "TUTTLE_BUCKET": name}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Bucket(name=name, endpoint=s3_endpoint, client=client, env=env)


@pytest.fixture(scope="session")
def s3_proxy(s3_endpoint: str) -> Iterator[S3FaultProxy]:
    """The fault-injecting HTTP proxy on 127.0.0.1 in front of the moto server, shared by the session."""
    with S3FaultProxy(s3_endpoint) as proxy:
        yield proxy


@pytest.fixture
def proxied(bucket: Bucket, s3_proxy: S3FaultProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3FaultProxy]:
    """The CLI's S3 requests (boto3's and obstore's) go through the fault proxy, reset for this test; the
    `bucket` helpers still talk to moto directly (unrecorded, never failed)."""
    s3_proxy.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_proxy.endpoint)
    bucket.env["AWS_ENDPOINT_URL"] = s3_proxy.endpoint
    yield s3_proxy
    s3_proxy.reset()


def run_cli(*args: str, env: dict[str, str] | None = None, clock: Clock | None = None) -> Result:
    """Run `data_preparation.py ARGS` in-process through click; the result has exit_code and output.

    `clock` is the clock the commands are handed (default: the system clock, as the entry point hands them).
    """
    from tuttle_prep.cli import main
    from tuttle_prep.commands.common import Invocation

    invocation = Invocation() if clock is None else Invocation(clock=clock)
    return CliRunner().invoke(main, list(args), env=env, obj=invocation, catch_exceptions=False)


@pytest.fixture
def fake_google(monkeypatch: pytest.MonkeyPatch):
    """The fake Google token endpoint and Sheets API on 127.0.0.1; fails the test if anything else is reached."""
    from fake_google import forbid_non_loopback, running_fake_google

    leaks = forbid_non_loopback(monkeypatch)
    with running_fake_google() as server:
        yield server
    assert not leaks, f"the code tried to reach {leaks}"


#: the AWS secret key the `account` fixture sets: no log line, summary or message may contain it
SECRET = "wJalrXUtnFEMI-not-a-real-secret-K7MDENG"
ACCOUNT_SERVICES = ("cloudwatch", "cloudwatch-logs", "sns", "sqs")
_accounts = itertools.count(1)


@pytest.fixture
def account(bucket, monkeypatch: pytest.MonkeyPatch):
    """A fresh moto account for CloudWatch, Logs, SNS and SQS; returns a client factory for reading back.

    Each test gets its own account (an `x-moto-account-id` header added to the logs/cloudwatch/sns/sqs
    requests through `tuttle_prep.aws.new_session`), so metrics, alarms and topics of other tests never
    mix in; S3 requests are left untouched.
    """
    from tuttle_prep.edges import aws

    account_id = f"9{os.getpid() % 1000:03d}{next(_accounts):08d}"

    def add_account_header(request, **_):
        request.headers["x-moto-account-id"] = account_id

    def new_session() -> boto3.session.Session:
        session = boto3.session.Session()
        for service in ACCOUNT_SERVICES:
            session.events.register(f"request-created.{service}", add_account_header)
        return session

    monkeypatch.setattr(aws, "new_session", new_session)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return lambda service: aws.make_client(service, max_attempts=1)
