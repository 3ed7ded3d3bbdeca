"""Job failures and data findings: which is which, the table of data findings, and the digest (pure).

A *job failure* means the job could not do its work (a setting, S3 or the Sheets API failing after retries,
a sheet it cannot open, a broken manifest, a failed listing, a refused delete guard, failed copies or
deletes, a crash). It fails the run (exit 1, `RunFailed`), and pages operations.

A *data finding* is what a sheet or the source folders say: a rejected row, a sheet without a
`FRAME NUMBER` column or without any classified row (skipped, its files kept), a missing source frame,
dataset files of an episode in no manifest. The job did all it could; the people who edit the sheets
fix these, so they get the digest and operations get no text. `sync --strict` makes them fail the run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from .text import escape_control

#: one row per data finding; `where` is a link to the cell (Google) or the file and row (CSV)
FINDING_COLUMNS = ["episode_id", "kind", "row", "column", "value", "reason", "where"]
#: the columns that define a finding (its link may change without the finding changing)
_IDENTITY = ["episode_id", "kind", "row", "column", "value", "reason"]

REJECTED_ROW = "rejected row"
MISSING_SOURCE = "missing source"
SHEET_SKIPPED = "sheet skipped"
ORPHANS = "orphans"
UNDECODABLE_SOURCE = "undecodable source"
_KIND_ORDER = {SHEET_SKIPPED: 0, REJECTED_ROW: 1, MISSING_SOURCE: 2, UNDECODABLE_SOURCE: 3, ORPHANS: 4}
_NAMES = {
    SHEET_SKIPPED: ("sheet skipped", "sheets skipped"),
    REJECTED_ROW: ("rejected row", "rejected rows"),
    MISSING_SOURCE: ("missing source frame", "missing source frames"),
    UNDECODABLE_SOURCE: ("source frame that is no picture", "source frames that are no picture"),
    ORPHANS: ("episode with orphan files", "episodes with orphan files"),
}
#: undecodable source frames: episode_id, frame, src_key (s3:// URL), problem
UNDECODABLE_COLUMNS = ["episode_id", "frame", "src_key", "problem"]

#: SNS: a message (UTF-8 bytes) of at most 256 KiB
SNS_MAX_BYTES = 262_144
#: SNS: a subject of at most 100 characters
SNS_MAX_SUBJECT = 100
#: the command that lists every data finding, named where the digest has to stop
LIST_ALL_COMMAND = "python data_preparation.py sync --dry-run --findings-out findings.csv"


#: how the frame table names a cell right of the header's last column ('H (beyond the header)')
_BEYOND_HEADER = re.compile(r"^([A-Z]{1,3}) \(beyond the header\)$")


def column_letters(index: int) -> str:
    """0 -> 'A', 25 -> 'Z', 26 -> 'AA' (spreadsheet column names)."""
    if index < 0:
        raise ValueError(f"column index {index} is negative")
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def without_userinfo(location: str) -> str:
    """`location` with any `user:password@` removed: a link in a message never carries a credential."""
    try:
        parts = urlsplit(location)
    except ValueError:
        return location
    if parts.username is None and parts.password is None:
        return location
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class SheetRef:
    """Where an episode's sheet is, to point a reader at one of its cells.

    `spreadsheet_id` and `gid` (the first worksheet's sheetId) are set for Google sheets; `columns`
    is the header row in sheet order (a rejection names its column by header).
    """

    location: str
    title: str = ""
    spreadsheet_id: str | None = None
    gid: int | None = None
    columns: tuple[str, ...] = field(default_factory=tuple)

    def a1(self, row: int, column: str) -> str | None:
        """'F5' for sheet row 5 of the column headed `column` (or named 'H (beyond the header)'); else None."""
        if column in self.columns:
            return f"{column_letters(self.columns.index(column))}{int(row)}"
        beyond = _BEYOND_HEADER.match(column)
        return f"{beyond.group(1)}{int(row)}" if beyond else None

    def cell(self, row: int, column: str) -> str:
        """A link to the cell (Google), else the file and row (a CSV export)."""
        a1 = self.a1(row, column)
        if self.spreadsheet_id and self.gid is not None:
            base = f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit#gid={self.gid}"
            return f"{base}&range={a1}" if a1 else f"{base}&range=A{int(row)}"
        where = without_userinfo(self.location)
        return f"{where}, row {int(row)}" + (f", cell {a1}" if a1 else "")

    @property
    def link(self) -> str:
        """The sheet itself: a link to its first worksheet (Google), else its location."""
        if self.spreadsheet_id and self.gid is not None:
            return f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit#gid={self.gid}"
        return without_userinfo(self.location)


def findings_table(
    rejections: pd.DataFrame,
    missing: pd.DataFrame,
    skipped_sheets: Mapping[str, str],
    orphan_files: Mapping[str, int],
    sheets: Mapping[str, SheetRef],
    undecodable: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every data finding as one FINDING_COLUMNS table, sorted by episode, kind, row.

    `rejections`: REJECTION_COLUMNS (episode_id, row, column, value, reason, frame); `missing`: episode_id,
    frame, src_key; `skipped_sheets`: episode -> why its sheet was skipped; `orphan_files`: episode in no
    manifest -> its number of dataset files; `sheets`: episode -> where its sheet is (for the links);
    `undecodable`: UNDECODABLE_COLUMNS, source frames the content hash could not decode.
    """
    parts: list[pd.DataFrame] = []
    if len(rejections):
        rows = rejections.reset_index(drop=True)
        where = [
            sheets[e].cell(r, c) if e in sheets else f"{e} sheet, row {r}"
            for e, r, c in zip(rows["episode_id"], rows["row"], rows["column"], strict=True)
        ]
        parts.append(
            pd.DataFrame(
                {
                    "episode_id": rows["episode_id"].astype(str),
                    "kind": REJECTED_ROW,
                    "_order": _KIND_ORDER[REJECTED_ROW],
                    "row": rows["row"].astype(int),
                    "column": rows["column"].astype(str),
                    "value": rows["value"].astype(str),
                    "reason": rows["reason"].astype(str),
                    "where": where,
                }
            )
        )
    if len(missing):
        rows = missing.reset_index(drop=True)
        parts.append(
            pd.DataFrame(
                {
                    "episode_id": rows["episode_id"].astype(str),
                    "kind": MISSING_SOURCE,
                    "_order": _KIND_ORDER[MISSING_SOURCE],
                    "row": 0,
                    "column": "",
                    "value": rows["frame"].astype(str),
                    "reason": "classified in the sheet, but its source frame does not exist",
                    "where": rows["src_key"].astype(str),
                }
            )
        )
    if undecodable is not None and len(undecodable):
        rows = undecodable.reset_index(drop=True)
        parts.append(
            pd.DataFrame(
                {
                    "episode_id": rows["episode_id"].astype(str),
                    "kind": UNDECODABLE_SOURCE,
                    "_order": _KIND_ORDER[UNDECODABLE_SOURCE],
                    "row": 0,
                    "column": "",
                    "value": rows["frame"].astype(str),
                    "reason": "its source object is " + rows["problem"].astype(str) + "; it has no content hash",
                    "where": rows["src_key"].astype(str),
                }
            )
        )
    if skipped_sheets:
        episodes = sorted(skipped_sheets)
        parts.append(
            pd.DataFrame(
                {
                    "episode_id": episodes,
                    "kind": SHEET_SKIPPED,
                    "_order": _KIND_ORDER[SHEET_SKIPPED],
                    "row": 0,
                    "column": "",
                    "value": "",
                    "reason": [skipped_sheets[e] for e in episodes],
                    "where": [sheets[e].link if e in sheets else "" for e in episodes],
                }
            )
        )
    if orphan_files:
        episodes = sorted(orphan_files)
        parts.append(
            pd.DataFrame(
                {
                    "episode_id": episodes,
                    "kind": ORPHANS,
                    "_order": _KIND_ORDER[ORPHANS],
                    "row": 0,
                    "column": "",
                    "value": [str(orphan_files[e]) for e in episodes],
                    "reason": "dataset files of an episode that is in no manifest (left alone)",
                    "where": "",
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=int if c == "row" else object) for c in FINDING_COLUMNS})
    # each part is in sheet-row (or plan) order already: a stable sort by episode and kind keeps it
    table = pd.concat(parts, ignore_index=True).sort_values(["episode_id", "_order", "row"], kind="stable")
    return table[FINDING_COLUMNS].reset_index(drop=True)


#: the hash of no findings at all: what a run without a previous record is compared with
NO_FINDINGS_HASH = hashlib.sha256(b"").hexdigest()


def findings_hash(table: pd.DataFrame) -> str:
    """SHA-256 (hex) of the findings' content, independent of their order: equal lists, equal hashes.

    Each finding is hashed to 64 bits (pandas' vectorised row hash of its identity columns as text); the
    sorted row hashes are hashed again, so a million findings cost well under a second.
    """
    if len(table) == 0:
        return NO_FINDINGS_HASH
    identity = table.reindex(columns=_IDENTITY).astype(str)
    rows = np.sort(pd.util.hash_pandas_object(identity, index=False).to_numpy(dtype=np.uint64))
    return hashlib.sha256(rows.tobytes()).hexdigest()


def summarize(table: pd.DataFrame) -> str:
    """'2 rejected rows, 1 missing source frame' (empty for no findings)."""
    return describe_counts({str(k): int(n) for k, n in table["kind"].value_counts().items()})


def describe_counts(counts: Mapping[str, int]) -> str:
    """The same sentence from counts by kind (`REJECTED_ROW`, ...), without building the table."""
    parts = []
    for kind in sorted((k for k, n in counts.items() if n), key=_KIND_ORDER.__getitem__):
        n = counts[kind]
        parts.append(f"{n:,} {_NAMES[kind][n != 1]}")
    return ", ".join(parts)


def _finding_lines(row: tuple) -> list[str]:
    episode_id, kind, number, column, value, reason, where = row
    if kind == REJECTED_ROW:
        return [f"  row {number}, column {column!r}: {value!r} {reason}", f"    {where}"]
    if kind == MISSING_SOURCE:
        return [f"  missing source frame {value}: {where}"]
    if kind == UNDECODABLE_SOURCE:
        return [f"  source frame {value} is no picture: {where}"]
    if kind == SHEET_SKIPPED:
        return [f"  sheet skipped, its dataset files kept: {reason}" + (f" ({where})" if where else "")]
    return [f"  {value} {reason}"]


@dataclass(frozen=True)
class Digest:
    subject: str
    message: str
    shown: int
    total: int


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def render_digest(
    table: pd.DataFrame,
    sheets: Mapping[str, SheetRef],
    *,
    context: str,
    max_bytes: int = SNS_MAX_BYTES,
    list_command: str = LIST_ALL_COMMAND,
) -> Digest:
    """The digest for the sheet owners: per episode, its sheet, then each finding, cut to `max_bytes`.

    `context` is one line saying which run this is (bucket, host, time). A cut message ends with
    "... and N more data findings" and the command that lists them all.
    """
    total = len(table)
    episodes = table["episode_id"].nunique() if total else 0
    if total:
        subject = f"tuttle-prep: {total:,} data finding{'s' if total != 1 else ''} in {episodes} episode" + (
            "s" if episodes != 1 else ""
        )
    else:
        subject = "tuttle-prep: no data findings remain"
    subject = subject[:SNS_MAX_SUBJECT]
    head = [escape_control(context), ""]
    if total:
        head += [
            f"{summarize(table)}. The job did everything else; the rows and frames below keep their dataset",
            "files as they are until the sheet is fixed. Fix them in the sheet; the next run picks the fix up.",
            "",
        ]
    else:
        head += ["Every data finding of the previous digest has been fixed.", ""]
    text = "\n".join(head) + "\n"
    used = _utf8(text)

    def trailer(rest: pd.DataFrame) -> str:
        return (
            f"\n... and {len(rest):,} more data findings ({summarize(rest)}), not shown: a message is limited"
            f" to {max_bytes // 1024} KB. List them all with:\n  {list_command}\n"
        )

    reserve = _utf8(trailer(table)) + 64  # the longest trailer this digest can need (+ digits of its counts)
    if used + reserve > max_bytes:
        raise ValueError(f"a digest needs at least {used + reserve} bytes; {max_bytes} allowed")
    blocks: list[str] = []
    shown = 0
    current = None
    for values in table.itertuples(index=False, name=None):
        episode_id = values[0]
        block = ""
        if episode_id != current:
            ref = sheets.get(episode_id)
            # sheet and manifest text is escaped: a title with a newline must not forge a line of the email
            title = f" — {escape_control(ref.title)}" if ref is not None and ref.title else ""
            link = f"\n  sheet: {escape_control(ref.link)}" if ref is not None else ""
            block += f"\n{escape_control(episode_id)}{title}{link}\n"
        block += "\n".join(escape_control(line) for line in _finding_lines(values)) + "\n"
        size = _utf8(block)
        remaining_after = total - shown - 1
        budget = max_bytes - used - (reserve if remaining_after else 0)
        if size > budget:
            break
        blocks.append(block)
        used += size
        shown += 1
        current = episode_id
    message = text + "".join(blocks)
    if shown < total:
        message += trailer(table.iloc[shown:])
    return Digest(subject=subject, message=message, shown=shown, total=total)
