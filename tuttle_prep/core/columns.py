"""Arrow-backed string columns for the million-row paths of the core (pure, no I/O).

pandas 3 keeps strings in Arrow (`str` dtype), but its `isin`, `.str` and concatenation on them are slow or
go through Python objects; these helpers do the work in pyarrow.compute and hand back pandas columns that
share the Arrow buffers (no copy).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: pandas' Arrow-backed string dtype with NaN as the missing value (pandas 3's default `str`)
STR = pd.StringDtype(storage="pyarrow", na_value=np.nan)

#: every character `str.strip()` removes: cells are trimmed exactly as Python would trim them
PY_WHITESPACE = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())

#: the Arrow type of every string column here (what pandas keeps its `str` columns in)
TYPE = pa.large_string()


def strings(values: Any) -> pa.ChunkedArray:
    """`values` (a pyarrow array, a pandas Series or Index, or any iterable of str) as an Arrow string column.

    Missing values become nulls; TypeError if `values` holds something that is neither a string nor missing.
    """
    if isinstance(values, pa.ChunkedArray):
        array = values
    elif isinstance(values, pa.Array):
        array = pa.chunked_array([values])
    elif isinstance(values, (pd.Series, pd.Index)):
        if isinstance(values.dtype, (pd.StringDtype, pd.ArrowDtype)) and values.dtype != object:
            arrow = pa.array(values.array)  # shares the buffers of an Arrow-backed column
            array = arrow if isinstance(arrow, pa.ChunkedArray) else pa.chunked_array([arrow])
        else:
            array = pa.chunked_array([_from_objects(values.to_numpy(dtype=object))])
    else:
        items = values if isinstance(values, (list, tuple, np.ndarray)) else list(values)
        array = pa.chunked_array([_from_objects(items)], type=TYPE)
    if array.type == TYPE:
        return array
    if array.type in (pa.null(), pa.string()) or pa.types.is_string_view(array.type):
        return array.cast(TYPE)
    if pa.types.is_dictionary(array.type) and array.type.value_type in (pa.string(), TYPE):
        return array.cast(TYPE)
    raise TypeError(f"expected strings, got Arrow type {array.type}")


def _from_objects(items: Any) -> pa.Array:
    try:
        return pa.array(items, type=TYPE, from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
        raise TypeError(f"expected strings: {exc}") from None


def series(array: pa.Array | pa.ChunkedArray, index: pd.Index | None = None) -> pd.Series:
    """A pandas `str` column sharing `array`'s buffers."""
    if isinstance(array, pa.Array):
        array = pa.chunked_array([array])
    if array.type != TYPE:
        array = array.cast(TYPE)
    column = pd.Series(array, dtype=STR)
    if index is not None:
        column.index = index
    return column


def frame(columns: dict[str, pa.Array | pa.ChunkedArray], names: list[str] | None = None) -> pd.DataFrame:
    """A DataFrame of `str` columns (RangeIndex) sharing the arrays' buffers."""
    names = names or list(columns)
    return pd.DataFrame({name: series(columns[name]) for name in names}, columns=names)


def empty_strings() -> pa.ChunkedArray:
    return pa.chunked_array([], type=TYPE)


def constant(value: str, length: int) -> pa.Array:
    """A string column holding `value` `length` times."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(length, dtype=np.int8)), pa.array([value], TYPE)
    ).cast(TYPE)


def mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow column as a numpy bool array, nulls as False."""
    filled = pc.fill_null(values, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks() if filled.num_chunks != 1 else filled.chunk(0)
    return filled.to_numpy(zero_copy_only=False)


def take(array: pa.ChunkedArray, selected: np.ndarray) -> pa.ChunkedArray:
    """The rows of `array` where the numpy bool `selected` is True, order kept (no copy when all are)."""
    if len(selected) and selected.all():
        return array
    return array.filter(pa.array(selected, type=pa.bool_()))


def is_in(values: pa.ChunkedArray, pool: pa.ChunkedArray | Iterable[str]) -> np.ndarray:
    """For each of `values`, True if it is one of `pool` (nulls never are). The hash table is built on the
    smaller side: a nightly plan asks whether a million keys are among a few thousand, or the reverse."""
    pool = pool if isinstance(pool, (pa.Array, pa.ChunkedArray)) else strings(list(pool))
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    if len(pool) == 0:
        return np.zeros(len(values), dtype=bool)
    pool = pc.drop_null(pool)
    if len(pool) > 4 * len(values):
        # only the members of `pool` that are among `values` matter: find them by hashing `values`
        pool = pool.filter(pc.is_in(pool, value_set=_one_array(values)))
    return mask(pc.is_in(values, value_set=_one_array(pool)))


def _one_array(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One Array for a set lookup (duplicates are harmless there)."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def concat(*parts: pa.ChunkedArray | str) -> pa.ChunkedArray:
    """Element-wise concatenation of string columns and constants (one pass, no Python per row)."""
    args = [pa.scalar(p, TYPE) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, pa.scalar("", TYPE))


def first_of_each(values: pa.ChunkedArray) -> np.ndarray:
    """True at the first row of each distinct value (nulls count as one value), like `drop_duplicates`."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    encoded = pc.dictionary_encode(values).combine_chunks()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    keep = np.zeros(len(codes), dtype=bool)
    keep[first] = True
    return keep


def chain(*arrays: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """String columns one after the other, without copying (their chunks become the result's)."""
    chunks = [c for a in arrays for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])]
    return pa.chunked_array(chunks, type=TYPE)


def all_ascii(values: pa.ChunkedArray) -> bool:
    """True if every (non-null) string is ASCII: then characters are bytes and slicing can skip UTF-8 decoding."""
    return len(values) == 0 or bool(pc.all(pc.string_is_ascii(values)).as_py() is not False)


def slice_chars(values: pa.ChunkedArray, start: int, stop: int | None, ascii_only: bool) -> pa.ChunkedArray:
    """Characters start:stop of each string (negative = from the end), as Python slices them."""
    if not ascii_only:
        return pc.utf8_slice_codeunits(values, start, stop if stop is not None else sys.maxsize)
    sliced = pc.binary_slice(values.cast(pa.large_binary()), start, stop if stop is not None else sys.maxsize)
    return sliced.cast(TYPE)


def iter_strings(values: Any, batch: int = 65_536) -> Iterator[str]:
    """The values of a string column as Python str, made `batch` at a time (not all at once)."""
    array = strings(values)
    for start in range(0, len(array), batch):
        yield from array.slice(start, batch).to_pylist()


_FRAME_TEMPLATE = "TT_S00_E00_FRM-00-00-00-00"
_FRAME_DIGITS = [i for i, c in enumerate(_FRAME_TEMPLATE) if c == "0"]
_FRAME_FIXED = [i for i, c in enumerate(_FRAME_TEMPLATE) if c != "0"]


def frame_ids(frames: pa.ChunkedArray) -> np.ndarray | None:
    """Each frame number as an int64 (its twelve ASCII digits), or None unless every value is a 26-character ASCII
    frame number. Equal ids are equal frames, so joins on frames can hash integers instead of strings."""
    if len(frames) == 0:
        return np.zeros(0, dtype=np.int64)
    array = frames.combine_chunks() if isinstance(frames, pa.ChunkedArray) else frames
    if array.null_count or array.type != TYPE:
        return None
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    width = len(_FRAME_TEMPLATE)
    if offsets[-1] - offsets[0] != width * len(array) or not (np.diff(offsets) == width).all():
        return None
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(len(array), width)
    fixed = np.frombuffer(_FRAME_TEMPLATE.encode(), dtype=np.uint8)[_FRAME_FIXED]
    if not (data[:, _FRAME_FIXED] == fixed).all():
        return None
    ids = np.zeros(len(array), dtype=np.int64)
    for position in _FRAME_DIGITS:
        digit = data[:, position] - np.uint8(ord("0"))  # wraps around below '0': > 9 too
        if (digit > 9).any():
            return None
        ids *= 10
        ids += digit
    return ids
