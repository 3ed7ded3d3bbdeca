"""What an operator meets at the terminal (issue 23): unusable AWS settings, selectors that match nothing, `status`
pointed at the wrong place, where the metrics go, -v/-q, JSON output, `config show`. The real CLI against moto
server on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import SECRET, run_cli
from season import ML_PREFIX, frame_number, put_sources, sheet_rows, upload_season

from tuttle_prep.edges.cloudwatch import NAMESPACE

#: every command that talks to AWS, as an operator would type it (DEST is replaced by a temporary folder)
AWS_COMMANDS = [
    ("sync",),
    ("sync", "--dry-run"),
    ("status",),
    ("report",),
    ("manifests", "list"),
    ("versions", "list"),
    ("versions", "diff", "latest"),
    ("pull", "--dataset", "train", "--dest", "DEST"),
    ("pull", "--version", "latest", "--dest", "DEST"),
    ("split", "preview"),
    ("alarm", "test"),
]
BAD_AWS_SETTINGS = [
    ({"AWS_MAX_ATTEMPTS": "abc"}, "AWS_MAX_ATTEMPTS"),
    ({"AWS_PROFILE": "nosuch"}, "AWS_PROFILE"),
    ({"AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY"),
    ({"AWS_ENDPOINT_URL": "not-a-url"}, "AWS_ENDPOINT_URL"),
]


def season_of_four(bucket) -> list[str]:
    rows = sheet_rows("S01E01", ["Common", "Rare", "Uncommon", "Common"])
    upload_season(bucket, {"S01E01": rows}, sources=False)
    frames = [frame_number("S01E01", i) for i in range(4)]
    put_sources(bucket, frames)
    return frames


def metric_names(cloudwatch, namespace: str = NAMESPACE) -> set[str]:
    return {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]}


@pytest.mark.parametrize(("env", "setting"), BAD_AWS_SETTINGS, ids=[s for _, s in BAD_AWS_SETTINGS])
@pytest.mark.parametrize("command", AWS_COMMANDS, ids=[" ".join(c) for c in AWS_COMMANDS])
def test_an_unusable_aws_setting_is_one_sentence_naming_it_and_exit_2(
    bucket, monkeypatch, tmp_path, command, env, setting
):
    season_of_four(bucket)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = [str(tmp_path / "dest") if a == "DEST" else a for a in command]

    result = run_cli(*args)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("configuration error: ") and setting in errors[0], errors
    assert not any(k.startswith(ML_PREFIX) and k.endswith(".jpg") for k in bucket.keys(ML_PREFIX))
