"""Inputs that turn into wrong data without a clear error (issue 16), through the real CLI and moto server.

Backup manifests in subfolders, a renamed manifest left behind in S3, sheet locations that are bare words,
repeated header names, trailing commas, a second `pull` into the same folder, failed downloads in the
index, and a split seed with a stray space.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from conftest import Bucket, run_cli
from fake_google import FakeGoogle
from season import (
    HEADER,
    JPEG,
    MANIFESTS_PREFIX,
    ML_PREFIX,
    UNSUPERVISED,
    dataset_key,
    dataset_keys,
    frame_number,
    manifest_entry,
    put_manifest,
    put_sheet,
    put_sources,
    upload_season,
)
from test_cloudwatch import log_messages, summary_of
from test_faults import expected_state, season_rows

from tuttle_prep.edges import aws


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
    assert summary["split_mode"] == "stratify=rarity, group seconds=0"

    monkeypatch.setenv("TUTTLE_SPLIT_SEED", "reshuffle-2023")
    dry = run_cli("sync", "--dry-run")
    assert f"split seed fingerprint {hashlib.sha256(b'reshuffle-2023').hexdigest()[:8]}" in dry.output


# ---- 1: only *-episodes.json directly under the prefix are read ------------------------------------------
def test_a_backup_manifest_in_a_subfolder_is_ignored_by_sync_and_list(bucket: Bucket) -> None:
    live = {"S01E01": season_rows("S01E01", 6)}
    upload_season(bucket, live)
    old_sheet = put_sheet(bucket, "S01E01-2022", [{**r, UNSUPERVISED: "Legendary"} for r in live["S01E01"]])
    backup = f"{MANIFESTS_PREFIX}2022-backup/S01-episodes.json"
    bucket.put(backup, json.dumps([{**manifest_entry("S01E01", old_sheet), "google_spreadsheet_title": "OLD"}]))

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == expected_state(live)  # the live sheet's rarities, not the backup's
    assert (
        f"s3://{bucket.name}/{backup}: ignored, in a subfolder of the manifests prefix; "
        "only files directly under it are read" in result.output
    )
    listed = run_cli("manifests", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    subfolder = "in a subfolder of the manifests prefix; only files directly under it are read"
    assert lines[0] == f"ignored  {backup}: {subfolder}"
    assert lines[2].startswith(f"{MANIFESTS_PREFIX}S01-episodes.json  season S01: 1 episode")
    assert lines[3] == "  S01E01  Tuttle Twins S01E01 test sheet"
    assert "OLD" not in listed.output


# ---- 2: push validates the set live after the push; --delete-missing -------------------------------------
def _write(folder: Path, name: str, entries: list[dict[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(entries, indent=2), encoding="utf-8")


def test_push_after_a_local_rename_refuses_the_duplicate_until_delete_missing(bucket: Bucket, tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    old, new = "S01-episodes.json", "S01-tuttle-episodes.json"
    _write(folder, old, [manifest_entry("S01E01", "s3://b/old-link.csv")])
    assert run_cli("manifests", "push", str(folder)).exit_code == 0
    (folder / old).unlink()
    _write(folder, new, [manifest_entry("S01E01", "s3://b/fixed-link.csv")])
    before = bucket.etags(MANIFESTS_PREFIX)

    refused = run_cli("manifests", "push", str(folder))

    assert refused.exit_code == 1, refused.output
    old_where = f"s3://{bucket.name}/{MANIFESTS_PREFIX}{old}"
    assert f"ERROR: {new}: episode S01E01 repeats an episode already in {old_where}" in refused.output
    assert "push with --delete-missing to delete the old name" in refused.output
    assert "nothing uploaded" in refused.output
    assert bucket.etags(MANIFESTS_PREFIX) == before

    dry = run_cli("manifests", "push", "--delete-missing", "--dry-run", str(folder))
    assert dry.exit_code == 0, dry.output
    assert f"would delete (only in S3)  {MANIFESTS_PREFIX}{old}" in dry.output
    assert bucket.etags(MANIFESTS_PREFIX) == before

    backup = f"{MANIFESTS_PREFIX}2022-backup/{old}"  # not live: neither checked nor deleted
    bucket.put(backup, json.dumps([manifest_entry("S01E01", "s3://b/old-link.csv")]))
    done = run_cli("manifests", "push", "--delete-missing", str(folder))
    assert done.exit_code == 0, done.output
    assert bucket.keys(MANIFESTS_PREFIX) == {MANIFESTS_PREFIX + new, backup}
    assert f"ignored  {backup}: in a subfolder of the manifests prefix" in done.output
    assert json.loads(bucket.get(MANIFESTS_PREFIX + new))[0]["google_spreadsheet_share_link"] == "s3://b/fixed-link.csv"
    assert "1 uploaded, 0 unchanged, 1 deleted" in done.output


def test_push_delete_missing_deletes_nothing_when_the_local_files_have_errors(bucket: Bucket, tmp_path: Path) -> None:
    put_manifest(bucket, "S09", [manifest_entry("S09E01", "s3://b/s09.csv")])
    backup = f"{MANIFESTS_PREFIX}old/S08-episodes.json"
    bucket.put(backup, "[]")
    folder = tmp_path / "manifests"
    _write(folder, "S01-episodes.json", [manifest_entry("S01E01", "s3://b/a.csv")])
    _write(folder, "S02-episodes.json", [manifest_entry("S01E01", "s3://b/b.csv")])  # the same episode again

    result = run_cli("manifests", "push", "--delete-missing", str(folder))

    assert result.exit_code == 1
    assert "ERROR: S02-episodes.json: episode S01E01 repeats an episode already in S01-episodes.json" in result.output
    assert bucket.keys(MANIFESTS_PREFIX) == {MANIFESTS_PREFIX + "S09-episodes.json", backup}
    help_text = run_cli("manifests", "push", "--help").output
    assert "--delete-missing" in help_text and "renamed" in help_text


# ---- 5: bare words and scheme-less Google links are not sheet locations ----------------------------------
SHEET_ID = "1cr_rXVh0eZZ4aLtFKb5dw8jfBtksRezhY1X5ys6FckI"
NO_SCHEME = f"docs.google.com/spreadsheets/d/{SHEET_ID}/edit"


def test_bare_words_and_links_without_https_are_reported_by_validate_push_and_sync(
    bucket: Bucket, tmp_path: Path
) -> None:
    existing = tmp_path / "exports" / "S01E03"  # a local path without .csv is fine when it exists
    existing.parent.mkdir()
    existing.write_text("FRAME NUMBER\n")
    folder = tmp_path / "manifests"
    entries = [
        manifest_entry("S01E01", "TODO"),
        manifest_entry("S01E02", NO_SCHEME),
        manifest_entry("S01E03", str(existing)),
        manifest_entry("S01E04", "exports/S01E04.csv"),
    ]
    _write(folder, "S01-episodes.json", entries)
    todo = (
        "S01-episodes.json: episode S01E01: google_spreadsheet_share_link 'TODO' is not a Google Sheets link, "
        "s3:// URL, file:// URL or path of a CSV export: there is no file 'TODO'"
    )
    no_scheme = (
        f"S01-episodes.json: episode S01E02: google_spreadsheet_share_link '{NO_SCHEME}' is a Google Sheets link "
        f"without 'https://'; write it as 'https://{NO_SCHEME}'"
    )

    validated = run_cli("manifests", "validate", str(folder))
    assert validated.exit_code == 1
    assert f"ERROR: {todo}" in validated.output and f"ERROR: {no_scheme}" in validated.output
    assert validated.output.strip().endswith("1 manifest file, 2 episodes: 2 error(s), 0 warning(s)")

    pushed = run_cli("manifests", "push", str(folder))
    assert pushed.exit_code == 1 and f"ERROR: {todo}" in pushed.output and "nothing uploaded" in pushed.output
    assert bucket.keys(MANIFESTS_PREFIX) == set()

    good = {"S01E05": season_rows("S01E05", 3)}
    before = {"TT_S01_E01_FRM-00-00-00-00": ("train", "Rare")}
    bucket.put("tuttle_twins/ML/train/Rare/TT_S01_E01_FRM-00-00-00-00.jpg")
    locations = upload_season(bucket, good, manifest=False)
    put_manifest(bucket, "S01", [*entries[:2], manifest_entry("S01E05", locations["S01E05"])])
    synced = run_cli("sync", "--prune-orphans")
    assert synced.exit_code == 1
    assert f"s3://{bucket.name}/{MANIFESTS_PREFIX}{todo}" in synced.output
    assert f"s3://{bucket.name}/{MANIFESTS_PREFIX}{no_scheme}" in synced.output
    assert dataset_keys(bucket) == {**before, **expected_state(good)}  # S01E01's file stays


# ---- 6: a repeated header name is a sheet error in Google and CSV sheets alike ---------------------------
def _google_id(n: int) -> str:
    return f"1wd{n:02d}" + "Qr_s-" * 7 + "tuvw"


def test_a_repeated_header_name_skips_the_episode_in_google_and_csv_sheets_alike(
    fake_google: FakeGoogle, bucket: Bucket, tmp_path: Path, monkeypatch
) -> None:
    frames = {eid: [frame_number(eid, i) for i in range(3)] for eid in ("S01E01", "S01E02", "S01E03", "S01E04")}
    before = {frames[eid][0]: ("train", "Common") for eid in ("S01E01", "S01E02", "S01E03")}
    for frame, (dataset, rarity) in before.items():
        bucket.put(dataset_key(dataset, rarity, frame), JPEG)
    put_sources(bucket, [f for fs in frames.values() for f in fs])

    def rows(eid: str, header: list[str]) -> list[list[str]]:
        return [header] + [
            ["", str(i), f, "Rare", "", "", "good shot", "note"][: len(header)] for i, f in enumerate(frames[eid])
        ]

    two_metadata = HEADER + ["METADATA"]  # columns G and H
    two_jonny = [
        "S3_BASE_URI",
        "ROW_INDEX",
        "FRAME NUMBER",
        "JONNY's RECLASSIFICATION",
        "JONNY\u2019s RECLASSIFICATION",
    ]
    fake_google.add_sheet(_google_id(1), rows("S01E01", two_metadata))
    fake_google.add_sheet(_google_id(2), rows("S01E02", two_jonny))
    fake_google.add_sheet(_google_id(4), rows("S01E04", HEADER))
    csv_body = "\n".join(",".join(r) for r in rows("S01E03", two_metadata)).encode()
    csv_location = put_sheet(bucket, "S01E03", csv_body)
    link = "https://docs.google.com/spreadsheets/d/{}/edit?usp=sharing".format
    put_manifest(
        bucket,
        "S01",
        [
            manifest_entry("S01E01", link(_google_id(1))),
            manifest_entry("S01E02", link(_google_id(2))),
            manifest_entry("S01E03", csv_location),
            manifest_entry("S01E04", link(_google_id(4))),
        ],
    )
    monkeypatch.setenv("GOOGLE_DRIVE_CREDENTIALS_FILE", str(fake_google.key_file(tmp_path)))
    monkeypatch.setenv("TUTTLE_GOOGLE_API_URL", fake_google.url)

    result = run_cli("sync", "--prune-orphans")

    assert result.exit_code == 0, result.output  # a repeated header is a data finding: reported, files kept
    assert "data findings: 3 (3 sheets skipped)" in result.stdout
    out = result.output
    twice = "the header row names column 'METADATA' more than once (columns G 'METADATA' and H 'METADATA')"
    assert f"S01E01: Google sheet 'Tuttle Twins S01E01 test sheet' ({link(_google_id(1))}): {twice}" in out
    jonny = "JONNY's RECLASSIFICATION"
    assert (
        f"S01E02: Google sheet 'Tuttle Twins S01E02 test sheet' ({link(_google_id(2))}): the header row names "
        f"column '{jonny}' more than once (columns D '{jonny}' and E 'JONNY\u2019s RECLASSIFICATION')" in out
    )
    assert f"S01E03: {csv_location}: {twice}" in out
    # the skipped episodes keep their files; the good one syncs
    expected = {**before, **{f: (dataset_keys(bucket)[f][0], "Rare") for f in frames["S01E04"]}}
    assert dataset_keys(bucket) == expected and len(expected) == 6
    labels = bucket.get(ML_PREFIX + "labels.csv").decode()
    assert "['good shot' 'note']" not in labels and "good shot" in labels


# ---- 7: a trailing comma no longer shifts the CSV columns --------------------------------------------------
def test_a_trailing_comma_shifts_nothing_and_extra_text_rejects_only_its_row(bucket: Bucket) -> None:
    eid = "S01E01"
    frames = [frame_number(eid, i) for i in range(3)]
    bucket.put(dataset_key("test", "Common", frames[2]), JPEG)  # where a previous run put frame 2
    put_sources(bucket, frames)
    lines = [
        ",".join(HEADER),
        f",0,{frames[0]},Common,,,[Emily],",  # one more (empty) field than the header: pandas shifted every column
        f",1,{frames[1]},Rare,,,[Ethan]",
        f",2,{frames[2]},Uncommon,,,[Grandpa],Legendary",  # text beyond the header: which column is meant?
    ]
    location = put_sheet(bucket, eid, ("\n".join(lines) + "\n").encode())
    put_manifest(bucket, "S01", [manifest_entry(eid, location)])

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # the row with extra text is rejected: a data finding
    assert "data findings: 1 (1 rejected row)" in result.stdout
    state = dataset_keys(bucket)
    assert {f: r for f, (_, r) in state.items()} == {frames[0]: "Common", frames[1]: "Rare", frames[2]: "Common"}
    assert state[frames[2]] == ("test", "Common")  # the rejected row's frame is held where it was
    assert (
        f"{eid} sheet row 4, column 'H (beyond the header)': 'Legendary' text beyond the header's last column"
        in result.output
    )
    assert f"{eid}: {location}: sheet row 2 has more fields than the header row (7), all empty" in result.output


# ---- 3 and 4: DEST/labels.csv describes every dataset folder under DEST, and only files on disk ----------
def _labels_of(dest: Path) -> pd.DataFrame:
    return pd.read_csv(dest / "labels.csv", dtype=str, keep_default_na=False)


def _files_on_disk(dest: Path) -> set[str]:
    return {p.relative_to(dest).as_posix() for p in dest.rglob("*.jpg")}


@pytest.fixture
def synced(bucket: Bucket) -> Bucket:
    sheets = {"S01E01": season_rows("S01E01", 30)}
    upload_season(bucket, sheets)
    assert run_cli("sync").exit_code == 0
    return bucket


def test_a_second_pull_into_the_same_folder_keeps_the_first_pulls_datasets_in_the_index(
    synced: Bucket, tmp_path: Path
) -> None:
    dest = tmp_path / "box"
    assert run_cli("pull", "--dataset", "train", "--dataset", "validate", "--dest", str(dest)).exit_code == 0
    second = run_cli("pull", "--dataset", "test", "--delete", "--dest", str(dest))
    assert second.exit_code == 0, second.output

    labels = _labels_of(dest)
    assert set(labels["dataset"]) == {"train", "validate", "test"}
    assert {k[len(ML_PREFIX) :] for k in labels["s3_key"]} == _files_on_disk(dest)
    index = pd.read_csv(io.BytesIO(synced.get(ML_PREFIX + "labels.csv")), dtype=str, keep_default_na=False)
    assert labels.sort_values("s3_key").to_dict("records") == index.sort_values("s3_key").to_dict("records")
    assert "labels.csv also lists the files of train, validate already under" in second.output


def test_labels_csv_has_no_row_for_a_download_that_failed(synced: Bucket, tmp_path: Path, monkeypatch) -> None:
    broken = sorted(synced.keys(ML_PREFIX + "train/"))[0]

    def fail_one(params: dict, **_: object) -> None:
        if params["Key"] == broken:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "GetObject")

    def new_session() -> boto3.session.Session:
        session = boto3.session.Session()
        session.events.register("provide-client-params.s3.GetObject", fail_one)
        return session

    monkeypatch.setattr(aws, "new_session", new_session)
    dest = tmp_path / "box"

    result = run_cli("pull", "--dataset", "train", "--dest", str(dest))

    assert result.exit_code == 1
    assert f"download {broken} failed" in result.output
    assert not (dest / broken[len(ML_PREFIX) :]).exists()
    labels = _labels_of(dest)
    assert broken not in set(labels["s3_key"])
    assert {k[len(ML_PREFIX) :] for k in labels["s3_key"]} == _files_on_disk(dest) != set()
