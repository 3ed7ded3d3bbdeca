"""Does the dataset listing agree with the latest dataset version? (pure: a version's keys and a listing in,
a verdict out)

A listing of the ML prefix that holds far fewer of the latest version's dataset objects than the version
records, or that lacks a dataset folder the version has objects in, is far more likely a listing gone wrong
(an S3-compatible store that drops the common prefixes of a '/'-delimited listing, a wrong prefix, a permission
that hides folders) than datasets that emptied since the last run: a plan made from it would copy the whole
catalogue again. The sync stops before applying such a plan unless `--force` (docs/safety.md).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import columns as col
from .plan import KeyLayout

#: the listing contradicts the version when it holds fewer than this share of the version's dataset objects
#: (exactly half present is not "fewer than half") ...
MIN_LISTED_SHARE = 0.5
#: ... and more than this many of them are missing (exactly 100 missing is not "more than 100"): a small
#: dataset may well lose half its few files to a sheet edit, which the delete guard watches instead
MAX_MISSING = 100
#: missing folders named in a message
FOLDERS_SHOWN = 10


@dataclass(frozen=True)
class ListingVerdict:
    """What the listing holds of the dataset objects of the version `version_id`."""

    version_id: str
    #: dataset objects the version records in the configured datasets' folders
    recorded: int
    #: of those, the ones the listing holds
    listed: int
    #: dataset folders (`<ML>/<dataset>/<rarity>/`) the version has objects in that the discovery listing lacks
    missing_folders: tuple[str, ...] = ()
    #: version rows whose dataset_key is not, as a whole, a dataset object of the layout (not compared)
    unparsed: int = 0

    @property
    def missing(self) -> int:
        return self.recorded - self.listed

    @property
    def too_few(self) -> bool:
        """Fewer than MIN_LISTED_SHARE of the recorded objects listed and more than MAX_MISSING missing."""
        return self.listed < self.recorded * MIN_LISTED_SHARE and self.missing > MAX_MISSING

    @property
    def contradicts(self) -> bool:
        """The listing is not to be planned from (without --force)."""
        return self.too_few or bool(self.missing_folders)

    def describe(self, listing_url: str, version_url: str) -> str:
        """One sentence with both counts and the missing folders (their keys escaped)."""
        text = (
            f"the listing of {listing_url} holds {self.listed:,} of the {self.recorded:,} dataset objects the "
            f"latest dataset version {version_url} records ({self.missing:,} missing)"
        )
        if self.missing_folders:
            shown = ", ".join(ascii(f) for f in self.missing_folders[:FOLDERS_SHOWN])
            more = len(self.missing_folders) - FOLDERS_SHOWN
            text += (
                f"; {len(self.missing_folders)} dataset folders the version has are absent from the listing: {shown}"
                + (f" and {more} more" if more > 0 else "")
            )
        if self.unparsed:
            text += f"; {self.unparsed:,} of the version's keys are not dataset objects of this layout (not compared)"
        return text


def check_listing(
    version_id: str,
    version_keys: Any,
    listed_keys: Any,
    listed_folders: Collection[str],
    layout: KeyLayout,
) -> ListingVerdict:
    """Compare a version's `dataset_key` column with the listed dataset objects and discovered rarity folders.

    Only version keys that are, as a whole, dataset objects of `layout` (its configured datasets) are counted:
    a version written under another TUTTLE_SPLIT or a key that does not fit is not held against the listing.
    """
    parsed, unparsed = layout.parse_dataset_keys(version_keys)
    keys = pc.unique(col.strings(parsed["key"]))
    keys = keys if isinstance(keys, pa.ChunkedArray) else pa.chunked_array([keys])
    listed = int(col.is_in(keys, col.strings(listed_keys)).sum()) if len(keys) else 0
    places = parsed[["dataset", "rarity"]].drop_duplicates()
    folders = {f"{layout.ml_prefix}{d}/{r}/" for d, r in places.itertuples(index=False)}
    missing = tuple(sorted(folders - set(listed_folders)))
    return ListingVerdict(version_id, len(keys), listed, missing, len(unparsed))
