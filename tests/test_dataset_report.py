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
