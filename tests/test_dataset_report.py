"""`report`: counts of the dataset folders against the target split, as text, JSON, CSV and a PNG chart."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import matplotlib.image
import pytest
from conftest import run_cli
from season import ML_PREFIX, dataset_key, manifest_entry, put_manifest

from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.labels import labels_key

DATASETS = ("train", "validate", "test")


def frame(episode_id: str, index: int) -> str:
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-00-{index // 60:02d}-{index % 60:02d}-00"


@pytest.fixture
def catalogue(bucket):
    """Dataset objects of S01E01, S01E02, S02E01 (manifests) and S03E01 (an orphan), plus stray keys.

    S01E03 is in the manifest with no dataset files.
    """
    layout = {
        "S01E01": {("train", "Common"): 7, ("train", "Rare"): 2, ("validate", "Common"): 3, ("test", "Trash"): 1},
        "S01E02": {("train", "Legendary"): 1, ("validate", "Uncommon"): 2, ("test", "Common"): 2},
        "S02E01": {("train", "Common"): 4, ("test", "Rare"): 1},
        "S03E01": {("validate", "Trash"): 2},
    }
    for episode_id, cells in layout.items():
        index = 0
        for (dataset, rarity), count in cells.items():
            for _ in range(count):
                bucket.put(dataset_key(dataset, rarity, frame(episode_id, index)))
                index += 1
    put_manifest(bucket, "S01", [manifest_entry(e, f"s3://x/{e}.csv") for e in ("S01E01", "S01E02", "S01E03")])
    put_manifest(bucket, "S02", [manifest_entry("S02E01", "s3://x/S02E01.csv")])
    bucket.put(f"{ML_PREFIX}README.txt", "stray")
    bucket.put(f"{ML_PREFIX}train/Common/thumbs.db", "stray")
    bucket.put(labels_key(ML_PREFIX), "frame,episode_id,dataset,rarity,metadata,s3_key\n")
    return bucket


def bucket_counts(bucket, episodes: set[str] | None = None) -> Counter:
    """(episode_id, dataset, rarity) -> files, straight from the bucket's keys."""
    counts: Counter = Counter()
    for key in bucket.keys(ML_PREFIX):
        parts = key[len(ML_PREFIX) :].split("/")
        if len(parts) == 3 and parts[2].startswith("TT_") and parts[2].endswith(".jpg"):
            episode_id = parts[2][3:6] + parts[2][7:10]
            if episodes is None or episode_id in episodes:
                counts[(episode_id, parts[0], parts[1])] += 1
    return counts


def rows_of(table: list[dict], level: str, scope: str) -> dict[str, dict]:
    return {r["dataset"]: r for r in table if r["level"] == level and r["scope"] == scope}


def test_report_numbers_equal_the_bucket(catalogue, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("report", "--out", str(out), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    counts = bucket_counts(catalogue)
    total = sum(counts.values())
    assert report["total_files"] == total == 25

    overall = rows_of(report["table"], "overall", "all")
    for dataset in DATASETS:
        files = sum(n for (_, d, _), n in counts.items() if d == dataset)
        assert overall[dataset]["total"] == files
        assert overall[dataset]["share"] == pytest.approx(files / total)
        assert overall[dataset]["target"] == {"train": 0.7, "validate": 0.2, "test": 0.1}[dataset]
        for rarity in RARITIES:
            assert overall[dataset][rarity] == sum(n for (_, d, r), n in counts.items() if (d, r) == (dataset, rarity))
    assert overall["all"]["total"] == total

    s01 = rows_of(report["table"], "season", "S01")
    assert s01["all"]["total"] == sum(n for (e, _, _), n in counts.items() if e.startswith("S01"))
    assert s01["train"]["Common"] == counts[("S01E01", "train", "Common")]

    episodes = report["episodes"]
    assert set(episodes) == {"S01E01", "S01E02", "S01E03", "S02E01", "S03E01"}
    for episode_id, row in episodes.items():
        for dataset in DATASETS:
            assert row[dataset] == sum(n for (e, d, _), n in counts.items() if (e, d) == (episode_id, dataset))
    assert episodes["S01E03"]["total"] == 0 and episodes["S01E03"]["note"]
    assert report["orphans"] == {"files": 2, "episodes": {"S03E01": 2}}
    assert sorted(report["unexpected"]["keys"]) == [f"{ML_PREFIX}README.txt", f"{ML_PREFIX}train/Common/thumbs.db"]

    with open(out / "report.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == len(report["table"])
    for written, reported in zip(csv_rows, report["table"], strict=True):
        assert written["scope"] == reported["scope"] and written["dataset"] == reported["dataset"]
        assert [int(written[c]) for c in (*RARITIES, "total")] == [reported[c] for c in (*RARITIES, "total")]


def test_report_png_is_a_readable_chart(catalogue, tmp_path: Path) -> None:
    result = run_cli("report", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    png = tmp_path / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 20_000 < png.stat().st_size < 2_000_000
    height, width, _ = matplotlib.image.imread(png).shape
    assert width >= 1000 and 400 <= height < width
    # the text report names the shares against the target and the orphans
    assert "share" in result.stdout and "target" in result.stdout
    assert "S03E01 (2)" in result.stdout


def test_report_of_one_episode_counts_only_that_episode(catalogue, tmp_path: Path) -> None:
    result = run_cli("report", "--episode", "s01e02", "--out", str(tmp_path), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    counts = bucket_counts(catalogue, {"S01E02"})
    assert report["total_files"] == sum(counts.values()) == 5
    assert set(report["episodes"]) == {"S01E02"}
    assert rows_of(report["table"], "overall", "all")["validate"]["Uncommon"] == 2


def test_report_of_an_empty_bucket_still_writes_its_files(bucket, tmp_path: Path) -> None:
    result = run_cli("report", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "0 dataset files" in result.stdout
    assert (tmp_path / "report.png").stat().st_size > 0
    assert (tmp_path / "report.csv").read_text().startswith("level,scope,dataset,")


def frames_by_dataset(bucket, episodes: set[str] | None = None) -> dict[str, list[tuple[str, int]]]:
    """dataset -> [(episode_id, frames since the episode's start)], straight from the bucket's keys."""
    out: dict[str, list[tuple[str, int]]] = {}
    for (episode_id, dataset, _), frame in (
        ((k.split("/")[-1][3:6] + k.split("/")[-1][7:10], k.split("/")[-3], None), k.split("/")[-1][:-4])
        for k in bucket.keys(ML_PREFIX)
        if k.endswith(".jpg") and k.split("/")[-1].startswith("TT_")
    ):
        if episodes is None or episode_id in episodes:
            hh, mm, ss, ff = (int(x) for x in frame[-11:].split("-"))
            out.setdefault(dataset, []).append((episode_id, ((hh * 60 + mm) * 60 + ss) * 24 + ff))
    return out


def brute_force_leakage(by_dataset: dict[str, list[tuple[str, int]]], dataset: str, seconds: float) -> int:
    trains = by_dataset.get("train", [])
    return sum(
        any(e == te and abs(t - tt) <= seconds * 24 for te, tt in trains) for e, t in by_dataset.get(dataset, [])
    )


def test_report_leakage_and_rarity_shares_equal_counts_from_the_bucket(catalogue, tmp_path: Path) -> None:
    # frames a second apart in the catalogue; two more validate frames half a second and 10 s from train ones
    catalogue.put(dataset_key("validate", "Rare", "TT_S01_E01_FRM-00-00-00-12"))
    catalogue.put(dataset_key("test", "Legendary", "TT_S01_E01_FRM-00-00-18-00"))
    result = run_cli("report", "--out", str(tmp_path), "--format", "json", "--leak-seconds", "0.5,2,10")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)

    by_dataset = frames_by_dataset(catalogue)
    leakage = {(r["dataset"], r["seconds"]): r for r in report["leakage"]}
    assert set(leakage) == {(d, s) for d in ("validate", "test") for s in (0.5, 2, 10)}
    for (dataset, seconds), reported in leakage.items():
        leaking = brute_force_leakage(by_dataset, dataset, seconds)
        assert (reported["leaking"], reported["frames"]) == (leaking, len(by_dataset[dataset]))
        assert reported["share"] == pytest.approx(leaking / len(by_dataset[dataset]))
    assert leakage[("validate", 0.5)]["leaking"] >= 1  # the half-second frame

    counts = bucket_counts(catalogue)
    target = {"train": 0.7, "validate": 0.2, "test": 0.1}
    shares = {(r["rarity"], r["dataset"]): r for r in report["rarity_shares"]}
    assert len(shares) == len(RARITIES) * 3
    worst = None
    for (rarity, dataset), row in shares.items():
        files = sum(n for (_, d, r), n in counts.items() if (d, r) == (dataset, rarity))
        rarity_files = sum(n for (_, _, r), n in counts.items() if r == rarity)
        assert (row["files"], row["rarity_files"], row["target"]) == (files, rarity_files, target[dataset])
        if rarity_files:
            assert row["share"] == pytest.approx(files / rarity_files)
            assert row["deviation"] == pytest.approx(files / rarity_files - target[dataset])
            if worst is None or abs(row["deviation"]) > abs(worst["deviation"]):
                worst = row
    assert report["largest_deviation"] == worst

    with open(tmp_path / "leakage.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(r["dataset"], float(r["seconds"]), int(r["leaking"])) for r in written] == [
        (r["dataset"], r["seconds"], r["leaking"]) for r in report["leakage"]
    ]
    with open(tmp_path / "rarity_shares.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(r["rarity"], r["dataset"], int(r["files"])) for r in written] == [
        (r["rarity"], r["dataset"], r["files"]) for r in report["rarity_shares"]
    ]
    assert report["files"]["leakage"] == str(tmp_path / "leakage.csv")

    text = run_cli("report", "--out", str(tmp_path))
    assert "leakage: frames with a train frame of the same episode within" in text.stdout
    assert "each rarity's split against the target" in text.stdout
    flagged = [line for line in text.stdout.splitlines() if "<- largest" in line]
    assert len(flagged) == 1 and flagged[0].startswith(worst["rarity"])


@pytest.mark.parametrize("value", ["", "1,x", "-1", "5,100000"])
def test_a_bad_leak_seconds_is_a_usage_error(bucket, value: str) -> None:
    result = run_cli("report", "--leak-seconds", value)
    assert result.exit_code == 2 and "--leak-seconds" in result.stderr


def test_after_a_stratified_sync_every_rarity_of_every_episode_is_within_one_frame(bucket, tmp_path: Path) -> None:
    from season import sheet_rows, upload_season

    pattern = ["Common", "Rare", "Common", "Trash", "Uncommon", "Common", "Legendary", "Common", "Uncommon"]
    sheets = {
        e: sheet_rows(e, [pattern[(i * 5 + n) % 9] for i in range(n)]) for e, n in (("S01E01", 37), ("S01E02", 23))
    }
    upload_season(bucket, sheets)
    assert run_cli("sync").exit_code == 0
    result = run_cli("report", "--out", str(tmp_path), "--format", "json")
    assert result.exit_code == 0, result.output
    worst = json.loads(result.stdout)["largest_episode_deviation"]

    counts = bucket_counts(bucket)
    target = {"train": 0.7, "validate": 0.2, "test": 0.1}
    deviations = {
        (e, r, d): counts[(e, d, r)] - sum(counts[(e, x, r)] for x in DATASETS) * target[d]
        for e in sheets
        for r in RARITIES
        for d in DATASETS
    }
    key = (worst["episode_id"], worst["rarity"], worst["dataset"])
    assert worst["deviation_files"] == pytest.approx(deviations[key])
    assert abs(deviations[key]) == pytest.approx(max(abs(v) for v in deviations.values()))
    assert 0 < abs(worst["deviation_files"]) < 1


def test_report_leakage_is_against_train_when_validate_comes_first(catalogue, tmp_path: Path, monkeypatch) -> None:
    # issue 21.4: the report measured train and test against the first dataset of TUTTLE_SPLIT
    monkeypatch.setenv("TUTTLE_SPLIT", "validate=0.2,train=0.7,test=0.1")
    catalogue.put(dataset_key("validate", "Rare", "TT_S01_E01_FRM-00-00-00-12"))
    result = run_cli("report", "--out", str(tmp_path), "--format", "json", "--leak-seconds", "0.5,2,10")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_dataset = frames_by_dataset(catalogue)
    leakage = {(r["dataset"], r["seconds"]): r for r in report["leakage"]}
    assert set(leakage) == {(d, s) for d in ("validate", "test") for s in (0.5, 2, 10)}
    assert report["train_dataset"] == "train"
    for (dataset, seconds), reported in leakage.items():
        leaking = brute_force_leakage(by_dataset, dataset, seconds)
        assert (reported["leaking"], reported["frames"]) == (leaking, len(by_dataset[dataset]))
    assert leakage[("validate", 0.5)]["leaking"] >= 1  # the half-second frame next to a train frame
