"""CSV exports of episode sheets: on the local disk (a path or `file://` URL) or in S3 (`s3://bucket/key`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from ..core.sheets import location_kind, parse_csv
from ..errors import SheetError


class CsvFileSource:
    """A CSV export on the local disk: a path or a `file://` URL."""

    name = "csv-file"

    def can_read(self, location: str) -> bool:
        return location_kind(location) == "file"

    def read(self, location: str, *, title: str = "", episode_id: str = "") -> pd.DataFrame:
        location = location.strip()
        path = Path(unquote(urlparse(location).path)) if location.startswith("file://") else Path(location)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SheetError(f"{path}: cannot read the CSV export ({exc.strerror or exc})") from None
        return parse_csv(data, str(path))


class CsvS3Source:
    """A CSV export stored in S3, named by an `s3://bucket/key` URL."""

    name = "csv-s3"

    def __init__(self, fetch: Callable[[str, str], bytes]) -> None:
        """`fetch(bucket, key)` returns the object's bytes or raises SheetError (see `s3_objects.fetch`)."""
        self._fetch = fetch

    def can_read(self, location: str) -> bool:
        return location_kind(location) == "s3"

    def read(self, location: str, *, title: str = "", episode_id: str = "") -> pd.DataFrame:
        parsed = urlparse(location.strip())
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        if not bucket or not key:
            raise SheetError(f"{location}: an S3 sheet location must look like s3://bucket/path/sheet.csv")
        return parse_csv(self._fetch(bucket, key), location.strip())
