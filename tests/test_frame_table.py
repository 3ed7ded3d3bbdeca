"""The frame table: most trusted rarity, header and value normalisation, and every rejection rule."""

from __future__ import annotations

import pandas as pd
import pytest
from season import FRAME, HEADER, JONNY, SUPERVISED, UNSUPERVISED, frame_number

from tuttle_prep.core.frame_table import build_frame_table, normalize_header, normalize_rarity, parse_frame
from tuttle_prep.core.sheets import parse_csv
from tuttle_prep.errors import SheetError

F0, F1, F2, F3 = (frame_number("S01E01", i) for i in range(4))


def sheet(*rows: dict[str, str], header: list[str] = HEADER) -> pd.DataFrame:
    """A raw sheet table as a source returns it: strings, blanks as ''."""
    return pd.DataFrame([[r.get(c, "") for c in header] for r in rows], columns=header, dtype=object)


def r(frame: str, unsupervised: str = "", supervised: str = "", jonny: str = "") -> dict[str, str]:
    return {FRAME: frame, UNSUPERVISED: unsupervised, SUPERVISED: supervised, JONNY: jonny}


def rarities(table) -> dict[str, str]:
    return dict(zip(table.frames["frame"], table.frames["rarity"], strict=True))


def rejected(table) -> list[tuple[int, str, str]]:
    return [(int(x.row), x.column, x.value) for x in table.rejections.itertuples()]


def test_most_trusted_non_empty_rarity_wins():
    table = build_frame_table(
        sheet(
            r(F0, "Common", "Rare", "Legendary"),
            r(F1, "Common", "Rare", ""),
            r(F2, "Common", "", ""),
            r(F3, "", "", "Uncommon"),
        ),
        "S01E01",
    )
    assert rarities(table) == {F0: "Legendary", F1: "Rare", F2: "Common", F3: "Uncommon"}
    assert table.rejections.empty


def test_rarity_values_ignore_case_and_spaces_and_junk_means_trash():
    table = build_frame_table(
        sheet(r(F0, " legendary "), r(F1, "JUNK"), r(F2, "un common"), r(F3, "", "trash")), "S01E01"
    )
    assert rarities(table) == {F0: "Legendary", F1: "Trash", F2: "Uncommon", F3: "Trash"}
    assert normalize_rarity("Rare") == "Rare" and normalize_rarity("rarest") is None


def test_headers_match_trimmed_case_insensitive_and_with_curly_apostrophe():
    header = [
        " frame number  ",
        "unsupervised classification",
        "Supervised Classification ",
        "JONNY\u2019S RECLASSIFICATION",
    ]
    raw = pd.DataFrame([[F0, "Common", "Rare", "Legendary"], [F1, "Common", "", ""]], columns=header, dtype=object)
    assert rarities(build_frame_table(raw, "S01E01")) == {F0: "Legendary", F1: "Common"}
    assert normalize_header("JONNY\u2019s  RECLASSIFICATION") == normalize_header("JONNY's RECLASSIFICATION")


def test_bad_most_trusted_value_rejects_the_row_without_falling_back():
    table = build_frame_table(sheet(r(F0, "Common", "Rare", "Legendery"), r(F1, "Common", "??", "")), "S01E01")
    assert rarities(table) == {}
    # sheet rows are 1-based and the header is row 1
    assert rejected(table) == [(2, JONNY, "Legendery"), (3, SUPERVISED, "??")]


def test_a_bad_less_trusted_value_is_ignored_when_a_more_trusted_one_is_set():
    table = build_frame_table(sheet(r(F0, "garbage", "", "Rare")), "S01E01")
    assert rarities(table) == {F0: "Rare"}
    assert table.rejections.empty


@pytest.mark.parametrize(
    "frame",
    [
        "TT_S01_E01_FRM-00-00-08",  # no frame-in-second part
        "TT_S01_E01_FRM-00-00-08-24",  # only 24 frames a second
        "TT_S01_E01_FRM-00-60-08-12",  # minute 60
        "TT_S1_E01_FRM-00-00-08-12",
        "tt_s01_e01_frm-00-00-08-12",
        "TT_S01_E01_FRM-00-00-08-12.jpg",
        "TT_S01_E01_FRM-00-00-08-12x",
        "frame 12",
    ],
)
def test_malformed_frame_number_is_rejected_with_its_value(frame: str):
    table = build_frame_table(sheet(r(F0, "Common"), r(frame, "Rare")), "S01E01")
    assert rarities(table) == {F0: "Common"}
    assert rejected(table) == [(3, FRAME, frame)]


def test_frame_of_another_episode_is_rejected():
    other = frame_number("S01E02", 0)
    other_season = frame_number("S02E01", 0)
    table = build_frame_table(sheet(r(F0, "Common"), r(other, "Rare"), r(other_season, "Rare")), "S01E01")
    assert rarities(table) == {F0: "Common"}
    assert rejected(table) == [(3, FRAME, other), (4, FRAME, other_season)]
    assert "another episode" in table.rejections["reason"].iloc[0]


def test_empty_frame_number_with_a_rarity_is_rejected_but_blank_rows_are_ignored():
    table = build_frame_table(sheet(r(F0, "Common"), r("", "Rare"), r("", ""), r(F1, "Trash")), "S01E01")
    assert rarities(table) == {F0: "Common", F1: "Trash"}
    assert rejected(table) == [(3, FRAME, "")]


def test_identical_duplicates_collapse():
    table = build_frame_table(sheet(r(F0, "Common"), r(F0, "common "), r(F1, "Rare")), "S01E01")
    assert rarities(table) == {F0: "Common", F1: "Rare"}
    assert table.rejections.empty
    assert len(table.frames) == 2


def test_conflicting_duplicates_are_all_rejected():
    table = build_frame_table(sheet(r(F0, "Common"), r(F1, "Rare"), r(F0, "Common", "Legendary")), "S01E01")
    assert rarities(table) == {F1: "Rare"}
    assert rejected(table) == [(2, FRAME, F0), (4, FRAME, F0)]


def test_rows_without_any_rarity_are_in_no_dataset_and_not_rejected():
    table = build_frame_table(sheet(r(F0, "Common"), r(F1), r(F2, " ", "", "")), "S01E01")
    assert rarities(table) == {F0: "Common"}
    assert table.rejections.empty
    assert table.unclassified == 2


def test_missing_rarity_columns_are_treated_as_blank():
    raw = pd.DataFrame([[F0, "Rare"]], columns=["FRAME NUMBER", "SUPERVISED CLASSIFICATION"], dtype=object)
    assert rarities(build_frame_table(raw, "S01E01")) == {F0: "Rare"}


@pytest.mark.parametrize("renamed", ["JONNY RECLASSIFICATION", "Jonny's Reclasification", "SUPERVISED CLASIFICATION"])
def test_a_header_close_to_a_rarity_column_is_an_error_naming_it(renamed):
    column = JONNY if renamed.casefold().startswith("jonny") else SUPERVISED
    header = [renamed if h == column else h for h in HEADER]
    raw = sheet({FRAME: F0, renamed: "Legendary", SUPERVISED: "Rare", UNSUPERVISED: "Common"}, header=header)
    message = f"S01E01: header '{renamed}' \\(column [A-Z]\\) looks like a renamed '{column}'"
    with pytest.raises(SheetError, match=message):
        build_frame_table(raw, "S01E01")
    # the operator says the column may be missing: the close header is then just another column
    assert len(build_frame_table(raw, "S01E01", optional_columns=(column,)).frames) == 1


def test_a_frame_with_any_rejected_row_is_in_no_dataset_even_if_another_row_places_it():
    table = build_frame_table(sheet(r(F0, "Rare"), r(F0, "Comon"), r(F1, "Common")), "S01E01")
    assert rarities(table) == {F1: "Common"}
    assert table.held_frames == {F0}
    assert table.untied_rows == []


def test_rows_naming_no_frame_of_the_episode_are_untied():
    broken = sheet(
        r(F0, "Rare"), r("", "Rare"), r("TT_S01_E01_FRM-00-00-9-00", "Common"), r(f"{F1} (dup?)", "Rare"), r(F2, "x")
    )
    table = build_frame_table(broken, "S01E01")
    assert table.untied_rows == [3, 4, 5]
    assert table.held_frames == {F2}


def test_sheet_without_frame_number_column_is_an_error_naming_the_sheet():
    raw = pd.DataFrame([["x", "Common"]], columns=["FRAME", UNSUPERVISED], dtype=object)
    with pytest.raises(SheetError, match="S01E01 sheet.*FRAME NUMBER"):
        build_frame_table(raw, "S01E01", "S01E01 sheet")


def test_parse_frame():
    assert parse_frame("TT_S01_E02_FRM-01-02-03-23") == ("S01E02", 3723)
    assert parse_frame("TT_S01_E02_FRM-01-02-03-24") is None
    assert parse_frame("TT_S01_E02_FRM-01-02-03-23\n") is None  # whole cells only


def test_rejected_row_numbers_match_the_sheet_even_after_blank_lines():
    csv = (
        "\ufeffFRAME NUMBER,UNSUPERVISED CLASSIFICATION\n"  # a BOM, as Excel writes
        f"{F0},Common\n"
        "\n"
        ",\n"
        f"{F1},Rare\n"
        "TT_S01_E01_FRM-00-00-00-0x,Rare\n"
    ).encode()
    table = build_frame_table(parse_csv(csv, "S01E01.csv"), "S01E01")
    assert rarities(table) == {F0: "Common", F1: "Rare"}
    assert rejected(table) == [(6, FRAME, "TT_S01_E01_FRM-00-00-00-0x")]
