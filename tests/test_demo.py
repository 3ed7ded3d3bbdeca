"""`demo`: the whole job on an embedded S3 on loopback, printing its tables."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import run_cli

REPO = Path(__file__).resolve().parents[1]

# the demo points boto3 at its own server through these; the test puts them back afterwards
DEMO_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def test_demo_exits_0_and_prints_its_tables(monkeypatch: pytest.MonkeyPatch):
    for name in DEMO_ENV:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)

    result = run_cli("demo")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"embedded S3 \(moto server\) at http://127\.0\.0\.1:\d+", out)
    steps = [
        "== first sync",
        "== dry run after the edits",
        "== second sync",
        "== third sync",
        "== the datasets now",
        "== the report",
    ]
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)
    # one table per sync, each with the episodes and a totals line
    header = "episode         keep      copy      move   refresh    delete   missing  rejected  status"
    assert out.count(header) == 4
    assert all(out.count(episode) >= 4 for episode in ("S01E01", "S01E02", "S01E03"))
    first, dry, second, third = (out[positions[i] : positions[i + 1]] for i in range(4))
    copied = int(re.search(r"done: copied (\d+), moved 0, deleted 0; failed 0", first).group(1))
    assert copied > 0
    assert "nothing was changed" in dry and re.search(r"would copy \d+, move [1-9]\d*, delete [1-9]", dry)
    assert re.search(r"done: copied \d+, moved [1-9]\d*, deleted [1-9]\d*; failed 0", second)
    assert "done: copied 0, moved 0, deleted 0; failed 0" in third
    # the datasets table: a row per dataset, and the totals add up to the frames kept by the last sync
    datasets = out[positions[4] : positions[5]]
    totals = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(train|validate|test)\s.*?(\d+)$", datasets, re.M)}
    assert set(totals) == {"train", "validate", "test"}
    kept = int(re.search(r"^total\s+(\d[\d,]*)", third, re.M).group(1).replace(",", ""))
    assert sum(totals.values()) == kept
    assert "tuttle-prep-demo-plan.csv" in out
    # it ends with the report: the split's quality printed, the picture written where it says
    report = out[positions[5] :]
    assert "each rarity's split against the target" in report and "leakage: frames with a train frame" in report
    png = Path(re.search(r"The report's picture is (\S+report\.png)", out).group(1))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    # the last line points at the pages that explain connecting a real bucket and sheets, and they exist
    pointed = re.findall(r"\b(docs/[\w-]+\.md)\b", out[out.index("Next:") :])
    assert {"docs/deploy.md", "docs/google-sheets.md"} <= set(pointed)
    assert all((REPO / page).is_file() for page in pointed)
