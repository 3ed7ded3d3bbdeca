"""Season manifests: every problem reported by file and key, good episodes kept."""

from __future__ import annotations

import json

import pytest

from tuttle_prep.core.manifests import collect_episodes, filter_episodes, parse_manifest

GOOGLE = "https://docs.google.com/spreadsheets/d/1cr_rXVh0eZZ4aLtFKb5dw8jfBtksRezhY1X5ys6FckI/edit?usp=sharing"


def entry(season: str = "S01", episode: str = "E01", **extra: str) -> dict[str, str]:
    return {"season_code": season, "episode_code": episode, "google_spreadsheet_share_link": GOOGLE, **extra}


def manifest(*entries: object) -> bytes:
    return json.dumps(list(entries)).encode()


def test_a_good_manifest():
    episodes, errors = parse_manifest(
        manifest(entry(google_spreadsheet_title="Tuttle Twins S01E01"), entry(episode="E02")), "S01-episodes.json"
    )
    assert errors == []
    assert [e.episode_id for e in episodes] == ["S01E01", "S01E02"]
    assert episodes[0].sheet_location == GOOGLE and episodes[0].title == "Tuttle Twins S01E01"
    assert episodes[0].manifest == "S01-episodes.json"


def test_share_link_is_preferred_and_url_is_the_fallback():
    url = "s3://bucket/sheets/S01E01.csv"
    both = entry(google_spreadsheet_url=url)
    only_url = {"season_code": "S01", "episode_code": "E02", "google_spreadsheet_url": url}
    blank_link = entry(episode="E03", google_spreadsheet_url=url) | {"google_spreadsheet_share_link": " "}
    episodes, errors = parse_manifest(manifest(both, only_url, blank_link), "m.json")
    assert errors == []
    assert [e.sheet_location for e in episodes] == [GOOGLE, url, url]


def test_invalid_json_names_the_file_and_where():
    episodes, errors = parse_manifest(b'[{"season_code": "S01",', "S02-episodes.json")
    assert episodes == []
    assert len(errors) == 1 and errors[0].startswith("S02-episodes.json: not valid JSON (line 1")


def test_not_a_list():
    _, errors = parse_manifest(b'{"season_code": "S01"}', "x.json")
    assert errors == ["x.json: expected a JSON list of episodes, found a dict"]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"episode_code": "E02", "google_spreadsheet_url": GOOGLE}, "'season_code'"),
        ({"season_code": "S01", "google_spreadsheet_url": GOOGLE}, "'episode_code'"),
        ({"season_code": "S01", "episode_code": "E02"}, "google_spreadsheet_share_link or google_spreadsheet_url"),
        ({"season_code": "S01", "episode_code": "", "google_spreadsheet_url": GOOGLE}, "'episode_code'"),
    ],
)
def test_missing_key_is_reported_by_file_and_key_and_other_episodes_survive(bad, named):
    episodes, errors = parse_manifest(manifest(entry(), bad, entry(episode="E03")), "S01-episodes.json")
    assert [e.episode_id for e in episodes] == ["S01E01", "S01E03"]
    assert len(errors) == 1
    assert errors[0].startswith("S01-episodes.json: episode #2: missing key") and named in errors[0]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (entry(season="Season 1"), "season_code 'Season 1'"),
        (entry(episode="1"), "episode_code '1'"),
        (entry(google_spreadsheet_share_link="ftp://host/sheet.csv"), "ftp://host/sheet.csv"),
    ],
)
def test_malformed_values_are_reported(bad, named):
    episodes, errors = parse_manifest(manifest(bad, entry(episode="E05")), "S01-episodes.json")
    assert [e.episode_id for e in episodes] == ["S01E05"]
    assert len(errors) == 1 and errors[0].startswith("S01-episodes.json: episode") and named in errors[0]


def test_codes_are_normalised_to_upper_case():
    episodes, errors = parse_manifest(manifest(entry(season="s01", episode=" e04 ")), "m.json")
    assert errors == [] and episodes[0].episode_id == "S01E04"


def test_a_repeated_episode_id_is_reported_and_the_first_kept():
    result = collect_episodes(
        [
            ("S01-episodes.json", manifest(entry(), entry(episode="E02"))),
            ("S01-copy-episodes.json", manifest(entry(episode="E02", google_spreadsheet_share_link="s3://b/k.csv"))),
            ("S02-episodes.json", manifest(entry(season="S02"), entry(season="S02"))),
        ]
    )
    assert [e.episode_id for e in result.episodes] == ["S01E01", "S01E02", "S02E01"]
    assert result.episodes[1].sheet_location == GOOGLE
    assert len(result.errors) == 2
    assert result.errors[0].startswith("S01-copy-episodes.json: episode S01E02 repeats")
    assert "S01-episodes.json" in result.errors[0]
    assert result.errors[1].startswith("S02-episodes.json: episode S02E01 repeats")
    assert result.episode_ids == {"S01E01", "S01E02", "S02E01"}


def test_a_broken_file_does_not_stop_the_others():
    result = collect_episodes([("S01-episodes.json", b"not json"), ("S02-episodes.json", manifest(entry("S02")))])
    assert [e.episode_id for e in result.episodes] == ["S02E01"]
    assert result.broken_files == ["S01-episodes.json"]
    assert len(result.errors) == 1


def test_filter_by_season_or_episode():
    episodes, _ = parse_manifest(
        manifest(entry(), entry(episode="E02"), entry(season="S02"), entry(season="S03", episode="E07")), "m.json"
    )
    assert [e.episode_id for e in filter_episodes(episodes)] == ["S01E01", "S01E02", "S02E01", "S03E07"]
    assert [e.episode_id for e in filter_episodes(episodes, seasons=["s01"])] == ["S01E01", "S01E02"]
    picked = filter_episodes(episodes, seasons=["S02"], episode_ids=["S03E07"])
    assert [e.episode_id for e in picked] == ["S02E01", "S03E07"]
