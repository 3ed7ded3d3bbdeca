"""Found by a hostile review of issues 22, 23 and 25 (on moto server, the real CLI): each test failed before its
fix. Assertions are on the bucket and on what the commands print."""

from __future__ import annotations

import csv
import json

from conftest import run_cli
from season import FRAME, source_key, upload_season
from test_refresh import E1, copies, dataset_object, put_multipart, season_of


def test_a_dataset_object_overwritten_by_a_same_size_multipart_upload_is_refreshed(bucket, proxied, tmp_path):
    """The job writes dataset objects by CopyObject from a single-part source, so a dataset object with a
    multipart ETag over a single-part source was written by someone else: comparing sizes and times is not
    enough (the same size, newer than the source), it is refreshed once, and `pull --version` gets its bytes."""
    rows = season_of()
    upload_season(bucket, {E1: rows})
    assert run_cli("sync").exit_code == 0
    frame = rows[2][FRAME]
    key = dataset_object(bucket, frame)
    source = bucket.get(source_key(frame))
    forged = bytes(reversed(source))  # another picture of the same size
    put_multipart(bucket, key, forged)

    proxied.reset()
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert copies(proxied) == [(source_key(frame), key)]
    assert bucket.get(key) == source
    assert "refreshed 1" in result.output

    proxied.reset()
    assert run_cli("sync").exit_code == 0
    assert copies(proxied) == []


def test_config_show_masks_the_password_in_an_endpoint_url(bucket, monkeypatch):
    """An S3-compatible endpoint may carry user:password in its URL: `config show` (text and JSON) names the
    endpoint without them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio-user:s3cr3t-pass@127.0.0.1:9000/")
    for args in (["config", "show"], ["config", "show", "--format", "json"]):
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
        assert "s3cr3t-pass" not in result.output and "minio-user" not in result.output
        assert "127.0.0.1:9000" in result.output


def test_json_output_is_json_on_stdout_even_when_a_setting_is_unusable(bucket, monkeypatch):
    """With `--format json`, a configuration or usage error is a JSON object on stdout (the sentence stays on
    stderr, exit 2), as `sync --format json` already gives its run summary: a script parsing stdout sees why."""
    monkeypatch.setenv("TUTTLE_BUCKET", "no-such-bucket-r3")
    for args in (["status"], ["manifests", "list"]):
        result = run_cli(*args, "--format", "json")
        assert result.exit_code == 2, result.output
        answer = json.loads(result.stdout)
        assert answer["exit_code"] == 2 and "check TUTTLE_BUCKET" in answer["error"], answer
        assert "check TUTTLE_BUCKET" in result.stderr
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "abc")
    result = run_cli("sync", "--format", "json")
    assert result.exit_code == 2 and "AWS_MAX_ATTEMPTS" in json.loads(result.stdout)["error"]
    text = run_cli("status")
    assert text.exit_code == 2 and text.stdout == ""  # the text format prints nothing on stdout


def test_json_output_of_a_version_that_does_not_exist_is_json_on_stdout(bucket, tmp_path):
    """`versions show|diff` and `pull --version` naming no version: exit 2, the sentence on stderr, and with
    `--format json` the same sentence as a JSON object on stdout."""
    upload_season(bucket, {E1: season_of(2)})
    assert run_cli("sync").exit_code == 0
    for args in (
        ["versions", "show", "nosuch"],
        ["versions", "diff", "nosuch"],
        ["pull", "--version", "nosuch", "--dest", str(tmp_path / "d")],
    ):
        result = run_cli(*args, "--format", "json")
        assert result.exit_code == 2, result.output
        assert "no version matches 'nosuch'" in json.loads(result.stdout)["error"]
        assert "no version matches 'nosuch'" in result.stderr
    assert not (tmp_path / "d").exists()


def test_an_undecodable_source_finding_names_no_memory_address(bucket, monkeypatch, tmp_path):
    """Pillow's "cannot identify image file <_io.BytesIO object at 0x7f…>" carries a memory address: the finding
    a sheet owner reads (and the digest, the hash store) says what the object is not, the same on every run."""
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "on")
    rows = season_of(2)
    upload_season(bucket, {E1: rows})
    bucket.put(source_key(rows[0][FRAME]), b"")  # 0 bytes
    bucket.put(source_key(rows[1][FRAME]), b"GIF89a")  # not a picture at all
    findings = tmp_path / "findings.csv"
    result = run_cli("sync", "--findings-out", str(findings))
    assert result.exit_code == 0, result.output
    reasons = [r["reason"] for r in csv.DictReader(findings.open(encoding="utf-8"))]
    assert len(reasons) == 2
    assert all("BytesIO" not in r and " at 0x" not in r for r in reasons), reasons
    assert all("not a picture Pillow can decode (not an image file Pillow knows)" in r for r in reasons), reasons


def test_sync_json_with_a_selector_that_matches_nothing_is_one_json_document(bucket):
    """The run summary alone (its `usage_error`), not the summary and an error object one after the other."""
    upload_season(bucket, {E1: season_of(2)})
    result = run_cli("sync", "--episode", "S09E09", "--format", "json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["usage_error"]
