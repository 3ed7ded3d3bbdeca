"""Inputs that turn into wrong data without a clear error (issue 16), through the real CLI and moto server.

Backup manifests in subfolders, a renamed manifest left behind in S3, sheet locations that are bare words,
repeated header names, trailing commas, a second `pull` into the same folder, failed downloads in the
index, and a split seed with a stray space.
"""

from __future__ import annotations

import hashlib

from conftest import Bucket, run_cli
from season import dataset_keys, upload_season
from test_cloudwatch import account, log_messages, summary_of  # noqa: F401 - `account` is a fixture
from test_faults import expected_state, season_rows


# ---- 8: TUTTLE_SPLIT_SEED is trimmed; its fingerprint is in every run summary ------------------------------
def test_split_seed_is_trimmed_and_its_fingerprint_is_in_the_summaries(bucket: Bucket, account, monkeypatch) -> None:  # noqa: F811
    sheets = {"S01E01": season_rows("S01E01", 40)}
    upload_season(bucket, sheets)
    monkeypatch.setenv("TUTTLE_SPLIT_SEED", "tuttle-twins-2022 ")  # a CI variable with a trailing space
    monkeypatch.setenv("TUTTLE_LOG_GROUP", "/tuttle-twins/seed")

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == expected_state(sheets)  # the split of the default seed, not a reshuffle
    fingerprint = hashlib.sha256(b"tuttle-twins-2022").hexdigest()[:8]
    assert f"split seed fingerprint {fingerprint} (sha256 of TUTTLE_SPLIT_SEED)" in result.output
    summary = summary_of(log_messages(account("logs"), "/tuttle-twins/seed")[1])
    assert summary["split_seed_fingerprint"] == fingerprint

    monkeypatch.setenv("TUTTLE_SPLIT_SEED", "reshuffle-2023")
    dry = run_cli("sync", "--dry-run")
    assert f"split seed fingerprint {hashlib.sha256(b'reshuffle-2023').hexdigest()[:8]}" in dry.output
