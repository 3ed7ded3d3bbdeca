"""What the sheet owners read: the digest and `--findings-out` say what stderr says, and point at the cell.

Each test runs the real CLI against the moto server, reads back the findings CSV and the digest (an SQS queue
subscribed to the digest topic receives what the email subscribers would), and checks the bucket is untouched.
"""

from __future__ import annotations

import csv
import io

from conftest import run_cli
from season import (
    HEADER,
    JONNY,
    SUPERVISED,
    dataset_keys,
    frame_number,
    put_sheet,
    row,
    sheet_csv,
    sheet_rows,
    source_key,
    upload_season,
)
from test_digest import inbox

E01, E03 = "S01E01", "S01E03"


def findings(path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_a_header_finding_names_its_column_letter_and_reason_in_the_digest_and_the_csv(
    bucket, account, tmp_path
):
    renamed = "JONNY RECLASSIFICATION"
    rows = [{**r, SUPERVISED: "Rare", JONNY: "Legendary"} for r in sheet_rows(E01, ["Common"] * 3)]
    upload_season(bucket, {E01: rows})
    header = [renamed if h == JONNY else h for h in HEADER]  # JONNY's is column F
    put_sheet(bucket, E01, sheet_csv([{renamed if k == JONNY else k: v for k, v in r.items()} for r in rows], header))
    assert run_cli("alarm", "setup", "--digest-email", "owners@example.com").exit_code == 0
    drain = inbox(account)
    out = tmp_path / "findings.csv"

    result = run_cli("sync", "--findings-out", str(out))

    assert result.exit_code == 0, result.output
    [finding] = findings(out)
    assert finding["kind"] == "sheet skipped" and finding["row"] == "1" and finding["column"] == renamed
    assert finding["reason"].startswith(f"header '{renamed}' (column F) looks like a renamed '{JONNY}'")
    assert finding["where"].endswith(", row 1, cell F1")
    [digest] = drain()
    assert f"header column '{renamed}': header '{renamed}' (column F) looks like a renamed" in digest
    assert "cell F1" in digest and "sheet not usable" not in digest
    assert dataset_keys(bucket) == {}


def test_a_lost_rarity_column_is_named_in_the_digest_and_the_csv(bucket, account, tmp_path):
    rows = [{**r, SUPERVISED: "Rare", JONNY: "Legendary"} for r in sheet_rows(E01, ["Common"] * 3)]
    upload_season(bucket, {E01: rows})
    assert run_cli("sync").exit_code == 0
    placed = dataset_keys(bucket)
    without = [{k: v for k, v in r.items() if k != JONNY} for r in rows]
    put_sheet(bucket, E01, sheet_csv(without, [h for h in HEADER if h != JONNY]))
    assert run_cli("alarm", "setup", "--digest-email", "owners@example.com").exit_code == 0
    drain = inbox(account)
    out = tmp_path / "findings.csv"

    result = run_cli("sync", "--findings-out", str(out))

    assert result.exit_code == 0, result.output
    [finding] = findings(out)
    assert (finding["kind"], finding["row"], finding["column"]) == ("sheet skipped", "1", JONNY)
    assert finding["reason"].startswith(f"no '{JONNY}' column, which earlier runs saw")
    [digest] = drain()
    assert f"no '{JONNY}' column, which earlier runs saw" in digest and "rarity column lost" not in digest
    assert dataset_keys(bucket) == placed


def test_row_findings_name_the_other_row_both_rarities_the_episode_s_own_example_and_the_missing_row(
    bucket, tmp_path
):
    good = [row(frame_number(E03, i), "Common") for i in range(3)]
    twice = frame_number(E03, 3)
    missing = frame_number(E03, 4)
    rows = [
        *good,  # sheet rows 2-4
        row(twice, "Rare"),  # row 5
        row("TT_S01_E03_FRM-00-00-99", "Rare"),  # row 6: malformed
        row(twice, "Common", jonny="Legendary"),  # row 7: the same frame, another rarity
        row(missing, "Uncommon"),  # row 8: classified, no source frame
    ]
    upload_season(bucket, {E03: rows})
    bucket.client.delete_object(Bucket=bucket.name, Key=source_key(missing))
    out = tmp_path / "findings.csv"

    result = run_cli("sync", "--findings-out", str(out))

    assert result.exit_code == 0, result.output
    by_row = {(f["kind"], f["row"]): f for f in findings(out)}
    assert by_row["rejected row", "5"]["reason"] == (
        "frame listed more than once with different rarities: this row says 'Rare', row 7 says 'Legendary'"
    )
    assert by_row["rejected row", "7"]["reason"] == (
        "frame listed more than once with different rarities: this row says 'Legendary', row 5 says 'Rare'"
    )
    assert by_row["rejected row", "6"]["reason"] == "not a frame number like TT_S01_E03_FRM-00-00-08-12"
    assert by_row["missing source", "8"]["value"] == missing
    assert "TT_S01_E01_FRM" not in out.read_text(encoding="utf-8")
    assert f"S01E03 sheet row 8: missing source frame s3://{bucket.name}/{source_key(missing)}" in result.stderr
    assert set(dataset_keys(bucket)) == {r["FRAME NUMBER"] for r in good}
