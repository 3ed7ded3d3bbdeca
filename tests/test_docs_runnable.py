"""Every code block the docs mark runnable is run against the embedded S3, and prints what the docs show.

A runnable block is a ```console block right after a `<!-- runnable -->` line, in README.md or docs/*.md. Its
lines starting with `$ ` are commands (`python data_preparation.py …` only); the lines after each command, up to
the next one, are what that command prints on stdout (log lines go to stderr and are not shown or compared).
Each block starts from an empty bucket `media.angel-nft.com` on a moto server of its own on 127.0.0.1, with the
settings `demo --keep` prints, and every command must exit 0.

Before comparing, the docs and the output are normalised the same way (`normalise`): a dataset version id becomes
`<version>`, a date and time `<time>`, a port of 127.0.0.1 `<port>`, this Python's path `python`, the temporary
folder `/tmp`; trailing spaces are dropped. A line `...` in the docs stands for any number of lines.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *REPO.glob("docs/*.md")])
BLOCK = re.compile(r"^<!-- runnable -->[ \t]*\n```console[ \t]*\n(.*?)^```", re.M | re.S)
ANY_LINES = "..."
BUCKET = "media.angel-nft.com"

_NORMAL = [
    (re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{12}\b"), "<version>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?: ?UTC|Z)?"), "<time>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
]


def normalise(text: str) -> list[str]:
    """The lines of `text` as compared: ids, times and ports replaced, trailing spaces dropped."""
    for pattern, replacement in _NORMAL:
        text = pattern.sub(replacement, text)
    import sys

    text = text.replace(Path(sys.executable).as_posix(), "python").replace(tempfile.gettempdir(), "/tmp")
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` is `expected`, a `...` line in `expected` standing for any number of lines."""
    if not expected:
        return not actual
    if expected[0] == ANY_LINES:
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and actual[0] == expected[0] and matches(expected[1:], actual[1:])


def parse_block(text: str) -> list[tuple[str, list[str]]]:
    """(command, the lines it prints) for each `$ ` line of a block."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].strip(), []))
        elif steps:
            steps[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"output before the first command: {line!r}")
    return steps


def runnable_blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{page.relative_to(REPO)}:{line}", match.group(1)))
    return found


BLOCKS = runnable_blocks()


@pytest.fixture
def embedded_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server of the block's own (as `demo --keep` leaves one), with the settings it prints; stopped after."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "TUTTLE_BUCKET": BUCKET,
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):  # `demo` changes these: put back after
        monkeypatch.delenv(name, raising=False)
    try:
        yield endpoint
    finally:
        server.stop()


def _exists(client) -> bool:
    try:
        client.head_bucket(Bucket=BUCKET)
    except Exception:  # noqa: BLE001 - any answer but 200: there is nothing to empty
        return False
    return True


def test_the_docs_mark_the_key_blocks_runnable() -> None:
    commands = [command for _, block in BLOCKS for command, _ in parse_block(block)]
    for wanted in ("data_preparation.py demo", "data_preparation.py status", "data_preparation.py versions list"):
        assert any(command.endswith(wanted) for command in commands), wanted


def test_the_comparison_catches_a_difference() -> None:
    shown = normalise("done: copied 2\n...\nversion 20261207T231749Z-a479d5847b3a written  \n")
    assert matches(shown, normalise("done: copied 2\nmore\nlines\nversion 20270101T000000Z-0123456789ab written"))
    assert not matches(shown, normalise("done: copied 3\nversion 20261207T231749Z-a479d5847b3a written"))
    assert not matches(normalise("a\nb"), normalise("a\nb\nc"))
    assert parse_block("$ python data_preparation.py status\nrun lock: free\n") == [
        ("python data_preparation.py status", ["run lock: free"])
    ]


@pytest.mark.parametrize("where,block", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_runnable_block_prints_what_the_docs_show(where: str, block: str, embedded_s3, monkeypatch) -> None:
    import boto3

    # moto servers of one process share their state: a bucket an earlier demo left is emptied first
    client = boto3.client("s3", endpoint_url=embedded_s3, region_name="us-east-1")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) if _exists(client) else ():
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})
    client.create_bucket(Bucket=BUCKET)
    for command, shown in parse_block(block):
        words = shlex.split(command)
        assert words[:2] == ["python", "data_preparation.py"], f"{where}: only data_preparation.py runs: {command}"
        result = run_cli(*words[2:])
        assert result.exit_code == 0, f"{where}: `{command}` exited {result.exit_code}:\n{result.output}"
        actual = normalise(result.stdout)
        if os.environ.get("DOCS_BLOCKS_SHOW"):  # to write a block: what each command prints, into that file
            with open(os.environ["DOCS_BLOCKS_SHOW"], "a", encoding="utf-8") as shown_file:
                shown_file.write(f"$ {command}\n" + "\n".join(actual) + "\n")
            continue
        assert matches(normalise("\n".join(shown)), actual), (
            f"{where}: `{command}` printed\n" + "\n".join(actual) + "\n\nthe docs show\n" + "\n".join(shown)
        )
    if os.environ.get("DOCS_BLOCKS_SHOW"):
        pytest.fail(f"DOCS_BLOCKS_SHOW: the output was written to {os.environ['DOCS_BLOCKS_SHOW']}, not compared")
