"""Bad inputs: broken manifests, odd sheets, strange keys in the bucket — through the real CLI and moto server.

Every case checks the exit code, the message a person would read, and the final state of the bucket: an
episode whose manifest or sheet cannot be used keeps its dataset files, the good episodes still sync, and
keys the job does not own are left alone.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import Bucket, run_cli
from season import (
    FRAME,
    JONNY,
    JPEG,
    ML_PREFIX,
    SUPERVISED,
    UNSUPERVISED,
    dataset_key,
    dataset_keys,
    frame_number,
    manifest_entry,
    put_manifest,
    put_sheet,
    put_sources,
    row,
    sheet_csv,
    sheet_key,
    source_key,
    upload_season,
)
from test_faults import expected_state, season_rows, snapshot

E01, E02, S02E01 = "S01E01", "S01E02", "S02E01"


def place(bucket: Bucket, state: dict[str, tuple[str, str]], ml_prefix: str = ML_PREFIX) -> None:
    """Put dataset objects as a previous sync would have left them."""
    for frame, (dataset, rarity) in state.items():
        bucket.put(f"{ml_prefix}{dataset}/{rarity}/{frame}.jpg", JPEG + frame.encode())


def of_episode(state: dict[str, tuple[str, str]], episode_id: str) -> dict[str, tuple[str, str]]:
    prefix = f"TT_{episode_id[:3]}_{episode_id[3:]}_"
    return {frame: where for frame, where in state.items() if frame.startswith(prefix)}


# ---- manifests -------------------------------------------------------------------------------------------


MANIFEST_CASES = {
    "not JSON": ('[{"season_code": "S01", "episode_code": ', "S01-episodes.json: not valid JSON (line 1"),
    "not a list": ('{"season_code": "S01", "episode_code": "E01"}', "expected a JSON list of episodes, found a dict"),
    "missing keys": (
        '[{"season_code": "S01", "google_spreadsheet_share_link": "s3://b/k.csv"}]',
        "S01-episodes.json: episode #1: missing key 'episode_code'",
    ),
    "unknown URL scheme": (
        json.dumps([manifest_entry(E01, "ftp://example.com/S01E01.csv")]),
        "google_spreadsheet_share_link 'ftp://example.com/S01E01.csv' is not a Google Sheets link",
    ),
}


@pytest.mark.parametrize("case", MANIFEST_CASES)
def test_a_broken_manifest_is_reported_its_episodes_keep_their_files_and_other_seasons_sync(
    bucket: Bucket, case: str
) -> None:
    body, message = MANIFEST_CASES[case]
    s01 = {E01: season_rows(E01, 4)}
    s02 = {S02E01: season_rows(S02E01, 4)}
    place(bucket, expected_state(s01))
    upload_season(bucket, {**s01, **s02})
    put_manifest(bucket, "S01", body)

    result = run_cli("sync", "--prune-orphans")

    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "--prune-orphans ignored: some manifests have errors" in result.output
    assert dataset_keys(bucket) == expected_state({**s01, **s02})


def test_an_episode_in_two_manifests_is_reported_and_the_first_one_is_used(bucket: Bucket) -> None:
    first = season_rows(E01, 4)
    second = [{**r, UNSUPERVISED: "Legendary"} for r in first]
    upload_season(bucket, {E01: first})
    other_sheet = put_sheet(bucket, "S01E01-copy", second)
    put_manifest(bucket, "S01b", [manifest_entry(E01, other_sheet)])  # S01b-episodes.json, read second

    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    where = f"s3://{bucket.name}/tuttle_twins/manifests/"
    assert (
        f"{where}S01b-episodes.json: episode S01E01 repeats an episode already in {where}S01-episodes.json"
        in result.output
    )
    assert dataset_keys(bucket) == expected_state({E01: first})


# ---- sheets: whole-sheet problems skip the episode -----------------------------------------------------


def _latin1_sheet(rows: list[dict[str, str]]) -> bytes:
    return sheet_csv([{**r, "METADATA": "[Émilie, Café]"} for r in rows]).decode().encode("latin-1")


#: how the sheet is broken, what the run says, and whether that is a data finding (exit 0) or a job failure
SHEET_CASES = {
    "no FRAME NUMBER column": (
        lambda rows: sheet_csv([{("FRAME" if k == FRAME else k): v for k, v in r.items()} for r in rows], ["FRAME"]),
        "no 'FRAME NUMBER' column in the header row",
        "skipped (data): sheet not usable",
    ),
    "header only": (
        lambda rows: sheet_csv([]),
        "the sheet has no classified frames; skipped",
        "skipped (data): no classified frames",
    ),
    "all rows unclassified": (
        lambda rows: sheet_csv([{FRAME: r[FRAME]} for r in rows]),
        "the sheet has no classified frames; skipped",
        "skipped (data): no classified frames",
    ),
    "not UTF-8": (_latin1_sheet, "not UTF-8 text (byte", "skipped (job failure): sheet not read"),
}


@pytest.mark.parametrize("case", SHEET_CASES)
def test_an_unusable_sheet_skips_its_episode_and_keeps_its_files(bucket: Bucket, case: str) -> None:
    make_sheet, message, status = SHEET_CASES[case]
    sheets = {E01: season_rows(E01, 4), E02: season_rows(E02, 3)}
    synced = expected_state(sheets)
    place(bucket, of_episode(synced, E01))
    upload_season(bucket, sheets)
    put_sheet(bucket, E01, make_sheet(sheets[E01]))

    result = run_cli("sync")

    job_failure = "job failure" in status
    assert result.exit_code == (1 if job_failure else 0), result.output
    assert message in result.output
    episode_line = next(line for line in result.stdout.splitlines() if line.startswith("S01E01"))
    assert episode_line.endswith(status)
    assert ("job failures: 1" if job_failure else "data findings: 1 (1 sheet skipped)") in result.stdout
    assert dataset_keys(bucket) == synced


def test_allow_empty_empties_the_episode_of_a_header_only_sheet(bucket: Bucket) -> None:
    sheets = {E01: season_rows(E01, 4), E02: season_rows(E02, 3)}
    synced = expected_state(sheets)
    place(bucket, synced)
    upload_season(bucket, sheets)
    put_sheet(bucket, E01, sheet_csv([]))

    result = run_cli("sync", "--allow-empty")

    assert result.exit_code == 0, result.output
    assert dataset_keys(bucket) == of_episode(synced, E02)
    assert set(snapshot(bucket, "tuttle_twins/s01e01/")) == {source_key(r[FRAME]) for r in sheets[E01]}


# ---- sheets: row by row -------------------------------------------------------------------------------------


def test_odd_rows_are_resolved_or_rejected_by_sheet_row_and_never_fall_back(bucket: Bucket) -> None:
    f = [frame_number(E01, i) for i in range(12)]
    rows = [
        row(f[0], "Common"),  # sheet row 2
        row(f[1], "Common", jonny="Epic"),  # 3: unknown rarity in the most trusted column
        row(f[2], "Junk"),  # 4
        row(f[3], "Common", supervised="  rare "),  # 5
        row(f[4], "LEGENDARY"),  # 6
        row(f[5], "Common"),  # 7: conflicting duplicates
        row(f[5], "Rare"),  # 8
        row(f[6], "Uncommon"),  # 9: identical duplicates
        row(f[6], "Uncommon"),  # 10
        row(frame_number(E02, 7), "Rare"),  # 11: a frame of another episode
        row("TT_S01_E01_FRM-00-00-99-99", "Rare"),  # 12: not a frame number
        {},  # 13: a blank line
        row(f[8]),  # 14: unclassified
        row(f[9], " trash ", "", "junk"),  # 15
    ]
    # header names in another case, with stray spaces and a typographic apostrophe
    header = [" frame number ", "unsupervised classification", "Supervised Classification ", "JONNY’s RECLASSIFICATION"]
    renamed = {FRAME: header[0], UNSUPERVISED: header[1], SUPERVISED: header[2], JONNY: header[3]}
    body = sheet_csv([{renamed[k]: v for k, v in r.items()} for r in rows], header)
    body = body.replace(b"\n,,,\n", b"\n\n")  # the empty row as a truly blank line
    assert body.count(b"\n\n") == 1
    upload_season(bucket, {E01: rows})
    put_sheet(bucket, E01, body)
    held = {f[1]: ("train", "Rare"), f[5]: ("validate", "Trash")}  # placed by an older, valid sheet
    place(bucket, held)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # rejected rows are data findings: reported, exit 0
    assert "data findings: 5 (5 rejected rows)" in result.stdout
    for sheet_row, column, value in [
        (3, header[3], "Epic"),
        (7, header[0], f[5]),
        (8, header[0], f[5]),
        (11, header[0], frame_number(E02, 7)),
        (12, header[0], "TT_S01_E01_FRM-00-00-99-99"),
    ]:
        assert f"S01E01 sheet row {sheet_row}, column {column!r}: {value!r}" in result.output
    assert "row 13" not in result.output and "row 14" not in result.output
    wanted = {f[0]: "Common", f[2]: "Trash", f[3]: "Rare", f[4]: "Legendary", f[6]: "Uncommon", f[9]: "Trash"}
    # rejected rows neither fall back to a less trusted column nor lose the file an older sheet placed
    placed = dataset_keys(bucket)
    assert placed == {**expected_state({E01: [row(frame, rarity) for frame, rarity in wanted.items()]}), **held}


def test_a_sheet_of_30000_rows_is_planned_in_full(bucket: Bucket, tmp_path) -> None:
    rows = season_rows(E01, 30_000)
    upload_season(bucket, {E01: rows}, sources=False)
    put_sources(bucket, [r[FRAME] for r in rows[:5]])
    plan_csv = tmp_path / "plan.csv"
    before = snapshot(bucket)

    result = run_cli("sync", "--dry-run", "--plan-out", str(plan_csv))

    assert result.exit_code == 0, result.output  # 29,995 missing source frames: data findings, reported
    assert "data findings: 29,995 (29,995 missing source frames)" in result.stdout
    plan = pd.read_csv(plan_csv, dtype=str, keep_default_na=False)
    assert len(plan) == 30_000 and plan["frame"].is_unique
    assert plan["action"].value_counts().to_dict() == {"missing": 29_995, "copy": 5}
    assert "... and 29,975 more missing source frames" in result.output
    assert snapshot(bucket) == before


# ---- the bucket ----------------------------------------------------------------------------------------------


STRAY_KEYS = [
    "README.txt",
    "train/preview.png",
    "train/Common/notes.png",
    "train/Common/TT_S01_E01_FRM-00-00-00-00 (1).jpg",
    "train/Common/Ünïcode frame+1.jpg",
    "train/Epic/TT_S01_E01_FRM-00-00-00-01.jpg",
    "old_train/Rare/TT_S01_E01_FRM-00-00-00-02.jpg",
]


@pytest.mark.parametrize("ml_prefix", [ML_PREFIX, "tuttle twins/ML ü+1/"])
def test_keys_the_job_does_not_own_are_reported_and_left_alone(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch, ml_prefix: str
) -> None:
    monkeypatch.setenv("TUTTLE_ML_PREFIX", ml_prefix)
    sheets = {E01: season_rows(E01, 6)}
    upload_season(bucket, sheets)
    for stray in STRAY_KEYS:
        bucket.put(ml_prefix + stray, b"not ours")
    strays = snapshot(bucket, ml_prefix)

    first = run_cli("sync", "--prune-orphans")
    second = run_cli("sync", "--prune-orphans")

    assert first.exit_code == 0, first.output
    assert "not a dataset object, left alone: " + ml_prefix + "README.txt" in first.output
    assert f"{ml_prefix}train/Epic/ (not a rarity folder; not listed)" in first.output
    assert f"{ml_prefix}old_train/ (folder of no configured dataset; not listed)" in first.output
    after = snapshot(bucket, ml_prefix)
    assert {k: after.get(k) for k in strays} == strays
    owned = {k[len(ml_prefix) :] for k in after if k not in strays and k.endswith(".jpg")}
    assert owned == {f"{d}/{r}/{frame}.jpg" for frame, (d, r) in expected_state(sheets).items()}
    assert second.exit_code == 0 and "done: copied 0, moved 0, deleted 0" in second.output


def test_a_frame_in_two_datasets_ends_in_one_and_a_missing_source_is_reported(bucket: Bucket) -> None:
    rows = season_rows(E01, 5)
    wanted = expected_state({E01: rows})
    f = [r[FRAME] for r in rows]
    upload_season(bucket, {E01: rows}, sources=False)
    put_sources(bucket, f[:2])  # f[2], f[3], f[4] have no source frame
    dataset, rarity = wanted[f[0]]
    other = next(d for d in ("train", "validate", "test") if d != dataset)
    place(bucket, {f[0]: (dataset, rarity)})
    bucket.put(dataset_key(other, "Trash", f[0]), JPEG)  # the same frame in a second dataset
    bucket.put(dataset_key(other, "Trash", f[2]), JPEG)  # no source, but a dataset copy to move
    bucket.put(dataset_key("test", "Rare", f[3]), JPEG)  # no source, in the datasets twice
    bucket.put(dataset_key("train", "Rare", f[3]), JPEG)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # a missing source is a data finding: reported, exit 0
    assert "data findings: 1 (1 missing source frame)" in result.stdout
    assert f"S01E01 sheet row 6: missing source frame s3://{bucket.name}/{source_key(f[4])}" in result.output
    for frame in f[:3]:
        assert f"missing source frame s3://{bucket.name}/{source_key(frame)}" not in result.output
    assert dataset_keys(bucket) == {frame: wanted[frame] for frame in f[:4]}
    assert set(snapshot(bucket, "tuttle_twins/s01e01/")) == {source_key(frame) for frame in f[:2]}


def test_a_sheet_of_another_episode_is_rejected_row_by_row_without_flooding_the_log(bucket: Bucket) -> None:
    # S01E02's manifest entry links S01E01's sheet by mistake: every row names a frame of another episode
    upload_season(bucket, {E01: season_rows(E01, 80)})
    upload_season(bucket, {E02: season_rows(E01, 80)}, sources=False, manifest=False)
    entries = [
        {"season_code": "S01", "episode_code": e[3:], "google_spreadsheet_share_link": f"s3://{bucket.name}/{sheet_key(e)}"}
        for e in (E01, E02)
    ]
    bucket.put("tuttle_twins/manifests/S01-episodes.json", json.dumps(entries))

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # 80 rejected rows and a skipped sheet: data findings
    assert "data findings: 81 (1 sheet skipped, 80 rejected rows)" in result.stdout
    assert result.stderr.count("frame of another episode (this sheet is S01E02)") == 50
    assert "S01E02: ... and 30 more rejected rows in its sheet (50 shown)" in result.stderr
    assert dataset_keys(bucket) == expected_state({E01: season_rows(E01, 80)})
