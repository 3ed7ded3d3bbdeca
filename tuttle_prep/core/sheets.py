"""Episode sheets, the pure part: the source interface, sheet locations, rows and CSV bytes to a sheet table.

A sheet location (from the manifest) is handed to the first `SheetSource` whose `can_read` accepts it.
Every source returns the sheet's first worksheet as a DataFrame of strings: the header row becomes the
column names, blank cells are "", nothing is coerced to numbers. Turning that table into frames and
rarities is the pure job of `tuttle_prep.core.frame_table`.

The sources that read are edges: CSV exports (local paths, `file://`, `s3://`) in
`tuttle_prep.edges.csv_sheets`, Google Sheets in `tuttle_prep.edges.google_sheets`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from pathlib import PurePath
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import SheetContentError, SheetError
from . import columns as col
from .frame_table import FRAME_COLUMN, METADATA_COLUMN, RARITY_COLUMNS, normalize_header


class SheetSource(Protocol):
    """One way of reading a sheet location into a DataFrame of strings."""

    name: str

    def can_read(self, location: str) -> bool:
        """True if this source understands `location`."""
        ...

    def read(self, location: str, *, title: str = "", episode_id: str = "") -> pd.DataFrame:
        """Return the first worksheet with the header row as columns; raise SheetError if it can't.

        `title` and `episode_id` come from the manifest and only make error messages clearer."""
        ...


_BARE_SHEET_KEY = re.compile(r"^[A-Za-z0-9_-]{25,}$")


def is_google_location(location: str) -> bool:
    """True for a Google Sheets URL (docs.google.com/...) or a bare spreadsheet key."""
    location = location.strip()
    if _BARE_SHEET_KEY.match(location):
        return True
    parsed = urlparse(location)
    return parsed.scheme in ("http", "https") and parsed.netloc.endswith("docs.google.com")


def location_kind(location: str) -> str | None:
    """Classify a manifest's sheet location: 'google', 's3', 'file', or None if unknown."""
    location = location.strip()
    if not location:
        return None
    if is_google_location(location):
        return "google"
    scheme = urlparse(location).scheme
    if scheme == "s3":
        return "s3"
    if scheme == "file" or scheme == "" or (len(scheme) == 1 and location[1:3] in (":\\", ":/")):
        return "file"
    return None


_GOOGLE_WITHOUT_SCHEME = re.compile(r"^(?://)?(?:www\.)?docs\.google\.com/", re.IGNORECASE)
UNKNOWN_LOCATION = "not a Google Sheets link, s3:// URL, file:// URL or path"


def sheet_location_problem(location: str, path_exists: Callable[[str], bool] | None = None) -> str | None:
    """Why `location` cannot name an episode's sheet (None if it can): a phrase to follow "'<location>' is".

    A Google link pasted without `https://` and a bare word (`TODO`, `N/A`) would otherwise be taken for a
    local path and fail every night as an unreadable CSV. A local path must exist, or end in `.csv`, or be
    a `file://` URL. `path_exists` (the caller's `os.path.exists`: the core reads no disk) answers whether a
    local path exists, relative to the current folder of the process; without it that check is skipped.
    """
    location = location.strip()
    if _GOOGLE_WITHOUT_SCHEME.match(location):
        fixed = "https://" + location.lstrip("/")
        return f"a Google Sheets link without 'https://'; write it as '{fixed}'"
    kind = location_kind(location)
    if kind is None:
        return UNKNOWN_LOCATION
    if (
        path_exists is not None
        and kind == "file"
        and not location.startswith("file://")
        and PurePath(location).suffix.lower() != ".csv"
        and not path_exists(location)
    ):
        return (
            f"{UNKNOWN_LOCATION} of a CSV export: there is no file '{location}' "
            "(a local path must exist, end in .csv or be a file:// URL)"
        )
    return None


#: `DataFrame.attrs` key: {data row position: (column label, text)} of rows with text beyond the header's last column
EXTRA_FIELDS = "extra_fields"
#: `DataFrame.attrs` key: notes about the sheet worth a warning (rows with empty extra fields)
SHEET_NOTES = "sheet_notes"
_ROWS_SHOWN = 10


def column_letter(index: int) -> str:
    """0 -> 'A', 25 -> 'Z', 26 -> 'AA' (the sheet's own column names)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _repeated_job_columns(header: Sequence[str], where: str) -> None:
    """SheetError naming a column the job reads that the header names twice (which one is meant is a guess)."""
    wanted = {normalize_header(name): name for name in (FRAME_COLUMN, *RARITY_COLUMNS, METADATA_COLUMN)}
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        normal = normalize_header(name)
        if normal in wanted:
            positions.setdefault(normal, []).append(index)
    for normal, found in positions.items():
        if len(found) > 1:
            columns = " and ".join(f"{column_letter(i)} '{header[i].strip()}'" for i in found)
            raise SheetContentError(
                f"{where}: the header row names column '{wanted[normal]}' more than once (columns {columns}); "
                "rename or delete all but one: the job will not guess which one is meant",
                column=header[found[1]],
                letter=column_letter(found[1]),
            )


def _row_list(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_ROWS_SHOWN])
    return shown + (f" (and {len(rows) - _ROWS_SHOWN:,} more)" if len(rows) > _ROWS_SHOWN else "")


def table_from_rows(rows: Sequence[Sequence[Any]], where: str) -> pd.DataFrame:
    """Build a sheet table from a list of rows whose first row is the header (short rows are padded).

    The header is the only source of column positions. A header that names a column the job reads
    (FRAME NUMBER, a rarity column, METADATA) twice raises SheetError naming it. A row with text beyond
    the header's last column is recorded in `attrs[EXTRA_FIELDS]` (the frame table rejects it); rows whose
    extra fields are all empty (a trailing comma) are read as usual and noted in `attrs[SHEET_NOTES]`.
    """
    if not rows or not any(str(cell).strip() for cell in rows[0]):
        raise SheetContentError(f"{where}: the sheet is empty (no header row)")
    header = [str(cell) for cell in rows[0]]
    _repeated_job_columns(header, where)
    width = len(header)
    extra: dict[int, tuple[str, str]] = {}
    empty_extra: list[int] = []
    body = []
    for position, row in enumerate(rows[1:]):
        # the common case (a full row of text) is appended as it is: a sheet has tens of thousands of rows
        if len(row) == width and all(type(cell) is str for cell in row):
            body.append(row)
            continue
        cells = ["" if cell is None else str(cell) for cell in row]
        if len(cells) > width:
            beyond = cells[width:]
            first = next((i for i, cell in enumerate(beyond) if cell.strip()), None)
            if first is None:
                empty_extra.append(position)
            else:
                label = f"{column_letter(width + first)} (beyond the header)"
                extra[position] = (label, ", ".join(cell for cell in beyond if cell.strip()))
            cells = cells[:width]
        body.append(cells + [""] * (width - len(cells)))
    table = pd.DataFrame(body, columns=header, dtype=object)
    if extra:
        table.attrs[EXTRA_FIELDS] = extra
    if empty_extra:
        table.attrs[SHEET_NOTES] = [
            f"{where}: sheet {'row' if len(empty_extra) == 1 else 'rows'} {_row_list([p + 2 for p in empty_extra])} "
            f"{'has' if len(empty_extra) == 1 else 'have'} more fields than the header row "
            f"({width}), all empty (a trailing comma?); read by the header's columns"
        ]
    return table


def parse_csv(data: bytes, where: str) -> pd.DataFrame:
    """Parse a CSV export (UTF-8, optional BOM) into a sheet table of strings (see `table_from_rows`).

    pyarrow's reader parses a plain sheet (every row as wide as the header, header names unique and not
    blank) into Arrow-backed columns; any other sheet is read by the csv module and `table_from_rows`, so
    every sheet reads, and every error reads, the same either way.
    """
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if _PRINTABLE_ASCII.search(body) is not None:  # not blank: pyarrow checks the UTF-8 itself
        table = _read_csv_arrow(body, where)
        if table is not None:
            return table
    return parse_csv_strictly(data, where)


def parse_csv_strictly(data: bytes, where: str) -> pd.DataFrame:
    """`parse_csv` without pyarrow's fast path: the csv module (strict) and `table_from_rows`, for any sheet."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SheetError(
            f"{where}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
            "export the sheet again as CSV (UTF-8)"
        ) from None
    if not text.strip():
        raise SheetContentError(f"{where}: the file is empty (no header row)")
    # the csv module, not pandas: pandas takes a first data row one field longer than the header as having an
    # index column and shifts every column by one
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise SheetError(f"{where}: not a readable CSV file (line {reader.line_num}: {exc})") from None
    return table_from_rows(rows, where)


_PRINTABLE_ASCII = re.compile(rb"[!-~]")
#: the header row is looked for in this many leading bytes; a longer one goes to the csv module
_HEADER_SCAN = 1 << 20


def _read_csv_arrow(data: bytes, where: str) -> pd.DataFrame | None:
    """The sheet read by pyarrow.csv (every cell a string, nothing coerced), or None where the csv module must
    read it. SheetError as `table_from_rows` raises it for a header naming a column the job reads twice."""
    head = data[:_HEADER_SCAN]
    if b"\n" not in head and len(data) > _HEADER_SCAN:
        return None
    width = head.split(b"\n", 1)[0].count(b",") + 1  # no more fields than that in the header row
    if not _plain_quoting(data):
        return None
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True, use_threads=True),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(width)},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows == 0 or any(t != pa.string() for t in table.schema.types):
        return None
    names = [column[0].as_py() for column in table.slice(0, 1).columns]
    if len(set(names)) != len(names) or "" in names or not any(name.strip() for name in names):
        return None
    _repeated_job_columns(names, where)
    body = table.slice(1)
    return col.frame({name: body.column(i) for i, name in enumerate(names)}, names)


_FIELD_ENDS = np.frombuffer(b",\r\n", dtype=np.uint8)


def _plain_quoting(data: bytes) -> bool:
    """True if every quote in `data` opens a field, closes one right before a comma or line end, or is half of a
    doubled quote inside one: then pyarrow and the csv module (strict) split the fields the same way. A quote in
    the middle of an unquoted field, or text after a closing quote, is left to the csv module."""
    raw = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(raw == ord('"'))
    if len(quotes) == 0:
        return True
    if len(quotes) % 2:
        return False
    # the byte before and after each quote; the start and the end of the file count as line ends
    before = np.where(quotes > 0, raw[np.maximum(quotes - 1, 0)], ord("\n"))
    after = np.where(quotes < len(raw) - 1, raw[np.minimum(quotes + 1, len(raw) - 1)], ord("\n"))
    # parity: the 1st, 3rd, ... quote opens a field (at its start) or is the second half of a doubled quote
    # (right after the first half); the 2nd, 4th, ... closes the field (before a comma or a line end) or is
    # the first half of a doubled quote (a quote right after it)
    even, odd = quotes[0::2], quotes[1::2]
    second_half = np.zeros(len(even), dtype=bool)
    second_half[1:] = even[1:] - 1 == odd[: len(even) - 1]
    opens_ok = second_half | np.isin(before[0::2], _FIELD_ENDS)
    closes_ok = (after[1::2] == ord('"')) | np.isin(after[1::2], _FIELD_ENDS)
    return bool(opens_ok.all() and closes_ok.all())


class SheetReader:
    """Dispatches a location to the first source that can read it."""

    def __init__(self, sources: Sequence[SheetSource]) -> None:
        self.sources = list(sources)

    def read(self, location: str, *, title: str = "", episode_id: str = "") -> pd.DataFrame:
        """Read `location` with the matching source; SheetError if none matches or reading fails."""
        for source in self.sources:
            if source.can_read(location):
                return source.read(location, title=title, episode_id=episode_id)
        if is_google_location(location):
            raise SheetError(
                f"{location}: a Google Sheets link, but Google access is not configured "
                "(set GOOGLE_DRIVE_CREDENTIALS_FILE in .env)"
            )
        raise SheetError(
            f"{location}: unknown sheet location (expected a Google Sheets link, s3://bucket/key.csv, "
            "file:// URL or local path of a CSV export)"
        )
