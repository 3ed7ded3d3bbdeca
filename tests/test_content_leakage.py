"""`report`'s content leakage (issue 25): real JPEG sources with known near-duplicate groups, on moto server.

A title picture in both episodes (re-encoded in some frames), a shot re-encoded and cropped by 3 pixels within
an episode, and truly different pictures elsewhere. `sync` places the frames (its split) and keeps their
hashes; the report must count, for each validate/test frame, a near-duplicate in train exactly as the known
groups and the bucket's placement say: within its episode, across episodes, per rarity.
"""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_cli
from pictures import LAYOUT, upload_leaky_season
from PIL import Image
from season import dataset_keys, frame_number

from tuttle_prep.core.frame_table import RARITIES


@pytest.fixture
def leaky_season(bucket, monkeypatch):
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "on")
    upload_leaky_season(bucket)
    assert run_cli("sync").exit_code == 0
    return bucket


def expected_counts(bucket) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(dataset, scope, rarity) -> (frames, leaking), from the known groups and the bucket's placement."""
    placed = dataset_keys(bucket)
    group = {frame_number(e, i): (g, e) for (e, i), (g, _, _) in LAYOUT.items()}
    train = [(group[f], f) for f, (d, _) in placed.items() if d == "train"]
    counts: dict[tuple[str, str, str], list[int]] = {}
    for frame, (dataset, rarity) in placed.items():
        if dataset == "train":
            continue
        g, episode = group[frame]
        within = any(tg == g and te == episode for (tg, te), _ in train)
        across = any(tg == g and te != episode for (tg, te), _ in train)
        for scope, leaks in (("any", within or across), ("within", within), ("across", across)):
            for r in ("all", rarity):
                cell = counts.setdefault((dataset, scope, r), [0, 0])
                cell[0] += 1
                cell[1] += int(leaks)
    return {key: (n, leaking) for key, (n, leaking) in counts.items()}


def test_report_counts_content_leakage_exactly_and_draws_the_worst_clusters(leaky_season, tmp_path) -> None:
    out, sheet = tmp_path / "out", tmp_path / "leaks.png"
    result = run_cli("report", "--out", str(out), "--format", "json", "--contact-sheet", str(sheet))
    assert result.exit_code == 0, result.output
    content = json.loads(result.stdout)["content_leakage"]
    assert content["hashed_frames"] == content["frames"] == len(LAYOUT)
    got = {(r["dataset"], r["scope"], r["rarity"]): (r["frames"], r["leaking"]) for r in content["table"]}
    expected = expected_counts(leaky_season)
    assert sum(leaking for (_, scope, r), (_, leaking) in expected.items() if scope == "any" and r == "all") > 0
    for key in {*got, *expected}:
        assert got.get(key, (0, 0)) == expected.get(key, (0, 0)), key
    assert {r for _, _, r in got} == {"all", *RARITIES}

    with (out / "content_leakage.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {(r["dataset"], r["scope"], r["rarity"]): (int(r["frames"]), int(r["leaking"])) for r in rows} == got

    with Image.open(sheet) as image:  # a real PNG with one row of thumbnails per leak cluster
        assert image.format == "PNG" and image.width >= 192 and image.height >= 108


def test_the_contact_sheet_is_written_only_when_asked_and_the_text_shows_the_scopes(leaky_season, tmp_path) -> None:
    result = run_cli("report", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "content leakage (a train frame within 6 bits of dHash" in result.output
    assert "within" in result.output and "across" in result.output
    assert not list(tmp_path.glob("*leak*.png")) and (tmp_path / "content_leakage.csv").exists()
