"""The frame table before it was columnar (pandas over Python objects, with issues 10 and 16), kept as the
reference the columnar one must equal.

Only tests import this. `tests/test_frame_table_columnar.py` checks that `build_frame_table` gives the same
frames, rejections and counts on random sheets.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from tuttle_prep.core.frame_table import (
    _FRAME_RE,
    FIRST_DATA_ROW,
    FRAME_COLUMN,
    METADATA_COLUMN,
    RARITY_COLUMNS,
    REJECTION_COLUMNS,
    _find_columns,
    normalize_rarity,
)


def frame_episodes(frames: list[str]) -> list[str | None]:
    match = _FRAME_RE.match
    return [frame[3:6] + frame[7:10] if match(frame) else None for frame in frames]


def _cells(table: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None:
        return pd.Series("", index=table.index, dtype=object)
    # a comprehension over the plain values: pandas' .str.strip costs ~5x more on string columns
    values = table[column].to_numpy(dtype=object, na_value="")
    return pd.Series([v.strip() if type(v) is str else str(v).strip() for v in values], index=table.index, dtype=object)


def reference_frame_table(
    table: pd.DataFrame, episode_id: str, where: str | None = None, optional_columns: Collection[str] = ()
):
    """Resolve each row's most trusted rarity; reject rows that are malformed or ambiguous.

    `table` is a raw sheet (strings, header row as columns). Raises SheetError if there is no FRAME NUMBER
    column, or a header looks like a renamed rarity column (unless `optional_columns` names that column). `where` names
    the sheet in messages (defaults to the episode id). A frame with any rejected row is in no dataset.
    """
    where = where or episode_id
    columns = _find_columns(table, where, optional_columns)
    # rows with text beyond the header's last column (see sheets.table_from_rows): which column it belongs to
    # is a guess, so the row is rejected
    extra_fields: dict[int, tuple[str, str]] = table.attrs.get("extra_fields") or {}
    notes = table.attrs.get("sheet_notes") or []
    table = table.reset_index(drop=True)
    sheet_rows = pd.Series(np.arange(len(table)) + FIRST_DATA_ROW, index=table.index)
    frame = _cells(table, columns[FRAME_COLUMN])
    rarity_cells = {name: _cells(table, columns.get(name)) for name in RARITY_COLUMNS}
    metadata = _cells(table, columns.get(METADATA_COLUMN))

    rejected: list[pd.DataFrame] = []

    def reject(mask: pd.Series, column: str, values: pd.Series, reason: str) -> None:
        if mask.any():
            rejected.append(
                pd.DataFrame(
                    {
                        "episode_id": episode_id,
                        "row": sheet_rows[mask].to_numpy(),
                        "column": column,
                        "value": values[mask].to_numpy(),
                        "reason": reason,
                        "frame": frame[mask].to_numpy(),
                    }
                )
            )

    any_rarity_text = pd.concat(list(rarity_cells.values()), axis=1).ne("").any(axis=1)
    blank = frame.eq("") & ~any_rarity_text & metadata.eq("")
    live = ~blank

    # the most trusted non-empty cell decides; a bad value there rejects the row
    rarity = pd.Series("", index=table.index, dtype=object)
    decided = pd.Series(False, index=table.index)
    bad_rarity = pd.Series(False, index=table.index)
    for name in RARITY_COLUMNS:
        cells = rarity_cells[name]
        here = ~decided & cells.ne("")
        if not here.any():
            continue
        values = cells[here]
        # a sheet holds a handful of distinct spellings: normalise each once, not once per row
        normal = values.map({value: normalize_rarity(value) for value in values.unique()})
        ok = normal.notna()
        rarity[normal[ok].index] = normal[ok]
        bad = here & ~here.index.isin(normal[ok].index)
        reject(bad & live, columns[name], cells, "not a rarity (Legendary, Rare, Uncommon, Common, Trash/Junk)")
        bad_rarity |= bad
        decided |= here

    empty_frame = live & frame.eq("")
    reject(empty_frame, columns[FRAME_COLUMN], frame, "FRAME NUMBER is empty")
    frame_episode = pd.Series(frame_episodes(frame.tolist()), index=frame.index, dtype=object)
    malformed = live & ~empty_frame & frame_episode.isna()
    example = f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-00-00-08-12"
    reject(malformed, columns[FRAME_COLUMN], frame, f"not a frame number like {example}")
    other_episode = live & frame_episode.notna() & frame_episode.ne(episode_id)
    reject(other_episode, columns[FRAME_COLUMN], frame, f"frame of another episode (this sheet is {episode_id})")

    overflow = pd.Series(False, index=table.index)
    if extra_fields:
        positions_by_label: dict[str, list[int]] = {}
        for position, (label, _) in extra_fields.items():
            positions_by_label.setdefault(label, []).append(position)
        texts = pd.Series("", index=table.index, dtype=object)
        texts.iloc[list(extra_fields)] = [text for _, text in extra_fields.values()]
        for label, positions in positions_by_label.items():
            here = pd.Series(False, index=table.index)
            here.iloc[positions] = True
            reject(
                here,
                label,
                texts,
                "text beyond the header's last column (an extra comma, or a column without a header)",
            )
            overflow |= here

    good = live & ~empty_frame & ~malformed & ~other_episode & ~bad_rarity & ~overflow
    candidates = pd.DataFrame({"frame": frame[good], "rarity": rarity[good], "metadata": metadata[good]})

    # identical duplicates collapse; a frame given two different rarities is rejected everywhere
    distinct = candidates.drop_duplicates(["frame", "rarity"])
    conflicted = distinct["frame"][distinct["frame"].duplicated(keep=False)]
    conflict_mask = good & frame.isin(set(conflicted))
    reasons = []
    for position in conflict_mask[conflict_mask].index:
        mine = rarity[position]
        others = candidates[candidates["frame"].eq(frame[position]) & candidates["rarity"].ne(mine)]
        other_row = int(others.index[0]) + FIRST_DATA_ROW
        other = others["rarity"].iloc[0]

        def says(value: str) -> str:
            return f"says '{value}'" if value else "has no rarity"

        reasons.append(
            f"frame listed more than once with different rarities: this row {says(mine)}, row {other_row} {says(other)}"
        )
    reject(conflict_mask, columns[FRAME_COLUMN], frame, reasons)
    candidates = candidates[~candidates["frame"].isin(set(conflicted))]
    # a frame with any rejected row (a sibling row with a bad rarity) is a conflict too: not placed from the
    # rows that look fine, so its files stay exactly where they are
    rejected_frames = {f for part in rejected for f in part["frame"].tolist()}
    candidates = candidates[~candidates["frame"].isin(rejected_frames)]
    candidates = candidates.drop_duplicates("frame")

    unclassified = int(candidates["rarity"].eq("").sum())
    frames = candidates[candidates["rarity"].ne("")].reset_index(drop=True)
    rejections = (
        pd.concat(rejected, ignore_index=True).sort_values(["row", "column"], kind="stable").reset_index(drop=True)
        if rejected
        else pd.DataFrame(columns=REJECTION_COLUMNS)
    )
    present = tuple(c for c in RARITY_COLUMNS if c in columns)
    return frames, rejections, unclassified, present, list(notes)
