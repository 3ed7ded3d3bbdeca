"""`sync` end to end: the real CLI against moto server on 127.0.0.1, asserting the bucket's final state."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest
from conftest import run_cli
from s3_fault_proxy import Answer, Request, S3FaultProxy, delete_result, s3_error
from season import (
    FRAME,
    JONNY,
    MANIFESTS_PREFIX,
    ML_PREFIX,
    SUPERVISED,
    UNSUPERVISED,
    dataset_key,
    dataset_keys,
    frame_number,
    frames_of,
    manifest_entry,
    put_manifest,
    put_sheet,
    put_sources,
    row,
    sheet_key,
    sheet_rows,
    source_key,
    upload_season,
)

from tuttle_prep.core.delete_guard import DeleteLimit, delete_guard
from tuttle_prep.core.plan import wanted_frames
from tuttle_prep.settings import DEFAULT_SEED, Settings

SHARES = {"train": 0.7, "validate": 0.2, "test": 0.1}
WRITE_OPERATIONS = {"PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "CompleteMultipartUpload"}
LOCK_KEY = Settings().lock_key
E1, E2, E3 = "S01E01", "S01E02", "S01E03"
# a mix of rarity spellings and blanks, so a season has classified and unclassified frames
PATTERN = ["Common", "Rare", None, "junk", "Uncommon", "Legendary", "Common", None, " trash "]
CANONICAL = {"junk": "Trash", " trash ": "Trash"}


# ---- recording (and failing) the job's S3 requests -----------------------------------------------------


@dataclass
class S3Calls:
    """Every S3 request the job made, seen by the fault proxy: (operation, params as boto3 would name them).

    `fail` makes chosen requests fail: (operation, params) -> None to let the request through, or (status,
    parsed response) — `{"Error": {"Code": ..., "Message": ...}}`, or DeleteObjects' `{"Errors": [...]}` — to
    answer it instead of S3.
    """

    proxy: S3FaultProxy
    fail: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]] | None] | None = None

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r.operation, r.params) for r in list(self.proxy.requests)]

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [r.params for r in self.proxy.of(operation)]

    def writes(self) -> list[tuple[str, dict[str, Any]]]:
        """Requests that change the bucket (a run lock, if one is configured, does not count)."""
        return [(op, p) for op, p in self.calls if op in WRITE_OPERATIONS and p.get("Key") != LOCK_KEY]

    def clear(self) -> None:
        self.proxy.reset()
        self.proxy.fail = self._answer

    def _answer(self, request: Request) -> Answer | None:
        answer = self.fail(request.operation, request.params) if self.fail else None
        if answer is None:
            return None
        status, parsed = answer
        if "Error" in parsed:
            return s3_error(status, parsed["Error"]["Code"], parsed["Error"].get("Message", ""))
        errors = {e["Key"]: (e["Code"], e.get("Message", "")) for e in parsed.get("Errors", ())}
        return delete_result(errors)


@pytest.fixture(autouse=True)
def s3_calls(proxied: S3FaultProxy, monkeypatch: pytest.MonkeyPatch) -> S3Calls:
    """Every S3 request of the CLI through the fault proxy, recorded (and failed where `fail` says)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # one retry: a failed request costs no back-off of seconds
    recorded = S3Calls(proxied)
    recorded.clear()
    return recorded


# ---- building expectations ------------------------------------------------------------------------------


def expected(rarities: dict[str, str], shares: dict[str, float] = SHARES) -> dict[str, tuple[str, str]]:
    """{frame: rarity} of every classified frame of some episodes -> the dataset objects `sync` must leave
    for them: {frame: (dataset, rarity)}, through the split's public entry point (with the default
    stratification a frame's dataset depends on the other frames of its episode and rarity)."""
    frames = pd.DataFrame(
        [(f[3:6] + f[7:10], f, r) for f, r in rarities.items()], columns=["episode_id", "frame", "rarity"]
    )
    wanted = wanted_frames(frames, shares, DEFAULT_SEED, stratify=Settings().split_stratify)
    return {w.frame: (w.dataset, w.rarity) for w in wanted.itertuples()}


def plan_counts(
    before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]], episode_id: str
) -> dict[str, int]:
    """The table row `sync` prints for an episode going from dataset state `before` to `after`."""
    b = {f: v for f, v in before.items() if f[3:6] + f[7:10] == episode_id}
    a = {f: v for f, v in after.items() if f[3:6] + f[7:10] == episode_id}
    return {
        "keep": sum(b.get(f) == v for f, v in a.items()),
        "copy": sum(f not in b for f in a),
        "move": sum(f in b and b[f] != v for f, v in a.items()),
        "delete": sum(f not in a for f in b),
        "missing": 0,
        "rejected": 0,
    }


def pattern_rows(episode_id: str, n: int, start: int = 0) -> list[dict[str, str]]:
    return sheet_rows(episode_id, [PATTERN[(start + i) % len(PATTERN)] for i in range(n)], start=start)


def classified(rows: list[dict[str, str]]) -> dict[str, str]:
    """The rarity each row's frame should get (rows built by `pattern_rows`/`row`, most trusted first)."""
    out = {}
    for r in rows:
        value = next((r[c] for c in (JONNY, SUPERVISED, UNSUPERVISED) if r.get(c, "").strip()), "")
        if value:
            out[r[FRAME]] = CANONICAL.get(value, value.strip().capitalize())
    return out


def put_state(bucket, state: dict[str, tuple[str, str]]) -> None:
    """Put dataset objects directly, as a previous sync would have left them."""
    for frame, (dataset, rarity) in state.items():
        bucket.put(dataset_key(dataset, rarity, frame), b"synced " + frame.encode())


@pytest.fixture
def season(bucket) -> dict[str, list[dict[str, str]]]:
    """Two episodes of 12 frames each (9 classified), already in sync; returns the sheets as uploaded.

    The datasets are put directly (what the first-run test shows `sync` makes), to keep the tests fast.
    """
    sheets = {E1: pattern_rows(E1, 12), E2: pattern_rows(E2, 12)}
    upload_season(bucket, sheets)
    put_state(bucket, expected(all_classified(sheets)))
    return sheets


def copy_source(params: dict[str, Any]) -> str:
    """The source key of a recorded CopyObject (botocore may already have encoded it as "bucket/key")."""
    source = params["CopySource"]
    if isinstance(source, dict):
        return source["Key"]
    return unquote(source.split("?", 1)[0]).split("/", 1)[1]


def all_classified(sheets: dict[str, list[dict[str, str]]]) -> dict[str, str]:
    return {f: r for rows in sheets.values() for f, r in classified(rows).items()}


def table_row(output: str, episode_id: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(episode_id))
    return line.split()


def counts(output: str, episode_id: str) -> dict[str, int]:
    """The episode's row of the printed table: keep, copy, move, delete, missing, rejected."""
    cells = table_row(output, episode_id)[1:7]
    return dict(zip(["keep", "copy", "move", "delete", "missing", "rejected"], map(int, cells), strict=True))


# ---- runs that succeed ----------------------------------------------------------------------------------


def test_first_run_copies_every_classified_frame_and_an_unchanged_rerun_writes_nothing(bucket, s3_calls):
    sheets = {E1: pattern_rows(E1, 12), E2: pattern_rows(E2, 12)}
    upload_season(bucket, sheets)
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    want = expected(all_classified(sheets))
    assert len(want) == 18 and {r for _, r in want.values()} == {"Common", "Rare", "Trash", "Uncommon", "Legendary"}
    assert dataset_keys(bucket) == want
    some_frame = frame_number(E2, 0)
    assert bucket.get(dataset_key(*want[some_frame], some_frame)) == bucket.get(source_key(some_frame))
    assert counts(result.stdout, E1) == {"keep": 0, "copy": 9, "move": 0, "delete": 0, "missing": 0, "rejected": 0}
    assert "done: copied 18, moved 0, deleted 0; failed 0" in result.stdout
    # server-side copies from the sources, no HEAD before each copy, every prefix listed once
    assert {copy_source(p) for p in s3_calls.of("CopyObject")} == {source_key(f) for f in want}
    assert not [p for p in s3_calls.of("HeadObject") if p["Key"].endswith(".jpg")]
    assert not [p for p in s3_calls.of("PutObject") if p["Key"].endswith(".jpg")]
    # (the start-up check lists one key of the manifests folder: MaxKeys=1)
    listed = [(p["Prefix"], p.get("ContinuationToken"), p.get("MaxKeys")) for p in s3_calls.of("ListObjectsV2")]
    assert len(listed) == len(set(listed)), listed

    s3_calls.clear()
    before = bucket.etags()
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert s3_calls.calls, "the hook saw no requests at all"
    assert s3_calls.writes() == []
    assert bucket.etags() == before
    assert counts(result.stdout, E1)["keep"] == 9 and "done: copied 0, moved 0, deleted 0" in result.stdout


def test_sources_are_listed_only_for_episodes_with_frames_to_place(bucket, s3_calls):
    sheets = {E1: pattern_rows(E1, 12), E2: pattern_rows(E2, 12)}
    upload_season(bucket, sheets)
    assert run_cli("sync").exit_code == 0

    def source_listings() -> set[str]:
        return {p["Prefix"] for p in s3_calls.of("ListObjectsV2") if not p["Prefix"].startswith(ML_PREFIX)}

    s3_calls.clear()
    before = expected(all_classified(sheets))
    sheets[E1][0][JONNY] = "Legendary"  # a reclassification moves dataset objects: no source needed
    put_sheet(bucket, E1, sheets[E1])
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert counts(result.stdout, E1) == plan_counts(before, expected(all_classified(sheets)), E1)
    assert counts(result.stdout, E1)["move"] >= 1 and counts(result.stdout, E1)["copy"] == 0
    assert source_listings() == {MANIFESTS_PREFIX}

    s3_calls.clear()
    new = frame_number(E2, 50)
    sheets[E2].append(row(new, "Rare"))
    put_sources(bucket, [new])
    put_sheet(bucket, E2, sheets[E2])
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert source_listings() == {MANIFESTS_PREFIX, source_key(new).rsplit("/", 1)[0] + "/"}
    assert dataset_keys(bucket) == expected(all_classified(sheets))


def test_reclassified_rows_move_between_rarity_folders(bucket, season, s3_calls):
    sheet = season[E1]
    before = expected(all_classified(season))
    to_legendary, to_uncommon = sheet[0][FRAME], sheet[1][FRAME]
    sheet[0][JONNY] = "Legendary"  # was Common
    sheet[1][SUPERVISED] = "uncommon"  # was Rare
    put_sheet(bucket, E1, sheet)
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    state = dataset_keys(bucket)
    after = expected(all_classified(season))
    assert state == after
    assert state[to_legendary] == (after[to_legendary][0], "Legendary")
    assert state[to_uncommon] == (after[to_uncommon][0], "Uncommon")
    # a move copies the dataset object (not the source frame), then deletes it; besides the two reclassified
    # frames, at most one other frame per boundary between datasets moves for each rarity left or joined
    moved = {f for f in after if before[f] != after[f]}
    assert {to_legendary, to_uncommon} <= moved and len(moved - {to_legendary, to_uncommon}) <= 2 * 2 * 2
    assert {copy_source(p) for p in s3_calls.of("CopyObject")} == {dataset_key(*before[f], f) for f in moved}
    assert counts(result.stdout, E1) == plan_counts(before, after, E1)
    assert counts(result.stdout, E1)["keep"] == 9 - len(moved)


def test_removed_cleared_and_added_rows(bucket, season):
    sheet = season[E2]
    removed = sheet.pop(0)[FRAME]
    cleared = sheet[0][FRAME]
    sheet[0][UNSUPERVISED] = ""
    added = pattern_rows(E2, 3, start=12)
    put_sources(bucket, frames_of(added))
    season[E2] = sheet + added
    put_sheet(bucket, E2, season[E2])
    before = dataset_keys(bucket)
    assert removed in before and cleared in before
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    after = dataset_keys(bucket)
    assert after == expected(all_classified(season))
    assert set(before) - set(after) == {removed, cleared}
    assert set(after) - set(before) == set(classified(added))
    assert counts(result.stdout, E2)["copy"] == len(classified(added)) and counts(result.stdout, E2)["delete"] == 2


def test_a_new_episode_in_the_manifest_is_synced_and_others_are_untouched(bucket, season, s3_calls):
    before = bucket.etags(ML_PREFIX)
    season[E3] = pattern_rows(E3, 5)
    upload_season(bucket, season)
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == expected(all_classified(season))
    assert {k: v for k, v in bucket.etags(ML_PREFIX).items() if k in before} == before
    assert {p["Key"].rsplit("/", 1)[-1][:10] for p in s3_calls.of("CopyObject")} == {"TT_S01_E03"}


def test_a_ratio_change_moves_only_the_frames_that_cross_a_boundary(bucket, monkeypatch, s3_calls):
    sheets = {E1: sheet_rows(E1, ["Common"] * 40)}
    upload_season(bucket, sheets)
    before = expected(classified(sheets[E1]))
    put_state(bucket, before)
    new_shares = {"train": 0.4, "validate": 0.5, "test": 0.1}
    monkeypatch.setenv("TUTTLE_SPLIT", "train=0.4,validate=0.5,test=0.1")
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    after = dataset_keys(bucket)
    assert after == expected(classified(sheets[E1]), new_shares)
    changed = {f for f in after if after[f] != before[f]}
    assert changed and {(before[f][0], after[f][0]) for f in changed} == {("train", "validate")}
    assert len(s3_calls.of("CopyObject")) == len(changed)


def test_group_seconds_keeps_each_window_in_one_dataset(bucket, monkeypatch):
    # two frames a second for 24 seconds; 4-second windows
    rows = [row(frame_number(E1, i * 12), "Common") for i in range(48)]
    upload_season(bucket, {E1: rows})
    monkeypatch.setenv("TUTTLE_SPLIT_GROUP_SECONDS", "4")
    monkeypatch.setenv("TUTTLE_SPLIT_SEED", "grouped-test-seed")
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    state = dataset_keys(bucket)
    assert set(state) == set(frames_of(rows))
    windows: dict[int, set[str]] = {}
    for frame, (dataset, _) in state.items():
        windows.setdefault(int(frame[-5:-3]) // 4, set()).add(dataset)
    assert len(windows) == 6 and all(len(datasets) == 1 for datasets in windows.values())
    assert len(set().union(*windows.values())) > 1


def test_the_summary_names_the_split_mode(bucket, season, monkeypatch):
    monkeypatch.setenv("TUTTLE_SPLIT_STRATIFY", "none")
    monkeypatch.setenv("TUTTLE_SPLIT_GROUP_SECONDS", "3")
    result = run_cli("sync", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "(sha256 of TUTTLE_SPLIT_SEED); stratify=none, group seconds=3" in result.stdout


def test_dry_run_leaves_the_bucket_untouched(bucket, season, s3_calls):
    state = expected(all_classified(season))
    season[E1][0][JONNY] = "Rare"
    season[E1].pop(1)
    season[E1].append(row(frame_number(E1, 30), "Trash"))
    put_sources(bucket, [frame_number(E1, 30)])
    put_sheet(bucket, E1, season[E1])
    before = bucket.etags()
    result = run_cli("sync", "--dry-run", "--workers", "48")
    assert result.exit_code == 0, result.output
    assert s3_calls.writes() == [] and [op for op, _ in s3_calls.calls if op == "PutObject"] == []
    assert bucket.etags() == before
    would = plan_counts(state, expected(all_classified(season)), E1)
    assert (would["copy"], would["delete"]) == (1, 1) and would["move"] >= 1
    assert f"dry run: would copy 1, move {would['move']}, delete 1; nothing was changed" in result.stdout
    assert s3_calls.of("ListObjectsV2"), "the proxy saw no listing"


def test_plan_out_writes_every_decision(bucket, season, tmp_path):
    sheet = season[E1]
    before = expected(all_classified(season))
    moved, deleted = sheet[0][FRAME], sheet[1][FRAME]
    sheet[0][JONNY] = "Legendary"
    sheet[1][UNSUPERVISED] = ""
    added, missing = frame_number(E1, 30), frame_number(E1, 31)
    sheet += [row(added, "Rare"), row(missing, "Trash")]
    put_sources(bucket, [added])
    put_sheet(bucket, E1, sheet)
    after = expected(all_classified(season))  # the missing frame is wanted too: it counts in its stratum
    out = tmp_path / "plan.csv"
    result = run_cli("sync", "--dry-run", "--episode", E1, "--plan-out", str(out))
    assert result.exit_code == 0, result.output  # the missing source is a data finding: reported, exit 0
    assert f"missing source frame s3://{bucket.name}/{source_key(missing)}" in result.stderr
    assert "data findings: 1 (1 missing source frame)" in result.stdout
    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["action", "episode_id", "frame", "src_key", "dst_key"]
        rows = list(reader)
    by_frame = {r["frame"]: r for r in rows}
    assert len(rows) == len(by_frame) == 9 + 2
    assert {r["episode_id"] for r in rows} == {E1}
    assert by_frame[moved] == {
        "action": "move",
        "episode_id": E1,
        "frame": moved,
        "src_key": dataset_key(before[moved][0], "Common", moved),
        "dst_key": dataset_key(after[moved][0], "Legendary", moved),
    }
    assert by_frame[deleted]["action"] == "delete" and by_frame[deleted]["dst_key"] == ""
    assert by_frame[deleted]["src_key"] == dataset_key(before[deleted][0], "Rare", deleted)
    assert (by_frame[added]["action"], by_frame[added]["src_key"]) == ("copy", source_key(added))
    assert by_frame[added]["dst_key"] == dataset_key(after[added][0], "Rare", added)
    assert (by_frame[missing]["action"], by_frame[missing]["src_key"]) == ("missing", source_key(missing))
    assert by_frame[missing]["dst_key"] == dataset_key(*after[missing], missing)
    # every other frame: kept where it is, or moved by the stratified split (within its rarity)
    for frame in {f for f in set(before) & set(after) if f.startswith("TT_S01_E01")} - {moved, deleted}:
        r = by_frame[frame]
        if before[frame] == after[frame]:
            assert r["action"] == "keep" and r["src_key"] == r["dst_key"] == dataset_key(*after[frame], frame)
        else:
            assert r["action"] == "move" and r["dst_key"] == dataset_key(*after[frame], frame)
    assert sum(r["action"] == "keep" for r in rows) == plan_counts(before, after, E1)["keep"]
    assert sum(r["action"] == "move" for r in rows) == plan_counts(before, after, E1)["move"]


# ---- rejections and skipped episodes --------------------------------------------------------------------


def test_each_rejection_rule_is_reported_with_row_column_and_value(bucket):
    good = sheet_rows(E1, ["Common", "Rare", "Uncommon"])
    dup, conflict = frame_number(E1, 10), frame_number(E1, 11)
    bad_rows = [
        row("TT_S01_E01_FRM-00-00-30", "Rare"),  # sheet row 5: malformed frame number
        row(frame_number(E2, 40), "Rare"),  # 6: a frame of another episode
        row(frame_number(E1, 40), "Common", "Rare", "Legendery"),  # 7: bad JONNY's, no fallback to SUPERVISED
        row(frame_number(E1, 41), "Common", "Very Rare"),  # 8: bad SUPERVISED
        row(dup, "Trash"),  # 9 and 10: identical duplicates collapse
        row(dup, " trash"),
        row(conflict, "Common"),  # 11 and 12: conflicting duplicates, both rejected
        row(conflict, "", "Rare"),
    ]
    rows = good + bad_rows
    upload_season(bucket, {E1: rows})
    put_sources(bucket, [frame_number(E1, 40), frame_number(E1, 41), frame_number(E2, 40)])
    result = run_cli("sync")
    assert result.exit_code == 0, result.output  # rejected rows are data findings: reported, exit 0
    assert "job failures: 0" in result.stdout and "data findings: 6 (6 rejected rows)" in result.stdout
    assert dataset_keys(bucket) == expected({**classified(good), dup: "Trash"})
    for line in [
        "S01E01 sheet row 5, column 'FRAME NUMBER': 'TT_S01_E01_FRM-00-00-30' not a frame number",
        f"S01E01 sheet row 6, column 'FRAME NUMBER': '{frame_number(E2, 40)}' frame of another episode",
        "S01E01 sheet row 7, column \"JONNY's RECLASSIFICATION\": 'Legendery' not a rarity",
        "S01E01 sheet row 8, column 'SUPERVISED CLASSIFICATION': 'Very Rare' not a rarity",
        f"S01E01 sheet row 11, column 'FRAME NUMBER': '{conflict}' frame listed more than once",
        f"S01E01 sheet row 12, column 'FRAME NUMBER': '{conflict}' frame listed more than once",
    ]:
        assert line in result.stderr
    assert counts(result.stdout, E1)["rejected"] == 6


def test_an_episode_with_no_classified_frames_is_skipped_unless_allow_empty(bucket, season):
    before = dataset_keys(bucket)
    put_sheet(bucket, E1, [{**r, UNSUPERVISED: ""} for r in season[E1]])
    result = run_cli("sync")
    assert result.exit_code == 0, result.output  # a data finding: reported, the episode's files kept
    assert "S01E01: the sheet has no classified frames; skipped" in result.stderr
    assert "skipped (data): no classified frames" in " ".join(table_row(result.stdout, E1))
    assert "data findings: 1 (1 sheet skipped)" in result.stdout
    assert dataset_keys(bucket) == before
    result = run_cli("sync", "--allow-empty")
    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == expected(classified(season[E2]))


def test_an_unreadable_sheet_skips_its_episode(bucket, season):
    more = {"S01E03": pattern_rows("S01E03", 3), "S01E04": pattern_rows("S01E04", 3)}
    upload_season(bucket, {**season, **more})
    put_state(bucket, expected(all_classified(more)))
    before = dataset_keys(bucket)
    # every episode changes in its sheet; only E02's sheet can be read
    for sheet in [*season.values(), *more.values()]:
        sheet[0][JONNY] = "Legendary"
    put_sheet(bucket, E2, season[E2])
    put_sheet(bucket, E1, b"ROW_INDEX,UNSUPERVISED CLASSIFICATION\n0,Common\n")
    bucket.client.delete_object(Bucket=bucket.name, Key=sheet_key("S01E03"))
    put_sheet(bucket, "S01E04", b"\xff\xfe\x00garbage")
    result = run_cli("sync")
    assert result.exit_code == 1  # two sheets cannot be read: job failures
    assert "S01E01: S01E01 sheet: no 'FRAME NUMBER' column" in result.stderr
    assert f"S01E03: s3://{bucket.name}/{sheet_key('S01E03')}: cannot read" in result.stderr
    assert "S01E04: " in result.stderr and "not UTF-8" in result.stderr
    after = dataset_keys(bucket)
    assert {f: v for f, v in after.items() if not f.startswith("TT_S01_E02")} == {
        f: v for f, v in before.items() if not f.startswith("TT_S01_E02")
    }
    assert after[season[E2][0][FRAME]][1] == "Legendary"
    # a sheet without FRAME NUMBER is a data finding; one that cannot be read is a job failure
    assert "skipped (data): sheet not usable" in " ".join(table_row(result.stdout, E1))
    for episode_id in ("S01E03", "S01E04"):
        assert "skipped (job failure): sheet not read" in " ".join(table_row(result.stdout, episode_id))
    assert "job failures: 2" in result.stdout and "data findings: 1 (1 sheet skipped)" in result.stdout


def test_missing_source_frames_are_reported_and_the_rest_copied(bucket):
    rows = sheet_rows(E1, ["Common", "Rare", "Trash"])
    upload_season(bucket, {E1: rows}, sources=False)
    put_sources(bucket, [rows[0][FRAME], rows[2][FRAME]])
    result = run_cli("sync")
    assert result.exit_code == 0, result.output  # a data finding: reported, the rest copied
    assert dataset_keys(bucket) == expected({rows[0][FRAME]: "Common", rows[2][FRAME]: "Trash"})
    assert f"missing source frame s3://{bucket.name}/{source_key(rows[1][FRAME])}" in result.stderr
    assert counts(result.stdout, E1)["missing"] == 1


# ---- the delete guard -----------------------------------------------------------------------------------


def synced_episode(bucket, n: int, keep: int) -> list[dict[str, str]]:
    """An episode with `n` frames in the datasets whose sheet now classifies only the first `keep`."""
    rows = sheet_rows(E1, ["Common"] * n)
    put_state(bucket, expected(classified(rows)))
    for r in rows[keep:]:
        r[UNSUPERVISED] = ""
    upload_season(bucket, {E1: rows}, sources=False)
    return rows


def test_default_guard_refuses_more_than_100_deletes_above_10_percent(bucket):
    rows = synced_episode(bucket, n=120, keep=19)
    # a new classified row is still copied while the deletes are refused
    new = frame_number(E1, 200)
    rows.append(row(new, "Rare"))
    put_sources(bucket, [new])
    put_sheet(bucket, E1, rows)
    result = run_cli("sync")
    assert result.exit_code == 1
    assert "refusing 101 deletes of the 120 dataset files of the planned episodes" in result.stderr
    assert "101 deletes held back" in result.stdout
    assert len(dataset_keys(bucket)) == 121 and new in dataset_keys(bucket)
    # one more row back: 100 deletes are within the default rule
    rows[19][UNSUPERVISED] = "Common"
    put_sheet(bucket, E1, rows)
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == expected(classified(rows))


def test_max_delete_as_a_count_or_a_percentage_and_force(bucket):
    rows = synced_episode(bucket, n=10, keep=7)
    for limit in ("2", "20%"):
        result = run_cli("sync", "--max-delete", limit)
        assert result.exit_code == 1
        message = f"refusing 3 deletes of the 10 dataset files of the planned episodes (more than --max-delete {limit})"
        assert message in result.stderr
        assert len(dataset_keys(bucket)) == 10
    result = run_cli("sync", "--max-delete", "2", "--force")
    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == expected(classified(rows))


def test_a_dry_run_tells_that_the_real_run_would_refuse_the_deletes(bucket):
    rows = synced_episode(bucket, n=10, keep=7)
    before = dataset_keys(bucket)
    moves = plan_counts(before, expected(classified(rows)), E1)["move"]
    result = run_cli("sync", "--dry-run", "--max-delete", "2")
    assert result.exit_code == 1
    assert "refusing 3 deletes of the 10 dataset files" in result.stderr
    assert f"dry run: would copy 0, move {moves}, refuse the deletes; nothing was changed" in result.stdout
    assert dataset_keys(bucket) == before
    result = run_cli("sync", "--dry-run", "--max-delete", "2", "--force")
    assert result.exit_code == 0, result.output
    assert f"would copy 0, move {moves}, delete 3" in result.stdout


@pytest.mark.parametrize(
    ("deletes", "existing", "limit", "refused"),
    [
        (100, 100, None, False),  # the default needs more than 100 ...
        (101, 1000, None, True),
        (101, 1010, None, False),  # ... and more than 10 %
        (3, 10, "3", False),
        (4, 10, "3", True),
        (3, 10, "30%", False),
        (4, 10, "30%", True),
        (1, 10, "0", True),
        (0, 10, "0", False),
    ],
)
def test_delete_guard_boundaries(deletes, existing, limit, refused):
    message = delete_guard(deletes, existing, DeleteLimit.parse(limit))
    assert (message is not None) == refused
    if refused:
        assert f"refusing {deletes:,} deletes of the {existing:,}" in message


@pytest.mark.parametrize("limit", ["lots", "-1", "150%", "10 %%"])
def test_a_malformed_max_delete_is_a_usage_error(bucket, limit):
    result = run_cli("sync", "--max-delete", limit)
    assert result.exit_code == 2
    assert "--max-delete" in result.stderr and "Traceback" not in result.output


# ---- orphans and keys that are not ours -----------------------------------------------------------------


def test_orphans_are_left_alone_unless_pruned(bucket, season):
    orphan = dataset_key("train", "Rare", "TT_S09_E01_FRM-00-00-00-00")
    bucket.put(orphan)
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert orphan in bucket.keys(ML_PREFIX)
    assert "1 dataset files of episodes in no manifest (S09E01)" in result.stderr
    assert "data findings: 1 (1 episode with orphan files)" in result.stdout  # for the digest too
    result = run_cli("sync", "--prune-orphans")
    assert result.exit_code == 0, result.output
    assert "data findings: 0" in result.stdout  # deleted as asked: no longer a finding
    assert orphan not in bucket.keys(ML_PREFIX)
    assert dataset_keys(bucket) == expected(all_classified(season))


def test_prune_orphans_is_ignored_when_a_manifest_is_broken(bucket, season):
    orphan = dataset_key("test", "Common", "TT_S09_E01_FRM-00-00-00-00")
    bucket.put(orphan)
    put_manifest(bucket, "S02", b"[{not json")
    result = run_cli("sync", "--prune-orphans")
    assert result.exit_code == 1
    assert orphan in bucket.keys(ML_PREFIX)
    assert "S02-episodes.json: not valid JSON" in result.stderr
    assert "--prune-orphans ignored" in result.stderr


def test_unexpected_keys_under_the_ml_prefix_are_left_alone(bucket, season):
    frame = season[E1][0][FRAME]
    strangers = {
        f"{ML_PREFIX}README.txt",
        f"{ML_PREFIX}train/Common/notes.txt",
        f"{ML_PREFIX}train/Junk/{frame}.jpg",
        f"{ML_PREFIX}holdout/Common/{frame}.jpg",
        f"{ML_PREFIX}train/Common/old/{frame}.jpg",
    }
    for key in strangers:
        bucket.put(key)
    before = {k: v for k, v in bucket.etags(ML_PREFIX).items() if k in strangers}
    season[E1][0][JONNY] = "Rare"  # a real change next to the strangers
    put_sheet(bucket, E1, season[E1])
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in bucket.etags(ML_PREFIX).items() if k in strangers} == before
    in_datasets = {k for k in bucket.keys(ML_PREFIX) - strangers if k.endswith(".jpg")}
    assert in_datasets == {dataset_key(d, r, f) for f, (d, r) in expected(all_classified(season)).items()}
    assert "left alone" in result.stderr and "README.txt" in result.stderr


# ---- filters --------------------------------------------------------------------------------------------


def test_episode_and_season_filters_touch_only_the_chosen_episodes(bucket, season):
    season[E1][0][JONNY] = "Legendary"
    season[E2][0][JONNY] = "Legendary"
    other = {"S02E01": pattern_rows("S02E01", 4)}
    upload_season(bucket, {**season, **other})
    result = run_cli("sync", "--episode", "s01e02")
    assert result.exit_code == 0, result.output
    state = dataset_keys(bucket)
    assert state[season[E2][0][FRAME]][1] == "Legendary"
    assert state[season[E1][0][FRAME]][1] == "Common"
    assert not any(f.startswith("TT_S02") for f in state)
    assert E1 not in result.stdout
    result = run_cli("sync", "--season", "S02")
    assert result.exit_code == 0, result.output
    state = dataset_keys(bucket)
    assert state[season[E1][0][FRAME]][1] == "Common"
    assert {f for f in state if f.startswith("TT_S02")} == set(classified(other["S02E01"]))


def test_a_filtered_run_places_frames_where_a_full_run_would(bucket, season, s3_calls):
    # reclassify in both episodes; sync one, then all: the full run finds the first episode already in place
    season[E1][0][JONNY] = "Legendary"
    season[E1][3][SUPERVISED] = "Rare"
    season[E2][2][JONNY] = "Trash"
    upload_season(bucket, season)
    assert run_cli("sync", "--episode", E1).exit_code == 0
    want = expected(all_classified(season))
    assert {f: v for f, v in dataset_keys(bucket).items() if f.startswith("TT_S01_E01")} == {
        f: v for f, v in want.items() if f.startswith("TT_S01_E01")
    }
    s3_calls.clear()
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == want
    assert counts(result.stdout, E1)["keep"] == len(classified(season[E1]))
    assert not [p for p in s3_calls.of("CopyObject") if "S01_E01" in p["Key"]]


def test_an_unknown_episode_and_a_malformed_one_are_usage_errors(bucket, season):
    result = run_cli("sync", "--dry-run", "--episode", "S05E05")
    assert result.exit_code == 2  # a mistyped selector is the caller's error, not a job failure (issue 23)
    assert "usage error: --episode S05E05: no such episode in the manifests (nearest: " in result.stderr
    result = run_cli("sync", "--episode", "episode-1")
    assert result.exit_code == 2 and "'episode-1' is not like S01E01" in result.stderr


# ---- manifests, configuration and exit codes -----------------------------------------------------------


def test_a_bad_manifest_is_reported_and_good_episodes_still_run(bucket):
    location = put_sheet(bucket, E1, sheet_rows(E1, ["Rare", "Common"]))
    put_sources(bucket, [frame_number(E1, 0), frame_number(E1, 1)])
    put_manifest(bucket, "S01", [manifest_entry(E1, location), {"season_code": "S01", "episode_code": "E02"}])
    put_manifest(bucket, "S02", "this is not json")
    result = run_cli("sync")
    assert result.exit_code == 1
    assert dataset_keys(bucket) == expected({frame_number(E1, 0): "Rare", frame_number(E1, 1): "Common"})
    assert "S01-episodes.json: episode #2: missing key" in result.stderr
    assert "S02-episodes.json: not valid JSON" in result.stderr


def test_no_manifests_is_an_error_reported_on_every_run(bucket):
    for _ in range(2):  # log lines must reach the stderr of each run made in one process
        result = run_cli("sync")
        assert result.exit_code == 1
        assert f"no manifests (*-episodes.json) under s3://{bucket.name}/tuttle_twins/manifests/" in result.stderr
        assert "nothing was applied" in result.stdout


def test_a_missing_bucket_is_a_configuration_error(bucket, monkeypatch):
    monkeypatch.setenv("TUTTLE_BUCKET", bucket.name + "-nope")
    result = run_cli("sync")
    assert result.exit_code == 2
    message = f"configuration error: bucket '{bucket.name}-nope' does not exist (check TUTTLE_BUCKET)"
    assert message in result.stderr.splitlines()
    assert "Traceback" not in result.output


def test_google_sheets_without_credentials_is_a_configuration_error(bucket):
    put_manifest(bucket, "S01", [manifest_entry(E1, "https://docs.google.com/spreadsheets/d/abc/edit?usp=sharing")])
    result = run_cli("sync", "--dry-run")
    assert result.exit_code == 2
    assert "GOOGLE_DRIVE_CREDENTIALS_FILE is not set" in result.stderr and "Traceback" not in result.output


# ---- failures while applying ----------------------------------------------------------------------------


def test_a_failed_copy_keeps_the_move_source_and_holds_back_plain_deletes(bucket, season, s3_calls):
    sheet = season[E1]
    moved, also_moved, deleted = sheet[0][FRAME], sheet[1][FRAME], sheet[4][FRAME]
    sheet[0][JONNY] = "Legendary"
    sheet[1][JONNY] = "Legendary"
    sheet[4][UNSUPERVISED] = ""
    put_sheet(bucket, E1, sheet)
    before = dataset_keys(bucket)

    def fail_one_copy(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if operation == "CopyObject" and params["Key"].endswith(f"/{moved}.jpg"):
            return 500, {"Error": {"Code": "InternalError", "Message": "We encountered an internal error."}}
        return None

    s3_calls.fail = fail_one_copy
    result = run_cli("sync")
    assert result.exit_code == 1
    state = dataset_keys(bucket)
    assert state[moved] == before[moved]  # the source of the failed move is still there
    assert state[also_moved] == expected(all_classified(season))[also_moved]
    assert state[also_moved][1] == "Legendary"
    assert deleted in state  # plain deletes wait for a run without failed copies
    assert "InternalError" in result.stderr and "plain deletes held back" in result.stderr

    s3_calls.fail = None
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == expected(all_classified(season))


def test_per_key_delete_errors_are_failures(bucket, season, s3_calls):
    sheet = season[E1]
    gone, stuck = sheet[0][FRAME], sheet[1][FRAME]
    sheet[0][UNSUPERVISED] = sheet[1][UNSUPERVISED] = ""
    stuck_key = dataset_key(*dataset_keys(bucket)[stuck], stuck)
    assert stuck_key.split("/")[-2] == "Rare"
    put_sheet(bucket, E1, sheet)

    def deny_one_key(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if operation != "DeleteObjects":
            return None
        others = [o for o in params["Delete"]["Objects"] if o["Key"] != stuck_key]
        bucket.client.delete_objects(Bucket=bucket.name, Delete={"Objects": others})
        return 200, {"Errors": [{"Key": stuck_key, "Code": "AccessDenied", "Message": "Access Denied"}]}

    s3_calls.fail = deny_one_key
    result = run_cli("sync")
    assert result.exit_code == 1
    state = dataset_keys(bucket)
    assert gone not in state and stuck in state
    assert f"delete {stuck_key} failed: AccessDenied: Access Denied" in result.stderr
    assert "failed 1" in result.stdout


def test_a_rerun_after_an_interrupted_apply_converges(bucket, season, s3_calls):
    sheet = season[E1]
    moved, deleted = sheet[0][FRAME], sheet[1][FRAME]
    sheet[0][JONNY] = "Legendary"
    sheet[1][SUPERVISED] = sheet[1][UNSUPERVISED] = ""
    put_sheet(bucket, E1, sheet)
    before = bucket.keys(ML_PREFIX)
    old, new = dataset_keys(bucket), expected(all_classified(season))
    moving = {f for f in new if f in old and old[f] != new[f]}
    assert moved in moving

    def no_deletes(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if operation == "DeleteObjects":
            return 503, {"Error": {"Code": "ServiceUnavailable", "Message": "Please reduce your request rate."}}
        return None

    s3_calls.fail = no_deletes
    result = run_cli("sync")
    assert result.exit_code == 1
    # the copies of the moves happened, their sources could not be deleted: those frames are in two folders
    new_keys = {dataset_key(*new[f], f) for f in moving}
    assert {k for k in bucket.keys(ML_PREFIX) - before if k.endswith(".jpg")} == new_keys
    assert dataset_key(new[moved][0], "Legendary", moved) in new_keys
    assert {dataset_key(*old[f], f) for f in moving} <= bucket.keys(ML_PREFIX)
    assert old[moved][1] == "Common"
    assert "ServiceUnavailable" in result.stderr

    s3_calls.fail = None
    s3_calls.clear()
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == expected(all_classified(season))
    assert deleted not in dataset_keys(bucket)
    assert s3_calls.of("CopyObject") == []  # nothing copied twice


def test_deletes_go_in_batches_of_1000_and_every_response_is_checked(bucket, s3_calls):
    from tuttle_prep.edges.aws import make_client
    from tuttle_prep.edges.s3_apply import delete_keys
    from tuttle_prep.edges.s3_bucket import S3Bucket

    keys = [dataset_key("train", "Common", frame_number(E1, i)) for i in range(2500)]
    batches: list[list[str]] = []

    def answer(operation: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if operation != "DeleteObjects":
            return None
        batch = [o["Key"] for o in params["Delete"]["Objects"]]
        batches.append(batch)
        errors = [{"Key": k, "Code": "InternalError", "Message": "try again"} for k in batch if k == keys[1500]]
        return 200, {"Deleted": [{"Key": k} for k in batch if k != keys[1500]], "Errors": errors}

    store = S3Bucket(make_client("s3"), bucket.name, workers=4)
    s3_calls.fail = answer
    deleted, failures = delete_keys(store, keys)
    assert sorted(len(b) for b in batches) == [500, 1000, 1000]
    assert sorted(k for b in batches for k in b) == sorted(keys)
    assert deleted == 2499
    assert [(f.action, f.key) for f in failures] == [("delete", keys[1500])]
    assert "InternalError" in failures[0].error


def test_missing_credentials_are_a_configuration_error(bucket, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups off the loopback
    result = run_cli("sync", "--dry-run")
    assert result.exit_code == 2
    assert "configuration error: no AWS credentials found" in result.stderr and "Traceback" not in result.output


def test_the_split_on_its_thread_hands_back_its_value_or_its_error():
    from tuttle_prep.commands.sync import InBackground

    assert InBackground(lambda a, b: a + b, 2, 3).result() == 5
    with pytest.raises(ZeroDivisionError):
        InBackground(lambda: 1 / 0).result()
