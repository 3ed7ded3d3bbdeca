"""A manifest never makes the job read a host file (issue 20 point 6): local sheets are read only from under
TUTTLE_LOCAL_SHEETS_DIR, resolved (symlinks, `..`); an unreadable header is quoted only by its name-like cells.

Each case runs the real CLI against the moto server on loopback and asserts the bucket's final state; that the
host file is never opened is checked by a spy on `io.open` and `os.open` (the tests run as root, so file
permissions cannot show it).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import Bucket, run_cli
from season import (
    dataset_keys,
    manifest_entry,
    put_manifest,
    put_sheet,
    put_sources,
    sheet_csv,
    sheet_rows,
)

E01, E02 = "S01E01", "S01E02"
HOST_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYhostSECRET"
HOST_TEXT = f"AWS_SECRET_ACCESS_KEY={HOST_SECRET}\nAWS_ACCESS_KEY_ID=AKIAHOSTFILE0000\n"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the process opens (through `io.open`, which `Path.read_bytes` uses, or `os.open`)."""
    paths: list[str] = []
    real_io_open, real_os_open = io.open, os.open

    def io_open(file, *args, **kwargs):  # noqa: ANN001, ANN202 - io.open's own signature
        paths.append(os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else repr(file))
        return real_io_open(file, *args, **kwargs)

    def os_open(path, *args, **kwargs):  # noqa: ANN001, ANN202
        paths.append(os.fsdecode(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(io, "open", io_open)
    monkeypatch.setattr(os, "open", os_open)
    return paths


def host_file(tmp_path: Path) -> Path:
    """A host `.env` with an AWS secret, outside any sheets folder."""
    path = tmp_path / "host" / "host.env"
    path.parent.mkdir()
    path.write_text(HOST_TEXT, encoding="utf-8")
    return path


def season_with_a_host_link(bucket: Bucket, link: str) -> dict[str, tuple[str, str]]:
    """E01 from S3 (read as usual), E02 linking `link`; both synced once before (E02's files placed)."""
    rows = {E01: sheet_rows(E01, ["Common", "Rare"]), E02: sheet_rows(E02, ["Common", "Trash", "Rare"])}
    put_sources(bucket, [r["FRAME NUMBER"] for episode in rows.values() for r in episode])
    e01 = put_sheet(bucket, E01, rows[E01])
    e02 = put_sheet(bucket, E02, rows[E02])
    put_manifest(bucket, "S01", [manifest_entry(E01, e01), manifest_entry(E02, e02)])
    first = run_cli("sync")
    assert first.exit_code == 0, first.output
    placed = dataset_keys(bucket)
    assert len(placed) == 5
    put_manifest(bucket, "S01", [manifest_entry(E01, e01), manifest_entry(E02, link)])
    return placed


def assert_never_shown(result, tmp_path: Path) -> None:
    """The host file's text is in no output of the run, nor in the findings it wrote."""
    findings = tmp_path / "findings.csv"
    texts = [result.stdout, result.stderr, findings.read_text(encoding="utf-8") if findings.exists() else ""]
    for text in texts:
        assert HOST_SECRET not in text and "AWS_SECRET_ACCESS_KEY" not in text and "AKIAHOSTFILE" not in text


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_without_the_setting_a_manifest_naming_a_host_file_is_a_sheet_not_read_and_never_opened(
    bucket: Bucket, tmp_path: Path, opened: list[str], form: str
):
    secret_file = host_file(tmp_path)
    link = str(secret_file) if form == "path" else secret_file.as_uri()
    placed = season_with_a_host_link(bucket, link)
    opened.clear()

    result = run_cli("sync", "--findings-out", str(tmp_path / "findings.csv"))

    assert result.exit_code == 1, result.output  # a job failure, as every sheet the job cannot read
    assert str(secret_file) not in opened
    assert f"S01-episodes.json: episode {E02}: '{link}' is a local sheet path" in result.output
    assert "TUTTLE_LOCAL_SHEETS_DIR is not set (the file is not read)" in result.output
    assert_never_shown(result, tmp_path)
    assert dataset_keys(bucket) == placed  # E02's files kept as they are, E01 unchanged


@pytest.mark.parametrize("escape", ["dotdot", "symlink", "symlinked-folder"])
def test_a_link_that_leaves_the_sheets_folder_once_resolved_is_never_opened(
    bucket: Bucket, tmp_path: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch, escape: str
):
    secret_file = host_file(tmp_path)
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    monkeypatch.setenv("TUTTLE_LOCAL_SHEETS_DIR", str(sheets))
    if escape == "dotdot":
        link = f"{sheets}/../host/host.env"
    elif escape == "symlink":
        (sheets / "S01E02.csv").symlink_to(secret_file)
        link = str(sheets / "S01E02.csv")
    else:
        (sheets / "exports").symlink_to(secret_file.parent, target_is_directory=True)
        link = (sheets / "exports" / "host.env").as_uri()
    placed = season_with_a_host_link(bucket, link)
    opened.clear()

    result = run_cli("sync", "--findings-out", str(tmp_path / "findings.csv"))

    assert result.exit_code == 1, result.output
    assert str(secret_file) not in opened and not any(p.endswith("host.env") for p in opened)
    assert f"episode {E02}: '{link}' is a local sheet path outside TUTTLE_LOCAL_SHEETS_DIR ({sheets})" in result.output
    assert_never_shown(result, tmp_path)
    assert dataset_keys(bucket) == placed


def test_a_local_sheet_under_the_sheets_folder_is_read(bucket: Bucket, tmp_path: Path, monkeypatch):
    sheets = tmp_path / "sheets"
    (sheets / "s01").mkdir(parents=True)
    monkeypatch.setenv("TUTTLE_LOCAL_SHEETS_DIR", str(sheets))
    rows = sheet_rows(E01, ["Common", "Rare", "Legendary"])
    (sheets / "s01" / "S01E01.csv").write_bytes(sheet_csv(rows))
    put_sources(bucket, [r["FRAME NUMBER"] for r in rows])
    # a relative path is taken from the sheets folder, whatever the current folder is (cron's is $HOME);
    # `..` that stays inside is fine
    put_manifest(bucket, "S01", [manifest_entry(E01, "s01/../s01/S01E01.csv")])
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    assert set(dataset_keys(bucket)) == {r["FRAME NUMBER"] for r in rows}


def test_a_relative_sheet_path_that_leaves_the_sheets_folder_is_never_opened(
    bucket: Bucket, tmp_path: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch
):
    secret_file = host_file(tmp_path)
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    monkeypatch.setenv("TUTTLE_LOCAL_SHEETS_DIR", str(sheets))
    monkeypatch.chdir(secret_file.parent)  # the current folder holds the file: a path from it must not count
    link = "host.env"
    placed = season_with_a_host_link(bucket, link)
    opened.clear()

    result = run_cli("sync")

    assert result.exit_code == 1, result.output
    assert not any(p.endswith("host.env") for p in opened)
    assert dataset_keys(bucket) == placed


def test_a_sheets_folder_that_does_not_exist_is_a_configuration_error(bucket: Bucket, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TUTTLE_LOCAL_SHEETS_DIR", str(tmp_path / "nowhere"))

    result = run_cli("sync", "--dry-run")

    assert result.exit_code == 2, result.output
    assert "TUTTLE_LOCAL_SHEETS_DIR" in result.output and "does not exist" in result.output


def test_manifests_validate_looks_at_no_host_file(tmp_path: Path, opened: list[str]):
    secret_file = host_file(tmp_path)
    folder = tmp_path / "manifests"
    folder.mkdir()
    entries = [manifest_entry(E01, str(secret_file)), manifest_entry(E02, secret_file.as_uri())]
    (folder / "S01-episodes.json").write_text(pd.Series(entries).to_json(orient="values"), encoding="utf-8")
    opened.clear()

    result = run_cli("manifests", "validate", "--check-sheets", str(folder))

    assert result.exit_code == 1, result.output
    assert str(secret_file) not in opened
    assert result.output.count("TUTTLE_LOCAL_SHEETS_DIR is not set (the file is not read)") == 2
    assert_never_shown(result, tmp_path)


# ---- a header the job cannot use is quoted only by the cells that look like column names ---------------------


@pytest.mark.parametrize(
    "first_line",
    [
        f"AWS_SECRET_ACCESS_KEY={HOST_SECRET}",
        f"root:x:0:0:root:/root:/bin/bash,AWS_SECRET_ACCESS_KEY,{HOST_SECRET}",
    ],
)
def test_an_unusable_header_quotes_only_short_name_like_cells(bucket: Bucket, tmp_path: Path, first_line: str):
    rows = sheet_rows(E01, ["Common"])
    put_sources(bucket, [rows[0]["FRAME NUMBER"]])
    location = put_sheet(bucket, E01, f"{first_line}\nAKIAHOSTFILE0000,x\n".encode())
    put_manifest(bucket, "S01", [manifest_entry(E01, location)])

    result = run_cli("sync", "--dry-run", "--findings-out", str(tmp_path / "findings.csv"))

    assert result.exit_code == 0, result.output  # a sheet read but not usable: a data finding
    assert "no 'FRAME NUMBER' column in the header row" in result.output
    findings_text = (tmp_path / "findings.csv").read_text(encoding="utf-8")
    for text in (result.stdout, result.stderr, findings_text):  # a cell named like a variable may be, its value never
        assert HOST_SECRET not in text and "root:x:0:0" not in text and "AKIAHOSTFILE" not in text
    findings = pd.read_csv(tmp_path / "findings.csv", dtype=str, keep_default_na=False)
    assert (findings["kind"] == "sheet skipped").all() and len(findings) == 1


def test_a_header_quote_is_cut_to_a_few_dozen_characters():
    from tuttle_prep.core.text import HEADER_QUOTE_CHARS, quote_header

    header = ["ROW_INDEX", "FRAME", *[f"COLUMN {i}" for i in range(30)], "a=b", "x" * 40, "bad\nname"]
    quoted = quote_header(header)

    assert quoted.startswith("'ROW_INDEX', 'FRAME', 'COLUMN 0'")
    assert len(quoted.split(" (and ")[0]) <= HEADER_QUOTE_CHARS
    assert quoted.endswith(f"(and {len(header) - quoted.count(chr(39)) // 2} more cells not shown)")
    assert "a=b" not in quoted and "xxxx" not in quoted and "bad" not in quoted
