"""Text from sheets and manifests cannot forge lines or formulas (issue 20 point 7): control characters are escaped
in every log line, message and digest email; CSV cells that a spreadsheet would run as a formula get a leading
`'` (OWASP), in --findings-out, labels.csv (S3 and DEST) and the other CSVs; the job reads its own labels.csv back
to the same values.

Through the real CLI against the moto server on loopback; the CSVs are read back with pandas.
"""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from conftest import Bucket, run_cli
from season import (
    FRAME,
    frame_number,
    manifest_entry,
    put_manifest,
    put_sheet,
    put_sources,
    row,
    sheet_csv,
)
from test_digest import inbox

E01 = "S01E01"
FORGED = "\nIMPORTANT: sign in at https://evil.example/login\r\n"
#: the hard ones: CR, ESC (a terminal's colour/cursor codes), a C1 control, U+2028, a bidi override
CONTROLS = ["\r", "\x1b[2J", "\x85", "\u2028", "\u202e"]
FORMULAS = ['=HYPERLINK("https://evil.example","x")', "=1+cmd|' /C calc'!A0", "+SUM(A1)", "-2+3", "@SUM(A1)"]


def lines_starting(text: str, word: str) -> list[str]:
    """The lines of `text` (split at every line break Python knows, U+2028 too) that start with `word`."""
    return [line for line in text.splitlines() if line.lstrip().startswith(word)]


def test_a_title_with_newlines_forges_no_line_of_the_digest_or_the_log(bucket: Bucket, account):
    good = frame_number(E01, 0)
    rows = [row(good, "Common"), row(frame_number(E01, 1), "Rare" + FORGED)]  # sheet row 3 is rejected
    put_sources(bucket, [good])
    entry = manifest_entry(E01, put_sheet(bucket, E01, sheet_csv(rows)))
    entry["google_spreadsheet_title"] = "Tuttle Twins S01E01" + FORGED + "".join(CONTROLS)
    put_manifest(bucket, "S01", [entry])
    assert run_cli("alarm", "setup", "--digest-email", "owners@example.com").exit_code == 0
    drain = inbox(account)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # a rejected row: a data finding
    [digest] = drain()
    assert "Tuttle Twins S01E01\\nIMPORTANT: sign in at https://evil.example/login\\r\\n" in digest
    assert "\\x1b[2J" in digest and "\\x85" in digest and "\\u2028" in digest and "\\u202e" in digest

    for text in (digest, result.stdout, result.stderr):
        assert lines_starting(text, "IMPORTANT") == []
        assert not any(c in text for c in ("\r", "\x1b", "\x85", "\u2028", "\u202e"))


def test_a_sheet_link_with_newlines_forges_no_line_of_the_log(bucket: Bucket):
    good = frame_number(E01, 0)
    put_sources(bucket, [good])
    entry = manifest_entry(E01, put_sheet(bucket, E01, sheet_csv([row(good, "Common")])))
    bad_link = f"/nowhere/S01E02{FORGED}" + "".join(CONTROLS) + ".csv"  # a path: kept whole in the message
    put_manifest(bucket, "S01", [entry, manifest_entry("S01E02", bad_link)])

    failed = run_cli("sync")

    assert failed.exit_code == 1, failed.output  # S01E02's sheet cannot be read: a job failure
    # said, on the line it belongs to
    assert "S01E02\\nIMPORTANT: sign in at https://evil.example/login\\r\\n\\r\\x1b[2J" in failed.stderr
    for text in (failed.stdout, failed.stderr):
        assert lines_starting(text, "IMPORTANT") == []
        assert not any(c in text for c in ("\r", "\x1b", "\x85", "\u2028", "\u202e"))


def test_findings_out_neutralises_formulas_and_escapes_control_characters(bucket: Bucket, tmp_path):
    good = frame_number(E01, 0)
    cells = [*FORMULAS, "Rare\nIMPORTANT"]
    rows = [row(good, "Common"), *(row(frame_number(E01, i + 1), value) for i, value in enumerate(cells))]
    put_sources(bucket, [good])
    put_manifest(bucket, "S01", [manifest_entry(E01, put_sheet(bucket, E01, sheet_csv(rows)))])
    out = tmp_path / "findings.csv"

    result = run_cli("sync", "--dry-run", "--findings-out", str(out))

    assert result.exit_code == 0, result.output
    findings = pd.read_csv(out, dtype=str, keep_default_na=False)
    values = findings.loc[findings["kind"] == "rejected row", "value"].tolist()
    assert values == [*("'" + f for f in FORMULAS), "Rare\\nIMPORTANT"]
    assert not findings.map(lambda cell: str(cell).startswith(("=", "+", "-", "@", "\t", "\r"))).any().any()
    assert "\n" not in "".join(findings["value"]) and len(findings) == len(cells)


def test_labels_csv_neutralises_formulas_and_reads_back_to_the_same_values(bucket: Bucket, tmp_path):
    metadata = [*FORMULAS, "'quoted already", "-dash; legitimately", "[Emily,\nSpace Tunnel]", "[Ethan]"]
    rows = [row(frame_number(E01, i), "Common", METADATA=text) for i, text in enumerate(metadata)]
    put_sources(bucket, [r[FRAME] for r in rows])
    location = put_sheet(bucket, E01, sheet_csv(rows))
    put_manifest(bucket, "S01", [manifest_entry(E01, location)])

    assert run_cli("sync").exit_code == 0
    labels = pd.read_csv(io.BytesIO(bucket.get("tuttle_twins/ML/labels.csv")), dtype=str, keep_default_na=False)
    parquet = pd.read_parquet(io.BytesIO(bucket.get("tuttle_twins/ML/labels.parquet")))
    by_frame = dict(zip(labels["frame"], labels["metadata"], strict=True))
    exact = dict(zip(parquet["frame"], parquet["metadata"], strict=True))
    for index, text in enumerate(metadata):
        frame = frame_number(E01, index)
        assert exact[frame] == text  # the Parquet holds the values as they are
        expected = "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r", "'")) else text
        assert by_frame[frame] == expected
    assert not labels.map(lambda cell: cell.startswith(("=", "+", "-", "@", "\t", "\r"))).any().any()

    # the job reads its own labels.csv back: the metadata of frames no sheet gives this run is carried from it
    before = bucket.get("tuttle_twins/ML/labels.csv")
    put_manifest(bucket, "S01", [manifest_entry(E01, location + ".gone")])  # E01's sheet not read: files kept
    again = run_cli("sync")
    assert again.exit_code == 1, again.output
    assert "labels.csv: 9 rows, unchanged" in again.stderr, again.stderr
    assert bucket.get("tuttle_twins/ML/labels.csv") == before  # the same values: each ' added once, not twice
    put_manifest(bucket, "S01", [manifest_entry(E01, location)])

    # pull reads it too and writes DEST/labels.csv neutralised once, DEST/labels.parquet exact
    dest = tmp_path / "dest"
    pulled = run_cli("pull", "--dataset", "train", "--dataset", "validate", "--dataset", "test", "--dest", str(dest))
    assert pulled.exit_code == 0, pulled.output
    local = pd.read_csv(dest / "labels.csv", dtype=str, keep_default_na=False)
    local_parquet = pd.read_parquet(dest / "labels.parquet")
    assert dict(zip(local["frame"], local["metadata"], strict=True)) == by_frame
    assert dict(zip(local_parquet["frame"], local_parquet["metadata"], strict=True)) == exact


@pytest.mark.parametrize("text", ["a\nb", "\x1b[31mred", "x\u2028y", "\u202eevil", "tab\there", "\x00\x7f\x9f"])
def test_escape_control_leaves_one_visible_line(text):
    from tuttle_prep.core.text import escape_control

    escaped = escape_control(text)
    assert escaped.isprintable() and len(escaped.splitlines()) == 1
    assert json.dumps(escaped)  # plain text


def test_csv_safe_neutralises_every_formula_start_and_keeps_numbers():
    from tuttle_prep.core.text import csv_data_read, csv_data_safe, csv_safe

    texts = [*FORMULAS, "\tTAB", "\r=CR", "plain", "'quote"]
    table = pd.DataFrame({"text": texts, "n": [-1] * len(texts)})
    safe = csv_safe(table)
    # a tab or CR is escaped first: the cell then starts with a backslash, which no spreadsheet runs
    assert safe["text"].tolist() == [*("'" + f for f in FORMULAS), "\\tTAB", "\\r=CR", "plain", "'quote"]
    assert safe["n"].tolist() == table["n"].tolist()  # a negative number is a number, not a formula
    data = table[table["text"] != "\r=CR"]  # (a bare CR is not quoted by the csv module with "\n" line ends)
    written = csv_data_safe(data).to_csv(index=False, lineterminator="\n")
    assert "\n'=1+cmd" in written and "\n''quote" in written
    back = csv_data_read(pd.read_csv(io.StringIO(written), dtype={"text": str}, keep_default_na=False))
    assert back["text"].tolist() == data["text"].tolist()



#: a formula after leading blanks: spreadsheets (LibreOffice, Google Sheets on import) skip them and run it. Sheet
#: cells are stripped when read, but a version object (versions diff --out) or a future column may keep them.
SPACED = [' =HYPERLINK("https://evil.example","x")', "  @SUM(A1)", "\u00a0+1+cmd|' /C calc'!A0", " \u3000-2+3"]


def test_formulas_after_leading_blanks_are_neutralised_and_read_back_intact():
    from tuttle_prep.core.text import csv_cell, csv_data_read, csv_data_safe, csv_safe

    assert [csv_cell(text) for text in SPACED] == ["'" + text for text in SPACED]
    texts = [*SPACED, " plain", " 'quote"]
    table = pd.DataFrame({"text": texts})
    assert csv_safe(table)["text"].tolist() == [*("'" + text for text in SPACED), " plain", " 'quote"]
    written = csv_data_safe(table).to_csv(index=False, lineterminator="\n")
    read = pd.read_csv(io.StringIO(written), dtype=str, keep_default_na=False)
    assert read["text"].tolist()[: len(SPACED)] == ["'" + text for text in SPACED]
    assert csv_data_read(read)["text"].tolist() == texts
