"""The columnar frame table and CSV reader equal the round-1 ones on random sheets (hypothesis).

Random sheets mix the episode's frames (with and without padding, Unicode spaces, non-ASCII digits), frames of
other episodes, malformed and empty frame numbers, rarity spellings good and bad, duplicated and conflicting
rows, blank rows, missing columns and cells that are not strings. The columnar `build_frame_table` must give
exactly the frames, the rejections (row, column, value, reason, frame, in order) and the counts of
`reference_frame_table`; `parse_csv` must read random CSV text exactly as the csv module and `table_from_rows` do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_frame_table import reference_frame_table
from season import FRAME, HEADER, JONNY, SUPERVISED, UNSUPERVISED, frame_number

from tuttle_prep.core import columns as col
from tuttle_prep.core.frame_table import FrameTable, build_frame_table
from tuttle_prep.core.sheets import parse_csv, parse_csv_strictly
from tuttle_prep.errors import SheetError

EPISODE = "S01E01"
FRAMES = [frame_number(EPISODE, i) for i in range(6)]
FRAME_CELLS = [
    *FRAMES,
    f"  {FRAMES[0]} ",
    f"\u3000{FRAMES[1]}\xa0",
    f"{FRAMES[2]}\n",
    frame_number("S01E02", 0),
    "TT_S01_E01_FRM-00-00-0٣-00",
    "TT_S0١_E01_FRM-00-00-00-00",
    "TT_S01_E01_FRM-00-00-09-24",
    "TT_S01_E01_FRM-00-00-9-00",
    f"{FRAMES[3]} (dup?)",
    "",
    "   ",
]
RARITY_CELLS = ["", "Common", " rare ", "JUNK", "Trash", "Legendary", "Comon", "u n c o m m o n", "\x1cRare", "?"]
METADATA_CELLS = ["", "[Emily]", " [Ethan, Space Tunnel] "]


def odd(cells: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly `cells`, sometimes a value that is not a string (a sheet API's number or None, pandas' NaN)."""
    return st.one_of(cells, cells, cells, st.sampled_from([None, np.nan, 7, 2.5]))


@st.composite
def sheets(draw: st.DrawFn) -> pd.DataFrame:
    header = list(HEADER)
    for name in draw(st.sets(st.sampled_from([UNSUPERVISED, SUPERVISED, JONNY, "METADATA"]), max_size=2)):
        header.remove(name)
    if draw(st.booleans()):
        header = [name.upper() if name == JONNY else name for name in header]
    if draw(st.integers(0, 5)) == 0:  # a renamed rarity header: the sheet is refused, by both
        header = [name.replace("JONNY's", "JONNY") for name in header]
    objects = draw(st.booleans())
    row = st.fixed_dictionaries(
        {
            FRAME: odd(st.sampled_from(FRAME_CELLS)) if objects else st.sampled_from(FRAME_CELLS),
            UNSUPERVISED: st.sampled_from(RARITY_CELLS),
            SUPERVISED: st.sampled_from(RARITY_CELLS),
            JONNY: odd(st.sampled_from(RARITY_CELLS)) if objects else st.sampled_from(RARITY_CELLS),
            "METADATA": st.sampled_from(METADATA_CELLS),
        }
    )
    rows = draw(st.lists(row, max_size=30))
    canonical = {name.upper(): name for name in HEADER}
    body = [[r.get(canonical.get(name.upper(), name), "") for name in header] for r in rows]
    return pd.DataFrame(body, columns=header, dtype=object if objects else "str")


def same_table(table: FrameTable, reference) -> None:
    frames, rejections, unclassified, rarity_columns, notes = reference
    assert table.frames.astype(object).values.tolist() == frames.astype(object).values.tolist()
    assert list(table.frames.columns) == list(frames.columns)
    assert table.rejections.astype(object).values.tolist() == rejections.astype(object).values.tolist()
    assert list(table.rejections.columns) == list(rejections.columns)
    assert table.unclassified == unclassified
    assert table.rarity_columns == rarity_columns
    assert table.notes == notes


def build(builder, sheet: pd.DataFrame):
    try:
        return builder(sheet, EPISODE, "sheet")
    except SheetError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sheets())
def test_the_columnar_frame_table_equals_the_reference(sheet: pd.DataFrame) -> None:
    table, reference = build(build_frame_table, sheet), build(reference_frame_table, sheet)
    if isinstance(reference, str):
        assert table == reference
    else:
        same_table(table, reference)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_cells_are_trimmed_exactly_as_str_strip_does(text: str) -> None:
    trimmed = pc.utf8_trim(col.strings([text, f" {text}\t"]), characters=col.PY_WHITESPACE)
    assert trimmed.to_pylist() == [text.strip(), f" {text}\t".strip()]


# ---- CSV ------------------------------------------------------------------------------------------------

CSV_CELLS = ["", "a", 'a"b', '""', '"x"y', "Rare ,", "Rare", " x ", '"quoted, comma"', '"line\nbreak"', '"say ""hi"""']
CSV_CELLS += ["é", "007", "NA"]


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    width = draw(st.integers(1, 4))
    names = st.sampled_from(["A", "B", "C", "D", "A", "", " E ", '"F,G"', "FRAME NUMBER", " frame  number", " "])
    header = draw(st.lists(names, min_size=width, max_size=width))
    lines = [",".join(header)]
    for _ in range(draw(st.integers(0, 6))):
        cells = draw(st.lists(st.sampled_from(CSV_CELLS), min_size=1, max_size=width + 1))
        lines.append(draw(st.sampled_from([",".join(cells), ",".join(cells), "", " ", ",", '""'])))
    end = draw(st.sampled_from(["", "\n", "\r\n"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(lines) + end


def read(reader, data: bytes) -> pd.DataFrame | str:
    try:
        return reader(data, "sheet.csv")
    except SheetError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_texts(), st.booleans(), st.sampled_from([b"", b"", b"\xff", b"\xed\xa0\x80", "\u3000".encode()]))
def test_csv_sheets_read_exactly_as_the_csv_module_reads_them(text: str, bom: bool, tail: bytes) -> None:
    data = ("\ufeff" if bom else "").encode() + text.encode() + tail
    expected, table = read(parse_csv_strictly, data), read(parse_csv, data)
    if isinstance(expected, str):
        assert table == expected
        return
    assert list(table.columns) == list(expected.columns)
    assert table.astype(object).values.tolist() == expected.values.tolist()
    assert table.attrs == expected.attrs
