"""A listing of the ML prefix that contradicts the latest dataset version stops the sync (issue 27): the pure
verdict (thresholds, odd keys) and, on moto server through the fault proxy, the final state of the bucket."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import run_cli
from s3_fault_proxy import s3_error
from season import FRAME, HEADER, JONNY, ML_PREFIX, UNSUPERVISED, frame_number, put_sheet, row, sheet_csv, upload_season

from tuttle_prep.core.listing_check import MAX_MISSING, MIN_LISTED_SHARE, ListingVerdict, check_listing
from tuttle_prep.core.plan import KeyLayout
from tuttle_prep.core.run_report import RunReport
from tuttle_prep.core.versions import new_version_id, version_time, versions_prefix

VERSIONS = versions_prefix(ML_PREFIX)
LAYOUT = KeyLayout(ML_PREFIX, "tuttle_twins/", "thumbnails", ("train", "validate", "test"))
RARITIES = ["Common", "Rare", "Uncommon", "Trash", "Legendary"]
E1, E2 = "S01E01", "S01E02"


def keys(n: int, folder: str = "train/Common/", start: int = 0) -> list[str]:
    return [f"{ML_PREFIX}{folder}{frame_number(E1, i)}.jpg" for i in range(start, start + n)]


# ---- the verdict (pure) ----------------------------------------------------------------------------


def test_the_thresholds_are_fewer_than_half_listed_and_more_than_100_missing():
    assert (MIN_LISTED_SHARE, MAX_MISSING) == (0.5, 100)
    folders = [f"{ML_PREFIX}train/Common/"]
    recorded = keys(400)
    # exactly half listed (200 missing): not fewer than half
    half = check_listing("v", recorded, recorded[:200], folders, LAYOUT)
    assert (half.recorded, half.listed, half.missing, half.contradicts) == (400, 200, 200, False)
    below = check_listing("v", recorded, recorded[:199], folders, LAYOUT)
    assert (below.listed, below.too_few, below.contradicts) == (199, True, True)
    # fewer than half listed, exactly 100 missing: not more than 100
    small = keys(150)
    exactly = check_listing("v", small, small[:50], folders, LAYOUT)
    assert (exactly.missing, exactly.contradicts) == (100, False)
    over = check_listing("v", small, small[:49], folders, LAYOUT)
    assert (over.missing, over.contradicts) == (101, True)
    # a small dataset losing most of its files is the delete guard's business, not a listing gone wrong
    assert not check_listing("v", keys(100), [], folders, LAYOUT).contradicts


def test_a_folder_of_the_version_absent_from_the_discovery_listing_contradicts_at_any_count():
    recorded = keys(3) + keys(2, "validate/Rare/", 3)
    listed_folders = [f"{ML_PREFIX}train/Common/"]
    verdict = check_listing("v1", recorded, recorded, listed_folders, LAYOUT)
    assert verdict.listed == verdict.recorded == 5 and not verdict.too_few
    assert verdict.missing_folders == (f"{ML_PREFIX}validate/Rare/",) and verdict.contradicts
    message = verdict.describe("s3://b/ML/", "s3://b/ML/_versions/v1.parquet")
    assert "holds 5 of the 5 dataset objects" in message and f"'{ML_PREFIX}validate/Rare/'" in message


def test_version_keys_that_are_no_dataset_object_of_the_layout_are_not_compared():
    odd = [
        f"{ML_PREFIX}train/Common/",  # a non-empty key ending '/'
        f"{ML_PREFIX}train/Common/{frame_number(E1, 1)}.jpg\n",  # a control character
        f"{ML_PREFIX}old_train/Common/{frame_number(E1, 2)}.jpg",  # a dataset not configured
    ]
    # a non-ASCII digit is no frame number (ASCII [0-9] only): not a dataset object, not compared
    arabic = f"{ML_PREFIX}train/Common/TT_S01_E01_FRM-00-00-0\u0661-01.jpg"
    verdict = check_listing("v", [*odd, arabic, *keys(1)], keys(1), [f"{ML_PREFIX}train/Common/"], LAYOUT)
    assert (verdict.recorded, verdict.listed, verdict.unparsed, verdict.missing_folders) == (1, 1, 4, ())
    both = check_listing("v", [*odd, arabic, *keys(1)], [arabic, *keys(1)], [f"{ML_PREFIX}train/Common/"], LAYOUT)
    assert (both.recorded, both.listed) == (1, 1)
    # a key naming a folder with a newline is escaped when named
    shown = ListingVerdict("v", 1, 0, (f"{ML_PREFIX}train/Co\nmmon/",)).describe("s3://b/", "s3://b/v")
    assert "\n" not in shown and "\\n" in shown


def test_the_outcome_line_says_unchanged_only_when_nothing_was_applied():
    nothing = RunReport(applied=True, version_unchanged="20261201T000000Z-abc")
    assert nothing.outcome_line().endswith("datasets unchanged since version 20261201T000000Z-abc")
    for done in ({"copied": 3}, {"moved": 1}, {"deleted": 2}):
        line = RunReport(applied=True, version_unchanged="20261201T000000Z-abc", **done).outcome_line()
        assert "unchanged" not in line and "matches version 20261201T000000Z-abc" in line, line
    stopped = RunReport(listing_stop="20261201T000000Z-abc")
    assert stopped.outcome_line() == (
        "stopped: the listing contradicts dataset version 20261201T000000Z-abc; nothing was applied"
    )


# ---- the sync on moto server ------------------------------------------------------------------------


def sheets_of(n: int = 10) -> dict[str, list[dict[str, str]]]:
    return {eid: [row(frame_number(eid, i), RARITIES[i % 5]) for i in range(n)] for eid in (E1, E2)}


@pytest.fixture
def synced(bucket, proxied):
    """Two episodes of 10 frames synced once (one version); the proxy's record reset."""
    sheets = sheets_of()
    upload_season(bucket, sheets)
    first = run_cli("sync")
    assert first.exit_code == 0, first.output
    proxied.reset()
    return sheets


def hide_dataset_folders(proxied) -> None:
    """A store whose '/'-delimited listing of the ML prefix names only `_versions/` (what `s3rver` did)."""
    proxied.hide_prefixes = lambda prefix: prefix.startswith(ML_PREFIX) and prefix != VERSIONS


def writes(proxied) -> list[str]:
    return [
        f"{r.operation} {r.key}"
        for r in proxied.requests
        if r.operation in ("CopyObject", "PutObject", "DeleteObject", "DeleteObjects", "UploadPartCopy")
        and not r.key.startswith("tuttle_twins/locks/")
    ]


def only_version(bucket) -> str:
    [version] = sorted(k for k in bucket.keys(VERSIONS) if k.endswith(".parquet"))
    return version[len(VERSIONS) : -len(".parquet")]


def test_a_listing_without_the_dataset_folders_stops_the_run_and_changes_nothing(bucket, synced, proxied):
    version = only_version(bucket)
    before = bucket.etags()
    hide_dataset_folders(proxied)
    result = run_cli("sync")
    assert result.exit_code == 1, result.output
    assert writes(proxied) == [] and bucket.etags() == before
    assert (
        f"the listing of s3://{bucket.name}/{ML_PREFIX} holds 0 of the 20 dataset objects the latest dataset "
        f"version s3://{bucket.name}/{VERSIONS}{version}.parquet records (20 missing)"
    ) in result.stderr
    assert f"'{ML_PREFIX}train/Common/'" in result.stderr and "--force applies anyway" in result.stderr
    assert result.output.splitlines()[-1] == (
        f"stopped: the listing contradicts dataset version {version}; nothing was applied"
    )
    # the version was read once, before planning was over
    assert [r.key for r in proxied.of("GetObject") if r.key.startswith(VERSIONS)] == [f"{VERSIONS}{version}.parquet"]


def test_a_run_that_stops_does_not_write_the_sheet_header_memory_either(bucket, proxied):
    without_jonny = [c for c in HEADER if c != JONNY]
    sheets = {
        eid: [{FRAME: frame_number(eid, i), UNSUPERVISED: RARITIES[i % 5]} for i in range(10)] for eid in (E1, E2)
    }
    upload_season(bucket, sheets)
    for eid, rows in sheets.items():
        put_sheet(bucket, eid, sheet_csv(rows, without_jonny))
    assert run_cli("sync").exit_code == 0
    for eid, rows in sheets.items():  # the sheets gain a rarity column: the header memory would change
        put_sheet(bucket, eid, sheet_csv(rows))
    before = bucket.etags(ML_PREFIX)
    proxied.reset()
    hide_dataset_folders(proxied)
    result = run_cli("sync")
    assert result.exit_code == 1 and "holds 0 of the 20 dataset objects" in result.stderr, result.output
    assert writes(proxied) == []
    assert bucket.etags(ML_PREFIX) == before


def test_one_dataset_folder_hidden_stops_the_run(bucket, synced, proxied):
    before = bucket.etags()
    proxied.hide_prefixes = lambda prefix: prefix == f"{ML_PREFIX}train/Common/"
    result = run_cli("sync")
    assert result.exit_code == 1, result.output
    assert "1 dataset folders the version has are absent from the listing" in result.stderr
    assert writes(proxied) == [] and bucket.etags() == before


def test_a_dry_run_prints_the_same_verdict(bucket, synced, proxied):
    version = only_version(bucket)
    before = bucket.etags()
    hide_dataset_folders(proxied)
    result = run_cli("sync", "--dry-run")
    assert result.exit_code == 1, result.output
    assert "holds 0 of the 20 dataset objects" in result.stderr and "a real run stops before applying" in result.stderr
    assert result.output.splitlines()[-1] == (
        f"dry run: would stop: the listing contradicts dataset version {version}; nothing was changed"
    )
    assert writes(proxied) == [] and bucket.etags() == before


def test_force_applies_a_listing_that_contradicts_the_version(bucket, synced, proxied):
    version = only_version(bucket)
    datasets = {k for k in bucket.keys(ML_PREFIX) if k.endswith(".jpg")}
    hide_dataset_folders(proxied)
    result = run_cli("sync", "--force")
    assert result.exit_code == 0, result.output
    assert "applied anyway (--force)" in result.stderr
    copied = {r.key for r in proxied.of("CopyObject")}
    assert copied == datasets  # the whole catalogue copied again, onto the same keys
    assert {k for k in bucket.keys(ML_PREFIX) if k.endswith(".jpg")} == datasets and only_version(bucket) == version
    last = result.output.splitlines()[-1]
    assert last.startswith("done: copied 20,") and "unchanged" not in last
    assert f"the datasets' outcome matches version {version}, so no version was written" in last


def test_a_first_run_is_not_checked(bucket, proxied):
    upload_season(bucket, sheets_of())
    hide_dataset_folders(proxied)
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert len(proxied.of("CopyObject")) == 20 and "contradicts" not in result.output + result.stderr
    assert len({k for k in bucket.keys(ML_PREFIX) if k.endswith(".jpg")}) == 20 and only_version(bucket)


def test_an_unreadable_latest_version_falls_back_to_the_one_before(bucket, synced, proxied):
    version = only_version(bucket)
    garbage_id = new_version_id(version_time(version) + timedelta(days=1), "garbage")
    bucket.put(f"{VERSIONS}{garbage_id}.parquet", b"not parquet")
    before = bucket.etags()
    hide_dataset_folders(proxied)
    result = run_cli("sync")
    assert result.exit_code == 1, result.output
    assert f"{garbage_id}.parquet: not a Parquet file" in result.stderr
    assert f"version s3://{bucket.name}/{VERSIONS}{version}.parquet records" in result.stderr
    assert writes(proxied) == [] and bucket.etags() == before


def test_no_readable_version_means_no_check_and_a_warning(bucket, synced, proxied):
    version = only_version(bucket)
    bucket.put(f"{VERSIONS}{version}.parquet", b"not parquet")  # the only one, overwritten by hand
    hide_dataset_folders(proxied)
    result = run_cli("sync")
    assert "no readable dataset version in" in result.stderr and "contradicts" not in result.output
    assert len(proxied.of("CopyObject")) == 20


def test_a_nightly_run_with_a_change_reads_the_latest_version_once(bucket, synced, proxied):
    version = only_version(bucket)
    sheets = synced
    sheets[E1][0] = row(frame_number(E1, 0), "Legendary")  # was Common
    put_sheet(bucket, E1, sheets[E1])
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert "dataset version" in result.output and "written" in result.output.splitlines()[-1]
    reads = [r.key for r in proxied.of("GetObject") if r.key.startswith(VERSIONS)]
    assert reads == [f"{VERSIONS}{version}.parquet"]
    assert len([k for k in bucket.keys(VERSIONS) if k.endswith(".parquet")]) == 2


def test_a_run_whose_version_write_failed_is_not_stopped_by_the_version_it_left_behind(bucket, proxied):
    """A run moves 240 frames and cannot write its version ("the next run writes it"): the next run's listing
    holds none of the stale version's keys, but it is what the labels index of that run records, so it is no
    listing fault: the run goes on and writes the version; a listing that drops the folders still stops."""
    upload_season(bucket, {eid: [row(frame_number(eid, i), "Common") for i in range(120)] for eid in (E1, E2)})
    assert run_cli("sync").exit_code == 0
    stale = only_version(bucket)
    upload_season(bucket, {eid: [row(frame_number(eid, i), "Rare") for i in range(120)] for eid in (E1, E2)})

    def no_version_write(request):
        if request.operation == "PutObject" and request.key.startswith(VERSIONS):
            return s3_error(500, "InternalError")
        return None

    proxied.fail = no_version_write
    failed = run_cli("sync")
    assert failed.exit_code == 1 and "the next run writes it" in failed.stderr, failed.output
    assert only_version(bucket) == stale
    proxied.fail = None
    placed = {k for k in bucket.keys(ML_PREFIX) if k.endswith(".jpg")}
    assert len(placed) == 240 and all("/Rare/" in k for k in placed)

    result = run_cli("sync")
    assert result.exit_code == 0, result.output + result.stderr
    assert "agrees with the labels index" in result.stderr and "stopped before applying" not in result.stderr
    assert "written" in result.output.splitlines()[-1]
    assert len([k for k in bucket.keys(VERSIONS) if k.endswith(".parquet")]) == 2
    assert {k for k in bucket.keys(ML_PREFIX) if k.endswith(".jpg")} == placed

    proxied.reset()
    hide_dataset_folders(proxied)
    stopped = run_cli("sync")
    assert stopped.exit_code == 1 and writes(proxied) == [], stopped.output
