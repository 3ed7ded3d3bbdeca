"""Build synthetic seasons in a test bucket: CSV-export sheets in S3, a season manifest, source frames.

Typical use (with the `bucket` fixture of conftest.py)::

    from season import dataset_keys, sheet_rows, upload_season

    upload_season(bucket, {"S01E01": sheet_rows("S01E01", ["Common", "Rare", None]), "S01E02": sheet_rows(...)})
    assert run_cli("sync").exit_code == 0
    assert dataset_keys(bucket) == {"TT_S01_E01_FRM-00-00-00-00": ("train", "Common"), ...}

Rows are dicts keyed by the sheet's header names (missing columns are blank). The default key layout is the
production one (`tuttle_twins/...`), which is what the CLI uses when no TUTTLE_*_PREFIX is set.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from tuttle_prep.core.frame_table import RARITIES, SHEET_HEADER

HEADER = list(SHEET_HEADER)
FRAME = "FRAME NUMBER"
UNSUPERVISED = "UNSUPERVISED CLASSIFICATION"
SUPERVISED = "SUPERVISED CLASSIFICATION"
JONNY = "JONNY's RECLASSIFICATION"

MANIFESTS_PREFIX = "tuttle_twins/manifests/"
ML_PREFIX = "tuttle_twins/ML/"
SOURCE_PREFIX = "tuttle_twins/"
IMG_SIZE = "thumbnails"
SHEETS_PREFIX = "tuttle_twins/test_sheets/"
JPEG = b"\xff\xd8\xff\xe0jpeg\xff\xd9"
#: a frame number, ASCII digits only (written out here, not taken from the code under test)
_FRAME = re.compile(r"TT_S[0-9]{2}_E[0-9]{2}_FRM-[0-9]{2}-[0-5][0-9]-[0-5][0-9]-(?:[01][0-9]|2[0-3])")

Row = dict[str, str]


class BucketLike(Protocol):
    """What these helpers need of conftest's `Bucket`."""

    name: str

    def put(self, key: str, body: bytes | str = ...) -> None: ...

    def keys(self, prefix: str = "") -> set[str]: ...


def frame_number(episode_id: str, index: int) -> str:
    """The `index`-th frame (24 per second) of an episode.

    frame_number("S01E02", 25) == "TT_S01_E02_FRM-00-00-01-01"
    """
    seconds, ff = divmod(index, 24)
    hh, rest = divmod(seconds, 3600)
    mm, ss = divmod(rest, 60)
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-{hh:02d}-{mm:02d}-{ss:02d}-{ff:02d}"


def row(frame: str, unsupervised: str = "", supervised: str = "", jonny: str = "", **columns: str) -> Row:
    """One sheet row; extra columns by their header name via `**{"METADATA": "..."}`."""
    return {FRAME: frame, UNSUPERVISED: unsupervised, SUPERVISED: supervised, JONNY: jonny, **columns}


def sheet_rows(
    episode_id: str, rarities: Iterable[str | None], column: str = UNSUPERVISED, start: int = 0
) -> list[Row]:
    """One row per rarity, for frames `start`, `start+1`, … of the episode; None leaves the rarity blank.

    `column` is the header the rarity goes in (UNSUPERVISED, SUPERVISED or JONNY).
    """
    rows = []
    for offset, rarity in enumerate(rarities):
        index = start + offset
        rows.append({FRAME: frame_number(episode_id, index), "ROW_INDEX": str(index), column: rarity or ""})
    return rows


def sheet_csv(rows: Sequence[Mapping[str, str]], header: Sequence[str] = HEADER) -> bytes:
    """A CSV export of the sheet: `header` first, then each row (unknown columns are appended to the header)."""
    columns = list(header) + [c for r in rows for c in r if c not in header]
    columns = list(dict.fromkeys(columns))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def sheet_key(episode_id: str) -> str:
    """Where `put_sheet` stores an episode's CSV export."""
    return f"{SHEETS_PREFIX}{episode_id}.csv"


def put_sheet(bucket: BucketLike, episode_id: str, rows: Sequence[Mapping[str, str]] | bytes) -> str:
    """Upload (or replace) an episode's sheet as CSV; return its `s3://` location for the manifest."""
    body = rows if isinstance(rows, bytes) else sheet_csv(rows)
    bucket.put(sheet_key(episode_id), body)
    return f"s3://{bucket.name}/{sheet_key(episode_id)}"


def source_key(frame: str, img_size: str = IMG_SIZE) -> str:
    """`tuttle_twins/s01e01/default_eng/v1/frames/thumbnails/<frame>.jpg`."""
    episode_id = frame[3:6] + frame[7:10]
    return f"{SOURCE_PREFIX}{episode_id.lower()}/default_eng/v1/frames/{img_size}/{frame}.jpg"


def dataset_key(dataset: str, rarity: str, frame: str) -> str:
    """`tuttle_twins/ML/<dataset>/<rarity>/<frame>.jpg`."""
    return f"{ML_PREFIX}{dataset}/{rarity}/{frame}.jpg"


def put_sources(bucket: BucketLike, frames: Iterable[str]) -> None:
    """Upload a small jpg source object for each frame (its body names the frame, so objects differ)."""
    for frame in frames:
        bucket.put(source_key(frame), JPEG + frame.encode())


def put_manifest(bucket: BucketLike, season: str, entries: Sequence[Mapping[str, Any]] | bytes | str) -> str:
    """Upload `<season>-episodes.json` (a list of episode objects, or raw text); return its key."""
    key = f"{MANIFESTS_PREFIX}{season}-episodes.json"
    body = entries if isinstance(entries, bytes | str) else json.dumps(list(entries), indent=2)
    bucket.put(key, body)
    return key


def manifest_entry(episode_id: str, location: str) -> dict[str, str]:
    """A manifest object for an episode whose sheet is at `location`."""
    return {
        "season_code": episode_id[:3],
        "episode_code": episode_id[3:],
        "google_spreadsheet_title": f"Tuttle Twins {episode_id} test sheet",
        "google_spreadsheet_share_link": location,
    }


def upload_season(
    bucket: BucketLike,
    sheets: Mapping[str, Sequence[Mapping[str, str]]],
    *,
    sources: bool = True,
    manifest: bool = True,
) -> dict[str, str]:
    """Upload each episode's sheet, a source jpg for every frame of the sheets, and one manifest per season.

    `sheets` maps episode ids (`"S01E01"`) to rows. Frames whose FRAME NUMBER is not of the episode get no
    source. Episodes of several seasons get one manifest each. Returns {episode_id: sheet location}.
    Call it again with more episodes of a season to replace that season's manifest (pass every episode).
    """
    locations = {episode_id: put_sheet(bucket, episode_id, rows) for episode_id, rows in sheets.items()}
    if sources:
        for episode_id, rows in sheets.items():
            prefix = f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-"
            put_sources(bucket, {r[FRAME] for r in rows if r.get(FRAME, "").startswith(prefix)})
    if manifest:
        seasons: dict[str, list[dict[str, str]]] = {}
        for episode_id, location in locations.items():
            seasons.setdefault(episode_id[:3], []).append(manifest_entry(episode_id, location))
        for season, entries in seasons.items():
            put_manifest(bucket, season, entries)
    return locations


def dataset_keys(
    bucket: BucketLike, ml_prefix: str = ML_PREFIX, strangers: set[str] | None = None
) -> dict[str, tuple[str, str]]:
    """The bucket's dataset objects (`<dataset>/<rarity>/<frame>.jpg`) as {frame: (dataset, rarity)}.

    The job's own files right under the prefix (labels.csv, ...) and its `_...` folders (`_versions/`) are not
    looked at. Every other key under the prefix that is not, as a whole, `<dataset>/<rarity>/<frame>.jpg` (a key
    ending in '/', with `//`, in a sub-folder, with a non-ASCII digit, ...) is a stranger: it is added to
    `strangers` if that is given, and raises AssertionError otherwise, so no odd key hides from an assertion.
    Raises AssertionError if a frame is in more than one dataset folder.
    """
    found: dict[str, tuple[str, str]] = {}
    odd: set[str] = set()
    for key in sorted(bucket.keys(ml_prefix)):
        relative = key[len(ml_prefix) :]
        if "/" not in relative or relative.startswith("_"):
            continue
        parts = relative.split("/")
        frame = parts[2][: -len(".jpg")] if len(parts) == 3 and parts[2].endswith(".jpg") else ""
        if not (parts[0] and parts[1] in RARITIES and _FRAME.fullmatch(frame)):
            odd.add(key)
            continue
        dataset, rarity, _ = parts
        assert frame not in found, f"{frame} is in two dataset folders: {found[frame]} and {(dataset, rarity)}"
        found[frame] = (dataset, rarity)
    if strangers is None:
        assert not odd, f"keys under {ml_prefix} that are no dataset object: {sorted(odd)!r} (pass strangers=set())"
    else:
        strangers.update(odd)
    return found


def frames_of(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """The FRAME NUMBER of each row."""
    return [r[FRAME] for r in rows]
