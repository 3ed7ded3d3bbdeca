"""Episode sheets, the pure part: the source interface, sheet locations, rows and CSV bytes to a sheet table.

A sheet location (from the manifest) is handed to the first `SheetSource` whose `can_read` accepts it.
Every source returns the sheet's first worksheet as a DataFrame of strings: the header row becomes the
column names, blank cells are "", nothing is coerced to numbers. Turning that table into frames and
rarities is the pure job of `tuttle_prep.core.frame_table`.

The sources that read are edges: CSV exports (local paths, `file://`, `s3://`) in
`tuttle_prep.edges.csv_sheets`, Google Sheets in `tuttle_prep.edges.google_sheets`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlparse

import pandas as pd

from ..errors import SheetContentError, SheetError


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


def table_from_rows(rows: Sequence[Sequence[Any]], where: str) -> pd.DataFrame:
    """Build a sheet table from a list of rows whose first row is the header (ragged rows are padded)."""
    if not rows or not any(str(cell).strip() for cell in rows[0]):
        raise SheetContentError(f"{where}: the sheet is empty (no header row)")
    header = [str(cell) for cell in rows[0]]
    width = len(header)
    body = [[("" if cell is None else str(cell)) for cell in row[:width]] for row in rows[1:]]
    body = [row + [""] * (width - len(row)) for row in body]
    return pd.DataFrame(body, columns=header, dtype=object)


def parse_csv(data: bytes, where: str) -> pd.DataFrame:
    """Parse a CSV export (UTF-8, optional BOM) into a sheet table of strings."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SheetError(
            f"{where}: not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
            "export the sheet again as CSV (UTF-8)"
        ) from None
    if not text.strip():
        raise SheetContentError(f"{where}: the file is empty (no header row)")
    try:
        table = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise SheetError(f"{where}: not a readable CSV file ({exc})") from None
    return table.astype(object)


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
