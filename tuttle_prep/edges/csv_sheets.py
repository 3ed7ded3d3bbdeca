"""CSV exports of episode sheets: on the local disk (a path or `file://` URL) or in S3 (`s3://bucket/key`).

A local sheet is read only from under TUTTLE_LOCAL_SHEETS_DIR (`Settings.local_sheets_dir`): the path a
manifest names (a relative path: from that folder) is resolved (symlinks, `..`) and must stay under that
folder, else the episode is not read and the file is never opened. Without the setting no local sheet is read
at all: a manifest in S3 must never make the job read a host file (`/etc/passwd`, an `.env` with keys) and
quote it in the log.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from ..core.sheets import location_kind, parse_csv
from ..errors import LocalSheetRefused, SheetError

#: a local sheet larger than this is not read (a CSV export of an episode is a few MB)
MAX_LOCAL_SHEET_BYTES = 256 << 20


def local_path(location: str) -> Path | None:
    """The path a `file://` URL or plain path names (not resolved); None for a `file://` URL naming another host."""
    location = location.strip()
    if location.startswith("file://"):
        parsed = urlparse(location)
        if parsed.netloc not in ("", "localhost"):
            return None
        return Path(unquote(parsed.path))
    return Path(location)


def allowed_local_path(location: str, root: Path | None) -> Path | None:
    """The resolved path of a local sheet location if it is under `root` (itself resolved), else None.

    A relative path is taken from `root` (TUTTLE_LOCAL_SHEETS_DIR), never from the current folder: cron's is
    `$HOME`, an operator's is anywhere, and the same manifest must name the same file for both.
    """
    if root is None:
        return None
    path = local_path(location)
    if path is None:
        return None
    if not path.is_absolute():
        path = root / path
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return resolved if resolved.is_relative_to(root) else None


def refusal(location: str, root: Path | None) -> str:
    """Why the local sheet at `location` is not read (the file is not opened)."""
    if root is None:
        return (
            "a local sheet path, and local sheets are not allowed: TUTTLE_LOCAL_SHEETS_DIR is not set "
            "(the file is not read)"
        )
    return f"a local sheet path outside TUTTLE_LOCAL_SHEETS_DIR ({root}) once resolved (the file is not read)"


def local_path_exists(root: Path | None) -> Callable[[str], bool]:
    """`path_exists` for `sheets.sheet_location_problem`: whether a local sheet path exists, asked of the disk only
    under `root`. A location outside it that looks like a path counts as existing (reading it is refused, with the
    reason), a bare word (`TODO`) as missing: no file outside `root` is even looked at."""

    def exists(location: str) -> bool:
        path = allowed_local_path(location, root)
        if path is not None:
            return path.exists()
        return "/" in location or "\\" in location

    return exists


class CsvFileSource:
    """A CSV export on the local disk (a path or a `file://` URL), read only from under `root`."""

    name = "csv-file"

    def __init__(self, root: Path | None = None) -> None:
        """`root`: TUTTLE_LOCAL_SHEETS_DIR, resolved (`Settings.local_sheets_dir`); None reads no local file."""
        self.root = root

    def can_read(self, location: str) -> bool:
        return location_kind(location) == "file"

    def read(self, location: str, *, title: str = "", episode_id: str = "") -> pd.DataFrame:
        location = location.strip()
        path = allowed_local_path(location, self.root)
        if path is None:
            raise LocalSheetRefused(f"'{location}' is {refusal(location, self.root)}")
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            # the resolved path, not followed if it became a symlink since; only a regular file is read
            fd = os.open(path, flags)
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise SheetError(f"{path}: not a regular file; a CSV export is a file")
                if info.st_size > MAX_LOCAL_SHEET_BYTES:
                    raise SheetError(f"{path}: {info.st_size:,} bytes, more than a CSV export of a sheet")
                data = handle.read()
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
