"""`manifests validate | push | list` through the click group, against moto server and the fake Google API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fake_google import SERVICE_ACCOUNT_EMAIL, FakeGoogle
from season import sheet_csv

from tuttle_prep.commands.manifests import _remote_matches, manifests, md5_hex, validate_files

PREFIX = "tuttle_twins/manifests/"
HEADER = ["ROW_INDEX", "FRAME NUMBER", "UNSUPERVISED CLASSIFICATION", "SUPERVISED CLASSIFICATION", "METADATA"]


def key(n: int) -> str:
    return f"1mf{n:02d}" + "Ab-c_" * 7 + "wxyz"


def link(n: int) -> str:
    return f"https://docs.google.com/spreadsheets/d/{key(n)}/edit?usp=sharing"


def entry(episode_id: str, location: str, title: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "season_code": episode_id[:3],
        "episode_code": episode_id[3:],
        "google_spreadsheet_title": title or f"Tuttle Twins {episode_id} Unsupervised Clustering",
        "google_spreadsheet_share_link": location,
        **extra,
    }


def write(folder: Path, name: str, content: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(manifests, list(args), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A manifests folder with two good seasons."""
    folder = tmp_path / "manifests"
    write(folder, "S01-episodes.json", [entry("S01E01", link(1)), entry("S01E02", link(2))])
    write(folder, "S02-episodes.json", [entry("S02E01", link(3))])
    return folder


@pytest.fixture
def fake(fake_google: FakeGoogle) -> FakeGoogle:
    return fake_google


# ---------------------------------------------------------------------------------------- validate
def test_validate_a_clean_folder(folder: Path) -> None:
    result = invoke("validate", str(folder))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2 manifest files, 3 episodes: OK"


def test_validate_defaults_to_the_manifests_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder.parent)
    assert invoke("validate").output.strip() == "2 manifest files, 3 episodes: OK"


def test_validate_reports_json_keys_codes_and_duplicates(folder: Path) -> None:
    write(folder, "S03-episodes.json", '[{"season_code": "S03", "episode_code": "E01",}]')
    write(folder, "S04-episodes.json", [{"season_code": "S04", "google_spreadsheet_share_link": link(4)}])
    write(folder, "S05-episodes.json", [entry("S05E1", link(5)), entry("S01E02", link(6))])
    result = invoke("validate", str(folder))
    assert result.exit_code == 1
    out = result.output
    assert "ERROR: S03-episodes.json: not valid JSON (line 1, column 47): Expecting property name" in out
    assert "ERROR: S04-episodes.json: episode #1: missing key 'episode_code'" in out
    assert "ERROR: S05-episodes.json: episode S05E1: episode_code 'E1' is not like 'E01'" in out
    assert "ERROR: S05-episodes.json: episode S01E02 repeats an episode already in S01-episodes.json" in out
    assert out.strip().endswith("5 manifest files, 3 episodes: 4 error(s), 1 warning(s)")  # + season mismatch


def test_validate_checks_link_forms(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    published = "https://docs.google.com/spreadsheets/d/e/2PACX-1vT3xampleXampleXample/pubhtml"
    document = f"https://docs.google.com/document/d/{key(2)}/edit"
    write(
        folder,
        "S01-episodes.json",
        [
            entry("S01E01", published),
            entry("S01E02", document),
            entry("S01E03", link(3), google_spreadsheet_url=link(4).replace("?usp=sharing", "#gid=0")),
            entry("S01E04", link(5), google_spreadsheet_url="ftp://example.com/sheet"),
            entry("S01E05", "ftp://example.com/sheet"),
        ],
    )
    out = invoke("validate", str(folder)).output
    assert "S01E01: google_spreadsheet_share_link '" + published + "' is a 'Publish to web' link" in out
    assert (
        "S01E02: google_spreadsheet_share_link '" + document + "' is a Google Docs link but not to a spreadsheet" in out
    )
    different = "google_spreadsheet_share_link and google_spreadsheet_url point at different spreadsheets"
    assert f"S01E03: {different} ({key(3)} and {key(4)})" in out
    assert "S01E04: google_spreadsheet_url 'ftp://example.com/sheet' is not a Google Sheets link" in out
    assert out.count("ftp://example.com/sheet") == 2  # the S01E05 one reported once, by the parser
    assert "5 error(s)" in out


def test_validate_warnings_do_not_fail(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write(
        folder,
        "S01-episodes.json",
        [
            entry("S01E01", link(1), google_spreadsheet_sharelink="typo"),
            entry("S02E01", link(2)),  # in S01's file
            entry("S01E02", key(1)),  # bare key, and the same sheet as S01E01
        ],
    )
    write(folder, "S02-episode.json", [])
    result = invoke("validate", str(folder))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "warning: S02-episode.json: ignored, the name does not end in '-episodes.json'" in out
    assert "warning: S01-episodes.json: episode S01E01: unknown key 'google_spreadsheet_sharelink' is ignored" in out
    assert "warning: S01-episodes.json: episode S02E01: season_code 'S02' in a file named for season S01" in out
    assert "warning: S01-episodes.json: episode S01E02: google_spreadsheet_share_link is a bare spreadsheet id" in out
    assert f"warning: episodes S01E01, S01E02 link the same spreadsheet ({key(1)})" in out
    assert out.strip().endswith("1 manifest file, 3 episodes: OK (5 warning(s))")


def test_validate_missing_or_empty_folder(tmp_path: Path) -> None:
    result = invoke("validate", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.output.strip() == f"configuration error: manifests folder {tmp_path / 'nowhere'} does not exist"
    result = invoke("validate", str(tmp_path))
    assert result.exit_code == 1
    assert f"ERROR: no manifest files (*-episodes.json) in {tmp_path}" in result.output


def test_validate_files_is_pure() -> None:
    found = validate_files([("S01-episodes.json", json.dumps([entry("S01E01", link(1))]).encode())])
    assert found.ok and [e.episode_id for e in found.episodes] == ["S01E01"] and not found.warnings


# ---------------------------------------------------------------------------------- check-sheets
def test_check_sheets_without_key_file_is_a_config_error(folder: Path) -> None:
    result = invoke("validate", "--check-sheets", str(folder))
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "GOOGLE_DRIVE_CREDENTIALS_FILE is not set" in result.output


def test_check_sheets_opens_every_sheet(fake: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = [HEADER[:1] + [" Frame Number "] + HEADER[2:], ["0", "TT_S01_E01_FRM-00-00-00-00", "Rare", "", ""]]
    fake.add_sheet(key(1), good, title="Tuttle Twins S01E01 Unsupervised Clustering")
    fake.add_sheet(key(2), [HEADER], status=403)
    fake.add_sheet(key(3), [["ROW_INDEX", "FRAME_NO", "SUPERVISED CLASSIFICATION"], ["0", "x", "Rare"]])
    bad_rows = [
        HEADER,
        ["0", "TT_S01_E04_FRM-00-00-00-00", "Epic", "", ""],
        ["1", "TT_S01_E04_FRM-00-00-00-01", "Rare"],
    ]
    fake.add_sheet(key(4), bad_rows, title="Copy of Tuttle Twins S01E09")
    folder = tmp_path / "m"
    write(folder, "S01-episodes.json", [entry(f"S01E0{n}", link(n)) for n in range(1, 5)])
    monkeypatch.setenv("GOOGLE_DRIVE_CREDENTIALS_FILE", str(fake.key_file(tmp_path)))
    monkeypatch.setenv("TUTTLE_GOOGLE_API_URL", fake.url)

    result = invoke("validate", "--check-sheets", str(folder))

    assert result.exit_code == 1
    out = result.output
    assert "sheet  S01E01: 1 rows, 1 classified frames, 0 unclassified, 0 rejected" in out
    assert "ERROR: S01-episodes.json: episode S01E02: Google sheet 'Tuttle Twins S01E02" in out
    assert SERVICE_ACCOUNT_EMAIL in out and "no access (403)" in out
    assert "ERROR: S01-episodes.json: episode S01E03: the header has no 'FRAME NUMBER' column" in out
    assert "the sheet is titled 'Copy of Tuttle Twins S01E09' but google_spreadsheet_title says" in out
    assert "S01E04: sync would reject 1 rows, e.g. row 2 UNSUPERVISED CLASSIFICATION: 'Epic'" in out
    assert "4 episodes: 2 error(s)" in out


def test_check_sheets_reads_csv_exports_without_google(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUTTLE_LOCAL_SHEETS_DIR", str(tmp_path))
    csv_path = tmp_path / "S01E01.csv"
    csv_path.write_bytes(
        sheet_csv([{"FRAME NUMBER": "TT_S01_E01_FRM-00-00-00-00", "SUPERVISED CLASSIFICATION": "Rare"}])
    )
    bad_path = tmp_path / "S01E02.csv"
    bad_path.write_text("ROW_INDEX,FRAME\n0,x\n", encoding="utf-8")
    write(tmp_path / "m", "S01-episodes.json", [entry("S01E01", str(csv_path)), entry("S01E02", bad_path.as_uri())])
    result = invoke("validate", "--check-sheets", str(tmp_path / "m"))
    assert result.exit_code == 1
    assert "sheet  S01E01: 1 rows, 1 classified frames" in result.output
    assert "S01E02: the header has no 'FRAME NUMBER' column (header: 'ROW_INDEX', 'FRAME')" in result.output


def test_check_sheets_reports_a_renamed_rarity_header_as_sync_would(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUTTLE_LOCAL_SHEETS_DIR", str(tmp_path))
    csv_path = tmp_path / "S01E01.csv"
    csv_path.write_text(
        "FRAME NUMBER,SUPERVISED CLASSIFICATION,JONNY RECLASSIFICATION\nTT_S01_E01_FRM-00-00-00-00,Rare,Trash\n",
        encoding="utf-8",
    )
    write(tmp_path / "m", "S01-episodes.json", [entry("S01E01", str(csv_path))])

    result = invoke("validate", "--check-sheets", str(tmp_path / "m"))
    assert result.exit_code == 1
    assert "header 'JONNY RECLASSIFICATION' (column C) looks like a renamed 'JONNY's RECLASSIFICATION'" in result.output
    assert "Traceback" not in result.output

    monkeypatch.setenv("TUTTLE_SHEET_OPTIONAL_COLUMNS", "JONNY's RECLASSIFICATION")
    result = invoke("validate", "--check-sheets", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output


# -------------------------------------------------------------------------------------------- push
def test_push_uploads_only_what_changed(folder: Path, bucket) -> None:
    result = invoke("push", str(folder))
    assert result.exit_code == 0, result.output
    assert "uploaded  S01-episodes.json" in result.output and "uploaded  S02-episodes.json" in result.output
    assert bucket.get(PREFIX + "S01-episodes.json") == (folder / "S01-episodes.json").read_bytes()
    head = bucket.client.head_object(Bucket=bucket.name, Key=PREFIX + "S01-episodes.json")
    assert head["ContentType"] == "application/json"
    before = bucket.etags(PREFIX)

    result = invoke("push", str(folder))
    assert result.exit_code == 0
    assert "unchanged  S01-episodes.json" in result.output and "0 uploaded, 2 unchanged" in result.output
    assert bucket.etags(PREFIX) == before  # not re-uploaded: same ETag and LastModified

    write(folder, "S02-episodes.json", [entry("S02E01", link(3)), entry("S02E02", link(7))])
    bucket.put(PREFIX + "S09-episodes.json", "[]")
    result = invoke("push", str(folder))
    assert result.exit_code == 0
    assert "uploaded  S02-episodes.json" in result.output and "unchanged  S01-episodes.json" in result.output
    assert f"only in S3 (left alone; --delete-missing deletes it)  {PREFIX}S09-episodes.json" in result.output
    after = bucket.etags(PREFIX)
    assert after[PREFIX + "S01-episodes.json"] == before[PREFIX + "S01-episodes.json"]
    assert after[PREFIX + "S02-episodes.json"] != before[PREFIX + "S02-episodes.json"]
    assert json.loads(bucket.get(PREFIX + "S02-episodes.json"))[1]["episode_code"] == "E02"


def test_push_uploads_nothing_when_a_file_has_errors(folder: Path, bucket) -> None:
    write(folder, "S03-episodes.json", '{"season_code": "S03"}')
    result = invoke("push", str(folder))
    assert result.exit_code == 1
    assert "ERROR: S03-episodes.json: expected a JSON list of episodes, found a dict" in result.output
    assert "nothing uploaded" in result.output
    assert bucket.keys(PREFIX) == set()


def test_push_dry_run_uploads_nothing(folder: Path, bucket) -> None:
    result = invoke("push", "--dry-run", str(folder))
    assert result.exit_code == 0
    assert "would upload  S01-episodes.json" in result.output and "2 would upload, 0 unchanged" in result.output
    assert bucket.keys(PREFIX) == set()


def test_push_honours_the_manifests_prefix(folder: Path, bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTTLE_MANIFESTS_PREFIX", "/staging/manifests")
    assert invoke("push", str(folder)).exit_code == 0
    assert bucket.keys("staging/") == {"staging/manifests/S01-episodes.json", "staging/manifests/S02-episodes.json"}


def test_push_to_a_missing_bucket_is_a_config_error(folder: Path, bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUTTLE_BUCKET", bucket.name + "-missing")
    result = invoke("push", str(folder))
    assert result.exit_code == 2
    assert "does not exist (check TUTTLE_BUCKET)" in result.output


class _StubS3:
    """An object whose ETag is not its MD5 (SSE-KMS, multipart uploads)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.gets = 0

    def head_object(self, **_: Any) -> dict[str, Any]:
        return {"ETag": '"0123456789abcdef0123456789abcdef-2"', "ContentLength": len(self.body)}

    def get_object(self, **_: Any) -> dict[str, Any]:
        self.gets += 1
        return {"Body": type("Body", (), {"read": lambda _self: self.body})()}


def test_remote_comparison_falls_back_to_bytes_when_the_etag_is_not_an_md5() -> None:
    data = b'[{"season_code": "S01"}]'
    stub = _StubS3(data)
    assert _remote_matches(stub, "b", "k", data) is True and stub.gets == 1
    assert _remote_matches(stub, "b", "k", data[:-1] + b"}") is False
    assert _remote_matches(stub, "b", "k", data + b"\n") is False and stub.gets == 2  # size differs: no download
    assert md5_hex(b"") == "d41d8cd98f00b204e9800998ecf8427e"


# -------------------------------------------------------------------------------------------- list
def test_list_shows_seasons_episodes_and_titles(folder: Path, bucket) -> None:
    invoke("push", str(folder))
    result = invoke("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"s3://{bucket.name}/{PREFIX}"
    assert lines[1].startswith(PREFIX + "S01-episodes.json  season S01: 2 episodes, updated ")
    assert lines[2:4] == [
        "  S01E01  Tuttle Twins S01E01 Unsupervised Clustering",
        "  S01E02  Tuttle Twins S01E02 Unsupervised Clustering",
    ]
    assert lines[4].startswith(PREFIX + "S02-episodes.json  season S02: 1 episode, updated ")
    assert lines[-1] == "2 manifest files, 3 episodes"


def test_list_reports_broken_files(bucket) -> None:
    bucket.put(PREFIX + "S01-episodes.json", json.dumps([entry("S01E01", link(1))]))
    bucket.put(PREFIX + "S02-episodes.json", "[{")
    bucket.put(PREFIX + "README.txt", "not a manifest")
    result = invoke("list")
    assert result.exit_code == 1
    assert f"  ERROR: s3://{bucket.name}/{PREFIX}S02-episodes.json: not valid JSON" in result.output
    assert "README" not in result.output
    assert result.output.splitlines()[-1] == "2 manifest files, 1 episode, 1 error(s)"


def test_list_with_no_manifests(bucket) -> None:
    result = invoke("list")
    assert result.exit_code == 1
    assert result.output.strip() == f"s3://{bucket.name}/{PREFIX}: no manifest files (*-episodes.json)"
