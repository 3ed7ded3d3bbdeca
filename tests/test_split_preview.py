"""`split preview` against moto server: numbers equal to counts made here from the sheets; nothing listed or written."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pandas as pd
import pytest
from conftest import run_cli
from season import ML_PREFIX, SOURCE_PREFIX, UNSUPERVISED, dataset_key, frame_number, sheet_rows, upload_season

import tuttle_prep.edges.aws
from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.plan import wanted_frames
from tuttle_prep.settings import DEFAULT_SEED

SHARES = {"train": 0.7, "validate": 0.2, "test": 0.1}
PATTERN = ["Common", "Common", "Rare", "Uncommon", "Common", "Trash", "Legendary", "Common", None, "Uncommon"]


@pytest.fixture
def requests_made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every S3 request the command makes: (operation, params)."""
    made: list[tuple[str, dict[str, Any]]] = []

    def keep(params: dict[str, Any], context: dict[str, Any], model: Any, **_: Any) -> None:
        made.append((model.name, dict(params)))

    def new_session() -> boto3.session.Session:
        session = boto3.session.Session()
        session.events.register("before-parameter-build.s3", keep)
        return session

    monkeypatch.setattr(tuttle_prep.edges.aws, "new_session", new_session)
    return made


@pytest.fixture
def sheets(bucket) -> dict[str, list[dict[str, str]]]:
    """Two episodes of S01 and one of S02, frames every quarter second; some dataset objects already there."""
    out = {
        episode_id: sheet_rows(episode_id, [PATTERN[(i * 7 + n) % len(PATTERN)] for i in range(n)], column=UNSUPERVISED)
        for episode_id, n in (("S01E01", 160), ("S01E02", 120), ("S02E01", 90))
    }
    for rows in out.values():  # frames 6 apart (a quarter second), not consecutive frame numbers
        for r in rows:
            index = int(r["ROW_INDEX"])
            r["FRAME NUMBER"] = frame_number(r["FRAME NUMBER"][3:6] + r["FRAME NUMBER"][7:10], index * 6)
    upload_season(bucket, out, sources=False)
    bucket.put(dataset_key("train", "Common", frame_number("S01E01", 0)))
    return out


def sheet_frames(sheets: dict[str, list[dict[str, str]]], episodes: set[str] | None = None) -> pd.DataFrame:
    rows = [
        (episode_id, r["FRAME NUMBER"], {"Junk": "Trash"}.get(r[UNSUPERVISED], r[UNSUPERVISED]))
        for episode_id, sheet in sheets.items()
        for r in sheet
        if r[UNSUPERVISED] and (episodes is None or episode_id in episodes)
    ]
    return pd.DataFrame(rows, columns=["episode_id", "frame", "rarity"])


def ticks(frame: str) -> int:
    hh, mm, ss, ff = (int(x) for x in frame[-11:].split("-"))
    return ((hh * 60 + mm) * 60 + ss) * 24 + ff


def check_outcome(outcome: dict[str, Any], wanted: pd.DataFrame, seconds: tuple[float, ...]) -> None:
    """The preview's counts, shares and leakage equal counts made here from `wanted`."""
    for rarity in RARITIES:
        for dataset in SHARES:
            count = int(((wanted["rarity"] == rarity) & (wanted["dataset"] == dataset)).sum())
            assert outcome["counts"][rarity][dataset] == count
    for row in outcome["rarity_shares"]:
        total = int((wanted["rarity"] == row["rarity"]).sum())
        files = int(((wanted["rarity"] == row["rarity"]) & (wanted["dataset"] == row["dataset"])).sum())
        assert (row["files"], row["rarity_files"]) == (files, total)
    trains = [
        (e, ticks(f))
        for e, f, d in zip(wanted["episode_id"], wanted["frame"], wanted["dataset"], strict=True)
        if d == "train"
    ]
    leakage = {(r["dataset"], r["seconds"]): r for r in outcome["leakage"]}
    for dataset in ("validate", "test"):
        mine = [
            (e, ticks(f))
            for e, f, d in zip(wanted["episode_id"], wanted["frame"], wanted["dataset"], strict=True)
            if d == dataset
        ]
        for s in seconds:
            leaking = sum(any(e == te and abs(t - tt) <= s * 24 for te, tt in trains) for e, t in mine)
            assert (leakage[(dataset, s)]["leaking"], leakage[(dataset, s)]["frames"]) == (leaking, len(mine))


def test_preview_of_the_current_and_a_new_setting(bucket, sheets, requests_made):
    before = bucket.etags()
    result = run_cli(
        "split",
        "preview",
        "--stratify",
        "none",
        "--group-seconds",
        "2",
        "--seed",
        "other",
        "--leak-seconds",
        "0.25,1,5",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    frames = sheet_frames(sheets)
    assert got["frames"] == len(frames) and got["episodes"] == ["S01E01", "S01E02", "S02E01"]

    current = wanted_frames(frames, SHARES, DEFAULT_SEED)  # the default settings: stratified, no groups
    assert got["current"]["settings"] == {
        "stratify": "rarity",
        "group_seconds": 0,
        "seed": DEFAULT_SEED,
        "group": "none",
    }
    check_outcome(got["current"], current, (0.25, 1, 5))
    preview = wanted_frames(frames, SHARES, "other", 2, stratify="none")
    assert got["preview"]["settings"] == {"stratify": "none", "group_seconds": 2, "seed": "other", "group": "none"}
    check_outcome(got["preview"], preview, (0.25, 1, 5))
    assert got["preview"]["moved"] == int((current["dataset"] != preview["dataset"]).sum()) > 0
    pairs = pd.Series([f"{a} -> {b}" for a, b in zip(current["dataset"], preview["dataset"], strict=True) if a != b])
    assert got["preview"]["moves"] == pairs.value_counts().to_dict()

    # the sheets and manifests were read; no dataset or source folder listed, nothing written
    assert bucket.etags() == before
    listed = [p["Prefix"] for op, p in requests_made if op == "ListObjectsV2"]
    assert listed and not any(p.startswith((ML_PREFIX, SOURCE_PREFIX + "s0")) for p in listed)
    assert {op for op, _ in requests_made} <= {"ListObjectsV2", "GetObject"}


def test_preview_of_one_episode_agrees_with_the_full_preview(bucket, sheets, monkeypatch):
    monkeypatch.setenv("TUTTLE_SPLIT_STRATIFY", "none")
    result = run_cli("split", "preview", "--episode", "S01E02", "--stratify", "rarity", "--format", "json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    frames = sheet_frames(sheets, {"S01E02"})
    assert got["episodes"] == ["S01E02"] and got["frames"] == len(frames)
    assert got["current"]["settings"]["stratify"] == "none"
    check_outcome(got["preview"], wanted_frames(frames, SHARES, DEFAULT_SEED, stratify="rarity"), (1, 5, 30))
    full = wanted_frames(sheet_frames(sheets), SHARES, DEFAULT_SEED, stratify="rarity")
    in_full = full[full["episode_id"] == "S01E02"]
    for rarity in RARITIES:
        for dataset in SHARES:
            mask = (in_full["rarity"] == rarity) & (in_full["dataset"] == dataset)
            assert got["preview"]["counts"][rarity][dataset] == int(mask.sum())


def test_preview_text_names_the_settings_the_leakage_and_the_moves(bucket, sheets):
    result = run_cli("split", "preview", "--group-seconds", "5")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "current: stratify=rarity, group seconds=0" in out and "preview: stratify=rarity, group seconds=5" in out
    assert out.count("leakage: frames with a train frame of the same episode within") == 2
    assert "each rarity's split against the target" in out
    assert "compared with the current settings" in out
    only_current = run_cli("split", "preview")
    assert only_current.exit_code == 0 and "preview:" not in only_current.stdout


def test_an_unreadable_sheet_is_reported_and_the_others_previewed(bucket, sheets):
    bucket.put("tuttle_twins/test_sheets/S01E01.csv", b"ROW_INDEX\n0\n")
    result = run_cli("split", "preview", "--format", "json")
    assert result.exit_code == 0, result.output  # a sheet without FRAME NUMBER is a data finding, as in sync
    got = json.loads(result.stdout)
    assert got["episodes"] == ["S01E02", "S02E01"]
    assert any("S01E01" in e and "FRAME NUMBER" in e for e in got["findings"]) and got["errors"] == []
    bucket.client.delete_object(Bucket=bucket.name, Key="tuttle_twins/test_sheets/S01E01.csv")
    unreadable = run_cli("split", "preview", "--format", "json")  # a sheet that cannot be read: a job failure
    assert unreadable.exit_code == 1
    assert any("S01E01" in e and "cannot read" in e for e in json.loads(unreadable.stdout)["errors"])


@pytest.mark.parametrize(("args", "named"), [(["--seed", "  "], "--seed"), (["--stratify", "class"], "--stratify")])
def test_bad_options_are_usage_errors(bucket, args, named):
    result = run_cli("split", "preview", *args)
    assert result.exit_code == 2 and named in result.stderr
