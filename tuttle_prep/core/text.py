"""Text from sheets, manifests and the bucket made safe to show: one place for every message, email and CSV.

- `escape_control(text)`: control characters (C0, DEL, C1, U+2028/U+2029, bidirectional overrides and
  isolates, BOM) written as visible escapes (`\\n`, `\\x1b`, `\\u202e`), so a manifest title can neither forge
  a line of a log or a digest email, nor move the terminal's cursor, nor reverse the text around it.
- `csv_cell(text)` / `csv_safe(table)`: the same, plus the OWASP rule against spreadsheet formula injection:
  a cell that starts with `=`, `+`, `-`, `@`, tab or CR (also after leading blanks, which a spreadsheet skips)
  gets a leading `'`, so a spreadsheet shows it as text.
- `csv_data_safe(table)` / `csv_data_read(table)`: the reversible form for a CSV the job reads back
  (`labels.csv`): only the leading `'` is added (also to a cell that already starts with `'`), and stripped on
  read, so every value means what it meant; control characters stay inside the CSV's quoting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a table is escaped: `escape_control` alone (the log, --help) stays light
    import pandas as pd

#: C0 controls, DEL, C1 controls, ALM, LRM/RLM, line/paragraph separators, bidi embeddings/overrides/isolates, BOM
_CONTROL = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff"
_CONTROL_RE = re.compile(f"[{_CONTROL}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: what a spreadsheet takes for the start of a formula (OWASP "CSV Injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: leading blanks a spreadsheet skips before it looks for a formula (what `str.lstrip()` strips; RE2 syntax, for
#: Arrow's search: a superset, each hit is checked again in Python)
_BLANKS = "[\\s\\pZ\\x{0b}\\x{1c}-\\x{1f}\\x{85}]*"
_NEEDS_CELL_WORK = f"^{_BLANKS}[=+@\\t\\r-]|[{_CONTROL}]"
_NEEDS_DATA_WORK = f"^'|^{_BLANKS}[=+@\\t\\r-]"


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """`text` with every control character written as a visible escape (`\\n`, `\\x1b`, `\\u2028`): one line."""
    text = str(text)
    return _CONTROL_RE.sub(_escape_one, text) if _CONTROL_RE.search(text) else text


def is_formula(text: str) -> bool:
    """Whether a spreadsheet would take `text` for a formula: it starts with = + - @ tab CR, also after blanks."""
    return text.startswith(FORMULA_START) or text.lstrip().startswith(FORMULA_START)


def neutralise_formula(text: str) -> str:
    """`'` + `text` if a spreadsheet would take `text` for a formula (`is_formula`), else `text`."""
    return "'" + text if is_formula(text) else text


def csv_cell(text: str) -> str:
    """A cell of a CSV written for people: control characters escaped, a formula start neutralised."""
    return neutralise_formula(escape_control(text))


def _map_cells(table: pd.DataFrame, pattern: str, func) -> pd.DataFrame:  # noqa: ANN001 - a str -> str function
    """`table` with `func` applied to the text cells matching `pattern` (found with Arrow, not per cell)."""
    import pandas as pd
    import pyarrow.compute as pc

    from . import columns as col

    out = table  # copied on the first column that changes: most tables need nothing
    for name in table.columns:
        series = table[name]
        if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        try:
            texts = col.strings(series)
        except TypeError:  # not all text (numbers beside strings): the text cells only
            texts = col.strings([v if type(v) is str else None for v in series.to_numpy(dtype=object)])
        hits = col.mask(pc.match_substring_regex(texts, pattern))
        if not hits.any():
            continue
        if out is table:
            out = table.copy()
        values = series.to_numpy(dtype=object).copy()
        for index in hits.nonzero()[0]:
            values[index] = func(values[index])
        out[name] = pd.Series(values, index=series.index, dtype=object)
    return out


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with its text cells `csv_cell`ed (a copy if any changes): for CSVs written for people (findings,
    diffs, plans, reports)."""
    return _map_cells(table, _NEEDS_CELL_WORK, csv_cell)


def csv_data_safe(table: pd.DataFrame) -> pd.DataFrame:
    """`table` for a CSV the job reads back (a copy if any cell changes): a `'` before each text cell that starts
    with a formula character or with `'` (undone by `csv_data_read`); nothing else changes."""
    return _map_cells(
        table, _NEEDS_DATA_WORK, lambda text: "'" + text if text.startswith("'") or is_formula(text) else text
    )


def csv_data_read(table: pd.DataFrame) -> pd.DataFrame:
    """`csv_data_safe` undone: the leading `'` of every text cell that has one is removed."""
    return _map_cells(table, "^'", lambda text: text[1:])


#: a cell that may be quoted from an unreadable header row: a short name (letters first; digits, spaces, ' ’ _ . ( ) -)
_COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 '’_.()-]{0,31}$")
#: at most this many characters of a header row are quoted in a message
HEADER_QUOTE_CHARS = 60


def quote_header(cells: Sequence[object], limit: int = HEADER_QUOTE_CHARS) -> str:
    """The cells of a header row that look like column names, quoted and cut to about `limit` characters, for a
    message about a header the job cannot use; the other cells are only counted. A file that is no sheet
    (`/etc/passwd`, an `.env` with keys) is never quoted: its lines do not look like column names."""
    names = [text for text in (str(c).strip() for c in cells) if _COLUMN_NAME.match(text)]
    shown: list[str] = []
    used = 0
    for name in names:
        quoted = f"'{name}'"
        if used + len(quoted) > limit:
            break
        shown.append(quoted)
        used += len(quoted) + 2
    left_out = len(cells) - len(shown)
    text = ", ".join(shown) or "no cell that looks like a column name"
    return text + (f" (and {left_out} more cell{'s' * (left_out != 1)} not shown)" if left_out else "")


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """'1 manifest file', '2 manifest files', '1,000 versions': a count and its noun, in the right number."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"
