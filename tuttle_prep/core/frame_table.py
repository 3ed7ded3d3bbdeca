"""From a raw sheet table to the episode's classified frames (pure, no I/O).

The rarity used for training is the most trusted non-empty of JONNY's > SUPERVISED > UNSUPERVISED.
Rows that cannot be trusted are rejected with sheet, row, column and value; they are never silently
repaired by falling back to a less trusted column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SheetError
from . import columns as col
from .findings import column_letters
from .names import RARITY_COLUMNS, normalize_header  # defined there (light), the same names here
from .text import quote_header

RARITIES = ("Legendary", "Rare", "Uncommon", "Common", "Trash")
_RARITY_LOOKUP = {r.casefold(): r for r in RARITIES} | {"junk": "Trash"}

FRAME_COLUMN = "FRAME NUMBER"
METADATA_COLUMN = "METADATA"
#: the header row of an episode sheet, as the reviewers' sheets have it
SHEET_HEADER = (
    "S3_BASE_URI",
    "ROW_INDEX",
    FRAME_COLUMN,
    RARITY_COLUMNS[2],
    RARITY_COLUMNS[1],
    RARITY_COLUMNS[0],
    METADATA_COLUMN,
)

#: ASCII digits only (`[0-9]`, never `\d`, which in Python and as RE2's `\p{Nd}` also matches `١` or `０`): a frame
#: number is part of S3 keys, and the same text must mean the same frame in every pattern and every parser
FRAME_PATTERN = r"TT_S([0-9]{2})_E([0-9]{2})_FRM-([0-9]{2})-([0-5][0-9])-([0-5][0-9])-([01][0-9]|2[0-3])"
_EPISODE_ID = re.compile(r"S([0-9]{2})E([0-9]{2})\Z")
#: whole cells only: `$` would also match before a final newline
_FRAME_RE = re.compile(f"{FRAME_PATTERN}\\Z")
#: the same whole-cell match in RE2 (pyarrow.compute): `$` is the end of the text
_FRAME_RE2 = "^" + FRAME_PATTERN + "$"
#: an unknown header this close (difflib ratio of the normalised names) to a rarity column is taken for it, renamed
CLOSE_HEADER_RATIO = 0.8
#: header row is sheet row 1, so data row i (0-based) is sheet row i + 2
FIRST_DATA_ROW = 2

REJECTION_COLUMNS = ["episode_id", "row", "column", "value", "reason", "frame"]


def normalize_rarity(value: str) -> str | None:
    """'  rare ' -> 'Rare', 'JUNK' -> 'Trash'; None if it is not a rarity."""
    return _RARITY_LOOKUP.get("".join(str(value).split()).casefold())


def parse_frame(frame: str) -> tuple[str, int] | None:
    """'TT_S01_E02_FRM-00-01-02-03' -> ('S01E02', 62 seconds into the episode); None if malformed."""
    match = _FRAME_RE.match(frame) if isinstance(frame, str) else None
    if match is None:
        return None
    season, episode, hh, mm, ss, _ = match.groups()
    return f"S{season}E{episode}", int(hh) * 3600 + int(mm) * 60 + int(ss)


def example_frame(episode_id: str) -> str:
    """A well-formed frame number of `episode_id` for messages: 'S01E03' -> 'TT_S01_E03_FRM-00-00-08-12'."""
    match = _EPISODE_ID.match(episode_id)
    season, episode = match.groups() if match else ("01", "01")
    return f"TT_S{season}_E{episode}_FRM-00-00-08-12"


def conflict_reasons(rows: list[int], frames: list[object], rarities: list[str]) -> list[str]:
    """Why each row of a frame listed with different rarities is rejected: the other row, and both rarities.

    `rows` (sheet rows, in sheet order), `frames` (equal for rows of one frame) and `rarities` (the row's
    resolved rarity, "" for none) are aligned; each row names the first row of its frame with another rarity.
    """
    # per frame, the first row of each of its rarities (at most six): linear, whatever the sheet repeats
    first_rows: dict[object, dict[str, int]] = {}
    for row, frame, rarity in zip(rows, frames, rarities, strict=True):
        first_rows.setdefault(frame, {}).setdefault(rarity, row)

    def says(rarity: str) -> str:
        return f"says '{rarity}'" if rarity else "has no rarity"

    reasons = []
    for frame, rarity in zip(frames, rarities, strict=True):
        other = next(((x, r) for x, r in first_rows[frame].items() if x != rarity), None)
        detail = f": this row {says(rarity)}, row {other[1]} {says(other[0])}" if other else ""
        reasons.append(f"frame listed more than once with different rarities{detail}")
    return reasons


def frame_episodes(frames: list[str]) -> list[str | None]:
    """The episode id ('S01E02') of each frame number, None where it is malformed."""
    # one compiled match per cell: pandas' str.extract is ~10x slower on a million rows
    match = _FRAME_RE.match
    return [frame[3:6] + frame[7:10] if match(frame) else None for frame in frames]


@dataclass
class FrameTable:
    """An episode's classified frames, and the rows that were rejected."""

    episode_id: str
    #: columns: frame, rarity, metadata (one row per frame)
    frames: pd.DataFrame
    #: columns: REJECTION_COLUMNS
    rejections: pd.DataFrame
    #: rows with a valid frame number but no rarity in any column
    unclassified: int = 0
    #: the rarity columns (canonical names) the sheet has
    rarity_columns: tuple[str, ...] = ()
    #: things about the sheet worth a warning that reject nothing (from the reader: `attrs["sheet_notes"]`)
    notes: list[str] = field(default_factory=list)
    #: the sheet row of each row of `frames` (int32, aligned with it): where a finding about the frame points
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    @property
    def held_frames(self) -> set[str]:
        """Frames of this episode with a rejected row: their dataset files stay exactly as they are until fixed."""
        frames = self.rejections["frame"]
        return {f for f in frames if (parsed := parse_frame(f)) is not None and parsed[0] == self.episode_id}

    @property
    def untied_rows(self) -> list[int]:
        """Sheet rows rejected without naming a frame of this episode (FRAME NUMBER empty, malformed, of another
        episode): the frame they meant cannot be known, so no plain delete of the episode is safe."""
        held = self.held_frames
        rows = zip(self.rejections["row"].tolist(), self.rejections["frame"].tolist(), strict=True)
        return sorted({int(row) for row, frame in rows if frame not in held})


def _find_columns(table: pd.DataFrame, where: str, optional_columns: Collection[str] = ()) -> dict[str, str]:
    """Map each canonical column name to the sheet's own spelling of it.

    SheetError if FRAME NUMBER is missing, or if an unknown header is close to a rarity column that
    `optional_columns` does not name: a renamed header would otherwise silently hand the frames to a less
    trusted column. A rarity column simply absent counts as blank.
    """
    by_normal: dict[str, str] = {}
    for column in table.columns:
        by_normal.setdefault(normalize_header(column), column)
    found = {}
    for wanted in (FRAME_COLUMN, *RARITY_COLUMNS, METADATA_COLUMN):
        actual = by_normal.get(normalize_header(wanted))
        if actual is not None:
            found[wanted] = actual
    if FRAME_COLUMN not in found:
        headers = quote_header(list(table.columns)) if len(table.columns) else "none"
        raise SheetError(
            f"{where}: no '{FRAME_COLUMN}' column in the header row (found: {headers})", column=FRAME_COLUMN
        )
    optional = {normalize_header(c) for c in optional_columns}
    known = {normalize_header(c) for c in SHEET_HEADER}
    rarity_names = {normalize_header(c): c for c in RARITY_COLUMNS}
    for normal, column in by_normal.items():
        letter = column_letters(list(table.columns).index(column))
        if normal in known:
            continue
        ratios = {n: difflib.SequenceMatcher(None, normal, n).ratio() for n in rarity_names}
        closest = max(ratios, key=ratios.__getitem__)
        if ratios[closest] >= CLOSE_HEADER_RATIO and closest not in optional:
            raise SheetError(
                f"{where}: header {quote_header([column])} (column {letter}) looks like a renamed "
                f"'{rarity_names[closest]}'; the episode is skipped (its files stay as they are) rather than planned "
                "from the less trusted columns; fix the header, or name the column in TUTTLE_SHEET_OPTIONAL_COLUMNS "
                "if the sheet may lack it",
                column=str(column),
                letter=letter,
            )
    return found


def _cells(table: pd.DataFrame, column: str | None) -> pa.ChunkedArray:
    """A column's cells as trimmed strings ("" where blank), as Arrow: `str.strip()`'s rule, no Python per cell."""
    if column is None:
        return pa.chunked_array([col.constant("", len(table))], type=col.TYPE)
    values = table[column]
    try:
        cells = col.strings(values)
    except TypeError:  # not all strings (numbers from a sheet API, say): their str(), as before
        plain = values.to_numpy(dtype=object, na_value="")
        cells = col.strings([v if type(v) is str else str(v) for v in plain])
    return pc.utf8_trim(pc.fill_null(cells, ""), characters=col.PY_WHITESPACE)


def _normalized_rarities(cells: pa.ChunkedArray) -> pa.ChunkedArray:
    """`normalize_rarity` of each cell (null where it is not a rarity), computed once per distinct spelling."""
    encoded = pc.dictionary_encode(cells).combine_chunks()
    spellings = encoded.dictionary.to_pylist()
    normal = pa.array([normalize_rarity(value) for value in spellings], col.TYPE)
    return pa.chunked_array([pc.take(normal, encoded.indices)], type=col.TYPE)


def _frame_episodes(frames: pa.ChunkedArray) -> pa.ChunkedArray:
    """The episode id ('S01E02') of each frame number, null where it is malformed."""
    valid = pc.match_substring_regex(frames, _FRAME_RE2)
    ascii_only = col.all_ascii(frames)
    episodes = col.concat(col.slice_chars(frames, 3, 6, ascii_only), col.slice_chars(frames, 7, 10, ascii_only))
    return pc.if_else(valid, episodes, pa.scalar(None, col.TYPE))


def build_frame_table(
    table: pd.DataFrame, episode_id: str, where: str | None = None, optional_columns: Collection[str] = ()
) -> FrameTable:
    """Resolve each row's most trusted rarity; reject rows that are malformed or ambiguous.

    `table` is a raw sheet (strings, header row as columns). Raises SheetError if there is no FRAME NUMBER
    column, or a header looks like a renamed rarity column (unless `optional_columns` names that column). `where` names
    the sheet in messages (defaults to the episode id). A frame with any rejected row is in no dataset.
    Columnar: Arrow string columns and numpy masks, a Python call per distinct rarity spelling only.
    """
    where = where or episode_id
    columns = _find_columns(table, where, optional_columns)
    # rows with text beyond the header's last column (see sheets.table_from_rows): which column it belongs to
    # is a guess, so the row is rejected
    extra_fields: dict[int, tuple[str, str]] = table.attrs.get("extra_fields") or {}
    notes = table.attrs.get("sheet_notes") or []
    sheet_rows = np.arange(len(table), dtype=np.int64) + FIRST_DATA_ROW
    frame = _cells(table, columns[FRAME_COLUMN])
    rarity_cells = {name: _cells(table, columns.get(name)) for name in RARITY_COLUMNS}
    metadata = _cells(table, columns.get(METADATA_COLUMN))

    rejected: list[pd.DataFrame] = []
    rejected_rows = np.zeros(len(table), dtype=bool)

    def reject(mask: np.ndarray, column: str, values: pa.ChunkedArray, reason: str | list[str]) -> None:
        rejected_rows[mask] = True
        if mask.any():
            rejected.append(
                pd.DataFrame(
                    {
                        "episode_id": episode_id,
                        "row": sheet_rows[mask],
                        "column": column,
                        "value": col.series(col.take(values, mask)),
                        "reason": reason,
                        "frame": col.series(col.take(frame, mask)),
                    }
                )
            )

    def empty(cells: pa.ChunkedArray) -> np.ndarray:
        return col.mask(pc.equal(cells, pa.scalar("", col.TYPE)))

    frame_empty = empty(frame)
    rarity_empty = {name: empty(cells) for name, cells in rarity_cells.items()}
    any_rarity_text = ~np.logical_and.reduce(list(rarity_empty.values()))
    blank = frame_empty & ~any_rarity_text & empty(metadata)
    live = ~blank

    # the most trusted non-empty cell decides; a bad value there rejects the row
    rarity = pa.chunked_array([col.constant("", len(table))], type=col.TYPE)
    decided = np.zeros(len(table), dtype=bool)
    bad_rarity = np.zeros(len(table), dtype=bool)
    for name in RARITY_COLUMNS:
        cells = rarity_cells[name]
        here = ~decided & ~rarity_empty[name]
        if not here.any():
            continue
        # a sheet holds a handful of distinct spellings: normalise each once, not once per row
        normal = _normalized_rarities(cells)
        ok = here & col.mask(pc.is_valid(normal))
        rarity = pc.if_else(pa.array(ok), normal, rarity)
        bad = here & ~ok
        reject(bad & live, columns[name], cells, "not a rarity (Legendary, Rare, Uncommon, Common, Trash/Junk)")
        bad_rarity |= bad
        decided |= here

    empty_frame = live & frame_empty
    reject(empty_frame, columns[FRAME_COLUMN], frame, "FRAME NUMBER is empty")
    frame_episode = _frame_episodes(frame)
    has_episode = col.mask(pc.is_valid(frame_episode))
    malformed = live & ~empty_frame & ~has_episode
    reject(malformed, columns[FRAME_COLUMN], frame, f"not a frame number like {example_frame(episode_id)}")
    other_episode = live & has_episode & ~col.mask(pc.equal(frame_episode, pa.scalar(episode_id, col.TYPE)))
    reject(other_episode, columns[FRAME_COLUMN], frame, f"frame of another episode (this sheet is {episode_id})")

    overflow = np.zeros(len(table), dtype=bool)
    if extra_fields:
        positions_by_label: dict[str, list[int]] = {}
        for position, (label, _) in extra_fields.items():
            positions_by_label.setdefault(label, []).append(position)
        texts = [""] * len(table)
        for position, (_, text) in extra_fields.items():
            texts[position] = text
        text_cells = col.strings(texts)
        for label, positions in positions_by_label.items():
            here = np.zeros(len(table), dtype=bool)
            here[positions] = True
            reject(
                here,
                label,
                text_cells,
                "text beyond the header's last column (an extra comma, or a column without a header)",
            )
            overflow |= here

    good = live & ~empty_frame & ~malformed & ~other_episode & ~bad_rarity & ~overflow

    # identical duplicates collapse; a frame given two different rarities is rejected everywhere
    ids = col.frame_ids(frame)  # a clean sheet: its frames as integers, cheaper to hash
    frame_codes = pd.factorize(ids)[0].astype(np.int64) if ids is not None else _codes(frame)
    rarity_codes = _codes(rarity)
    frame_count = int(frame_codes.max(initial=-1)) + 1
    candidates = np.flatnonzero(good)
    # each candidate frame's first row: numbered again by first appearance among the candidates, a row is its
    # frame's first exactly where its number exceeds every number before it
    numbers = pd.factorize(frame_codes[candidates])[0]
    first = np.ones(len(numbers), dtype=bool)
    first[1:] = numbers[1:] > np.maximum.accumulate(numbers)[:-1]
    first_rows = candidates[first]  # in sheet order, one per frame number
    conflicted = np.zeros(len(first_rows), dtype=bool)
    conflicted[numbers[rarity_codes[candidates] != rarity_codes[first_rows][numbers]]] = True
    conflict_mask = np.zeros(len(table), dtype=bool)
    conflict_mask[candidates[conflicted[numbers]]] = True
    conflict_rows = np.flatnonzero(conflict_mask)
    reasons = conflict_reasons(
        (sheet_rows[conflict_rows]).tolist(),
        frame_codes[conflict_rows].tolist(),
        col.take(rarity, conflict_mask).to_pylist(),
    )
    reject(conflict_mask, columns[FRAME_COLUMN], frame, reasons)
    # a frame with any rejected row (a sibling row with a bad rarity) is a conflict too: not placed from the
    # rows that look fine, so its files stay exactly where they are
    rejected_frames = np.zeros(frame_count, dtype=bool)
    rejected_frames[frame_codes[rejected_rows]] = True
    rows = first_rows[~conflicted & ~rejected_frames[frame_codes[first_rows]]]

    classified = rows[rarity_codes[rows] != _code_of(rarity, rarity_codes, "")]
    unclassified = len(rows) - len(classified)
    chosen = np.zeros(len(table), dtype=bool)
    chosen[classified] = True
    frames = col.frame(
        {"frame": col.take(frame, chosen), "rarity": col.take(rarity, chosen), "metadata": col.take(metadata, chosen)}
    )
    rejections = (
        pd.concat(rejected, ignore_index=True).sort_values(["row", "column"], kind="stable").reset_index(drop=True)
        if rejected
        else pd.DataFrame(columns=REJECTION_COLUMNS)
    )
    present = tuple(c for c in RARITY_COLUMNS if c in columns)
    rows_of_frames = sheet_rows[chosen].astype(np.int32)
    return FrameTable(episode_id, frames, rejections, unclassified, present, list(notes), rows_of_frames)


def _codes(values: pa.ChunkedArray) -> np.ndarray:
    """Equal values, equal integer codes (numbered by first appearance)."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _code_of(values: pa.ChunkedArray, codes: np.ndarray, value: str) -> int:
    """The code `_codes` gave `value` (-1 if absent)."""
    where = np.flatnonzero(col.mask(pc.equal(values, pa.scalar(value, col.TYPE))))
    return int(codes[where[0]]) if len(where) else -1
