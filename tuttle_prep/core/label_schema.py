"""One label schema for every Parquet table the job writes about dataset files (pure, no I/O).

`labels.parquet` (in S3 and in a pull's DEST) and the dataset versions share it:

- `rarity` is an Arrow dictionary whose dictionary is always RARITIES in that fixed order (Legendary, Rare,
  Uncommon, Common, Trash), so its code *is* the class index, the same in every file whatever rarities a file
  holds (pandas reads it as a `category` with these categories in this order: `.cat.codes` is the class);
- `dataset` likewise, with the TUTTLE_SPLIT order (train, validate, test) and any other name after them;
- `episode_id` (`S01E03`) and `season` (`S01`) as dictionaries, `frame` as a string, and `seconds` (float64),
  the frame's time into its episode, `hh*3600 + mm*60 + ss + ff/24`, from the frame number.

Files written before this schema (plain strings, or dictionaries in the order of first appearance) stay
readable: readers cast to strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from .frame_table import FRAME_PATTERN, RARITIES

#: frames per second of the series: `ff` in a frame number counts 0-23
FPS = 24
#: the class index of each rarity: its position here, the dictionary order of every `rarity` column
CLASSES = tuple(RARITIES)
#: a whole frame number of ASCII digits, in RE2
_FRAME_RE2 = "^" + FRAME_PATTERN + "$"
_ZERO_FRAME = "TT_S00_E00_FRM-00-00-00-00"
#: the Arrow type of `rarity`, `dataset`, `episode_id` and `season`
DICT_TYPE = pa.dictionary(pa.int32(), pa.string())


def fixed_dictionary(values: pa.Array | pa.ChunkedArray, order: Sequence[str]) -> pa.Array:
    """`values` (strings) as a dictionary array whose dictionary is `order`, then any other value in sorted order;
    nulls stay null. The same value has the same code in every table built with the same `order`."""
    strings = values.cast(pa.string())
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    extra = sorted(set(pc.unique(strings.drop_null()).to_pylist()) - set(order))
    dictionary = pa.array([*order, *extra], type=pa.string())
    codes = pc.index_in(strings, value_set=dictionary).cast(pa.int32())
    return pa.DictionaryArray.from_arrays(codes, dictionary)


def rarity_column(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The rarity column with the fixed class order CLASSES."""
    return fixed_dictionary(values, CLASSES)


def season_column(episode_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`S01E03` -> `S01`, as a dictionary (sorted)."""
    seasons = pc.utf8_slice_codeunits(episode_ids.cast(pa.string()), 0, 3)
    return fixed_dictionary(seasons, ())


def episode_column(episode_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The episode ids as a dictionary (sorted)."""
    return fixed_dictionary(episode_ids, ())


def seconds_column(frames: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each frame's time into its episode in seconds (float64): `TT_S01_E01_FRM-00-01-02-12` -> 62.5.

    A value that is not a whole frame number (a version rewritten by hand) gets null.
    """
    text = frames.cast(pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if len(text) == 0:
        return pa.array([], type=pa.float64())
    valid = pc.fill_null(pc.match_substring_regex(text, _FRAME_RE2), False)
    text = pc.if_else(valid, text, _ZERO_FRAME)

    def part(start: int) -> pa.Array:
        return pc.utf8_slice_codeunits(text, start, start + 2 if start != -2 else None).cast(pa.float64())

    hours, minutes, seconds, frame = part(-11), part(-8), part(-5), part(-2)
    whole = pc.add(pc.add(pc.multiply(hours, 3600.0), pc.multiply(minutes, 60.0)), seconds)
    return pc.if_else(valid, pc.add(whole, pc.divide(frame, float(FPS))), pa.scalar(None, pa.float64()))
