"""Job failures vs data findings, the findings table, its hash and the digest (pure: no AWS)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuttle_prep.core.findings import (
    LIST_ALL_COMMAND,
    NO_FINDINGS_HASH,
    SheetRef,
    column_letters,
    findings_hash,
    findings_table,
    render_digest,
    without_userinfo,
)
from tuttle_prep.core.frame_table import SHEET_HEADER
from tuttle_prep.core.run_report import RunReport
from tuttle_prep.edges.cloudwatch import metric_data

GOOGLE = SheetRef("https://docs.google.com/spreadsheets/d/abc/edit", "S01E01 sheet", "abc", 42, SHEET_HEADER)
CSV = SheetRef("s3://bucket/sheets/S01E02.csv", columns=SHEET_HEADER)


def rejections(episode_id: str, values: list[str], first_row: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "episode_id": episode_id,
            "row": range(first_row, first_row + len(values)),
            "column": "JONNY's RECLASSIFICATION",
            "value": values,
            "reason": "not a rarity",
            "frame": "",
        }
    )


def test_column_letters_and_cell_links():
    assert [column_letters(i) for i in (0, 1, 25, 26, 51, 701, 702)] == ["A", "B", "Z", "AA", "AZ", "ZZ", "AAA"]
    assert (
        GOOGLE.cell(7, "JONNY's RECLASSIFICATION") == "https://docs.google.com/spreadsheets/d/abc/edit#gid=42&range=F7"
    )
    assert GOOGLE.cell(7, "FRAME NUMBER").endswith("&range=C7")
    assert CSV.cell(7, "FRAME NUMBER") == "s3://bucket/sheets/S01E02.csv, row 7, cell C7"
    assert GOOGLE.cell(4, "H (beyond the header)").endswith("&range=H4")  # text right of the header's last column
    assert GOOGLE.cell(4, "NOT A COLUMN").endswith("&range=A4")  # the row at least
    assert without_userinfo("https://user:secret@example.com:8443/s.csv?x=1") == "https://example.com:8443/s.csv?x=1"
    assert "secret" not in SheetRef("https://user:secret@example.com/s.csv").cell(2, "METADATA")


def test_the_hash_follows_the_findings_not_their_order_or_links():
    table = findings_table(rejections("S01E01", ["Comon", "Rair"]), pd.DataFrame(), {}, {}, {"S01E01": GOOGLE})
    moved = findings_table(rejections("S01E01", ["Comon", "Rair"]), pd.DataFrame(), {}, {}, {"S01E01": CSV})
    fixed = findings_table(rejections("S01E01", ["Comon", "Rare "]), pd.DataFrame(), {}, {}, {"S01E01": GOOGLE})
    assert findings_hash(table) == findings_hash(table.iloc[::-1]) == findings_hash(moved)
    assert findings_hash(fixed) != findings_hash(table)
    empty = findings_table(pd.DataFrame(), pd.DataFrame(), {}, {}, {})
    assert findings_hash(empty) == NO_FINDINGS_HASH and list(empty.columns)[:2] == ["episode_id", "kind"]


def test_the_table_orders_each_episode_sheet_then_rows_then_sources():
    missing = pd.DataFrame({"episode_id": ["S01E01"], "frame": ["F"], "src_key": ["s3://b/F.jpg"]})
    table = findings_table(
        rejections("S01E01", ["x"]), missing, {"S01E02": "no classified frames"}, {"S09E01": 3}, {"S01E01": GOOGLE}
    )
    assert table[["episode_id", "kind"]].values.tolist() == [
        ["S01E01", "rejected row"],
        ["S01E01", "missing source"],
        ["S01E02", "sheet skipped"],
        ["S09E01", "orphans"],
    ]


def test_a_digest_that_fits_lists_everything_without_a_trailer():
    table = findings_table(rejections("S01E01", ["Comon"]), pd.DataFrame(), {}, {}, {"S01E01": GOOGLE})
    digest = render_digest(table, {"S01E01": GOOGLE}, context="run r1")
    assert (digest.shown, digest.total) == (1, 1) and "more data findings" not in digest.message
    assert digest.subject == "tuttle-prep: 1 data finding in 1 episode"
    assert "https://docs.google.com/spreadsheets/d/abc/edit#gid=42&range=F2" in digest.message


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=60),
    max_bytes=st.integers(min_value=1500, max_value=9000),
)
def test_a_cut_digest_stays_within_the_byte_limit_and_counts_what_it_left_out(values, max_bytes):
    table = findings_table(rejections("S01E01", values), pd.DataFrame(), {}, {}, {"S01E01": GOOGLE})
    digest = render_digest(table, {"S01E01": GOOGLE}, context="run r1 ✓", max_bytes=max_bytes)
    assert len(digest.message.encode("utf-8")) <= max_bytes
    assert digest.total == len(values)
    if digest.shown < digest.total:
        rest = digest.total - digest.shown
        assert f"... and {rest:,} more data findings ({rest:,} rejected row" in digest.message
        assert digest.message.rstrip().endswith(LIST_ALL_COMMAND)
    else:
        assert "more data findings" not in digest.message


def test_exit_codes_and_run_failed_follow_job_failures_only():
    def report(**changes) -> RunReport:
        r = RunReport(**{k: v for k, v in changes.items() if k in ("strict", "config_error", "refused")})
        r.rejections = rejections("S01E01", ["Comon"]) if changes.get("data") else r.rejections
        if changes.get("error"):
            r.error("s3://bucket/tuttle_twins/manifests/S01-episodes.json: cannot read the manifest")
        r.planned = True
        return r

    cases = {
        "clean": (report(), 0, False),
        "data findings only": (report(data=True), 0, False),
        "data findings, --strict": (report(data=True, strict=True), 1, False),
        "a job failure": (report(error=True), 1, True),
        "a refused delete guard": (report(refused="refusing 300 deletes"), 1, True),
        "a configuration error": (report(config_error="TUTTLE_SPLIT is bad"), 2, True),
    }
    for name, (r, exit_code, failed) in cases.items():
        summary = r.summary()
        metrics = {m["MetricName"]: m["Value"] for m in metric_data(summary)}
        assert (r.exit_code, summary["exit_code"], summary["job_failed"]) == (exit_code, exit_code, failed), name
        assert (metrics["RunFailed"], metrics["RunSucceeded"]) == ((1, 0) if failed else (0, 1)), name
        assert metrics["DataFindings"] == (1 if "data" in name else 0), name


@pytest.mark.parametrize("strict", [False, True])
def test_the_table_names_both_kinds(strict):
    r = RunReport(strict=strict)
    r.rejections = rejections("S01E01", ["Comon", "Rair"])
    r.skip("S01E02", "no classified frames", data=True)
    r.skip("S01E03", "sheet not read")
    r.error("S01E03: no access (403)")
    text = r.table()
    assert "S01E02" in text and "skipped (data): no classified frames" in text
    assert "skipped (job failure): sheet not read" in text
    assert "job failures: 1" in text
    verdict = "they fail the run (--strict)" if strict else "they do not fail the run (--strict would)"
    assert f"data findings: 3 (1 sheet skipped, 2 rejected rows); {verdict}" in text
