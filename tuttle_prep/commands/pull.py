"""`pull`: copy datasets from S3 to a local folder (a training box), incrementally; `pull --version V`
rebuilds a dataset version there from the source frames.

The local layout mirrors the ML prefix: `DEST/<dataset>/<rarity>/<frame>.jpg`, plus `DEST/labels.csv`
(LABEL_COLUMNS) and `DEST/labels.parquet` (the same rows in the label schema, with `file_name` relative to DEST):
the pulled datasets' files that are on disk after this run (a failed download has no row), and the files of
every other configured dataset folder under DEST, as they are on disk (a second pull of other datasets into the
same DEST keeps the first pull's datasets in the index). For Hugging Face `datasets` it writes
`DEST/<dataset>/metadata.parquet` and the card `DEST/README.md` (`load_dataset(DEST)`: one split per dataset,
rarity a ClassLabel in the fixed order), and `DEST/.tuttle-version.json` names the dataset version the files are.

One frame, one place: a pull that would leave a frame file the pulled datasets no longer hold (without
`--delete`), or a frame the pulled datasets hold also in another dataset folder under DEST, is refused before
anything is written (MisplacedFiles, exit 1), naming the files and the fix.

A file is downloaded when it is missing locally or its size differs from the object's; each download
goes to `<name>.part` first and is renamed when complete, so an interrupted pull never leaves a truncated
jpg under its real name. `--delete` removes every other file under `DEST/<dataset>/` of the pulled datasets
(and then-empty folders); nothing outside them is touched. A dataset or rarity folder of the pulled datasets
that resolves (a symlink) outside DEST, or to DEST itself, refuses the pull before anything is written or deleted.
Metadata comes from the labels index the sync writes (`<ML prefix>labels.csv`), when there is one.

`pull --version V` takes the files of version V from the source frames instead. The version object is read
back as untrusted: every row is checked against the layout (`check_version_rows`) and every local folder must
resolve under DEST before anything is written; a version that fails is refused, exit 1. A file is fetched
when missing locally, of another size than the recorded dataset object, or of that size with other content (MD5
against the ETag, or against what `DEST/.tuttle-pull-index.parquet` recorded; the index spares a rerun the
hashing), and checked against the ETag the dataset object had (the source's, in versions older than that
column); a source changed since is taken from the object version with that ETag when the bucket keeps one;
`--delete` removes only `<dataset>/<rarity>/<frame>.jpg` files. Its labels index is the version's rows of
the pulled datasets whose file is on disk, with the version's metadata.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import NoReturn

import click
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import BotoCoreError, ClientError

from ..core.frame_table import FRAME_PATTERN, RARITIES, normalize_rarity
from ..core.freshness import holds_source
from ..core.labels import (
    CARD_MARK,
    CARD_NAME,
    HF_METADATA_NAME,
    LABELS_NAME,
    PARQUET_NAME,
    build_labels,
    dataset_card,
    imagefolder_metadata,
    labels_csv,
    labels_key,
    labels_table,
    parse_labels_csv,
    table_parquet,
)
from ..core.plan import KeyLayout
from ..core.run_report import EXIT_ERRORS, EXIT_OK
from ..core.selectors import unmatched
from ..core.versions import VersionError, check_version_rows, shown, version_labels
from ..edges.aws import describe, error_code
from ..edges.pull_index import INDEX_NAME, IndexEntry, index_bytes, is_single_part, md5_of, read_index
from ..edges.s3_apply import Failure
from ..edges.s3_bucket import S3Bucket, progress, run_bounded
from ..edges.s3_labels import read_labels_object
from ..edges.s3_listing import list_datasets
from ..edges.s3_objects import PART_SUFFIX, SourceChanged, SourceDownloaded, download_object, download_source, open_part
from ..edges.s3_versions import VersionStore
from ..errors import InventoryError
from ..settings import IMG_SIZES
from .common import episode_option, fail_usage, format_option, key_layout, load_settings, make_folder, open_bucket
from .versions import flag_partial, list_ids, read_or_exit, resolve_or_exit

log = logging.getLogger(__name__)
#: the command's outcome is logged under the package's own name, as every command's is
outcome_log = logging.getLogger("tuttle_prep")
#: problems named one by one, then a count
SHOWN = 20
#: DEST/.tuttle-version.json: which dataset version the files under DEST are (JSON), so a model can be traced
MARKER_NAME = ".tuttle-version.json"


class MisplacedFiles(Exception):
    """Frame files under DEST that would make one frame appear in two places, or a frame that is no longer in
    the pulled datasets appear in them (stale files): the pull refuses before anything is written."""

    def __init__(self, stale: list[str], duplicates: list[str], others: list[str]) -> None:
        self.stale, self.duplicates, self.others = stale, duplicates, others
        parts = []
        if stale:
            named = ", ".join(shown(n) for n in stale[:SHOWN]) + (
                f" and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
            )
            parts.append(
                f"{len(stale)} local files of the pulled datasets are no longer in them ({named}); rerun with "
                "--delete to remove them (or move them out of DEST)"
            )
        if duplicates:
            named = ", ".join(shown(n) for n in duplicates[:SHOWN]) + (
                f" and {len(duplicates) - SHOWN} more" if len(duplicates) > SHOWN else ""
            )
            parts.append(
                f"{len(duplicates)} files of {', '.join(others)} (not pulled this run) hold frames the pulled datasets "
                f"have too ({named}); pull {' '.join('--dataset ' + d for d in others)} --delete as well (or "
                "remove those folders)"
            )
        super().__init__("; ".join(parts) + "; one frame would be in two places, so nothing was downloaded or deleted")


def misplaced_files(
    dest: Path, datasets: Sequence[str], all_datasets: Sequence[str], wanted: set[str]
) -> tuple[list[str], list[str], list[str]]:
    """(stale, duplicates, other datasets): `<dataset>/<rarity>/<FRAME NUMBER>.jpg` files (names relative to DEST,
    sorted) under the pulled `datasets` that are not in `wanted`, and those under the other configured dataset
    folders whose frame is one `wanted` has. Only file names of the job's layout count; anything else is left."""
    wanted_frames = {name.rsplit("/", 1)[-1] for name in wanted}
    stale: list[str] = []
    duplicates: list[str] = []
    others = []
    for dataset in all_datasets:
        pulled = dataset in datasets
        root = dest / dataset
        if not root.is_dir() or root.is_symlink():
            continue
        found = False
        for rarity in RARITIES:
            folder = root / rarity
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if not _FRAME_FILE.fullmatch(entry.name):
                    continue
                name = f"{dataset}/{rarity}/{entry.name}"
                if pulled and name not in wanted:
                    stale.append(name)
                elif not pulled and entry.name in wanted_frames:
                    duplicates.append(name)
                    found = True
        if found:
            others.append(dataset)
    return sorted(stale), sorted(duplicates), others


def check_misplaced(
    dest: Path, datasets: Sequence[str], all_datasets: Sequence[str], wanted: set[str], delete: bool
) -> None:
    """MisplacedFiles unless, after this pull, every frame file under DEST is in one place: stale files of the
    pulled datasets go with --delete (else refused), a frame in a dataset folder not pulled is always refused."""
    stale, duplicates, others = misplaced_files(dest, datasets, all_datasets, wanted)
    if delete:
        stale = []
    if stale or duplicates:
        raise MisplacedFiles(stale, duplicates, others)


@dataclass
class Download:
    """One object to fetch."""

    key: str
    path: Path
    size: int


@dataclass
class PullResult:
    """What a pull found and did."""

    listed: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    up_to_date: int = 0
    deleted: int = 0
    failures: list[Failure] = field(default_factory=list)
    labels_rows: int = 0
    labels_written: bool = False
    #: why the metadata column is empty, if it is
    metadata_note: str | None = None
    #: requested datasets with no files in S3 (with --delete, their local folders are left alone)
    empty_datasets: list[str] = field(default_factory=list)
    #: dataset folders under DEST not pulled this run, whose files labels.csv lists as they are on disk
    indexed_from_disk: list[str] = field(default_factory=list)
    #: --dry-run: what would be downloaded (files, bytes); nothing was written or deleted
    dry_run: bool = False
    would_download: int = 0
    would_download_bytes: int = 0
    #: DEST/.tuttle-version.json's content
    marker: dict[str, object] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def to_json(self) -> dict[str, object]:
        """The result as one JSON-ready record (`pull --format json`)."""
        return {
            "dry_run": self.dry_run,
            "listed": self.listed,
            "downloaded": self.downloaded,
            "downloaded_bytes": self.downloaded_bytes,
            "would_download": self.would_download,
            "would_download_bytes": self.would_download_bytes,
            "up_to_date": self.up_to_date,
            "deleted": self.deleted,
            "failed": self.failed,
            "failures": [{"key": f.key, "error": f.error} for f in self.failures],
            "labels_rows": self.labels_rows,
            "labels_written": self.labels_written,
            "metadata_note": self.metadata_note,
            "empty_datasets": list(self.empty_datasets),
            "indexed_from_disk": list(self.indexed_from_disk),
        }


@dataclass(frozen=True)
class PullFilter:
    """`pull --episode/--rarity`: only these episodes' and rarities' files (empty: all)."""

    episodes: tuple[str, ...] = ()
    rarities: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.episodes or self.rarities)

    def matches(self, table: pd.DataFrame) -> pd.Series:
        """True for the rows (INVENTORY_COLUMNS) inside the filter."""
        inside = pd.Series(True, index=table.index)
        if self.episodes:
            inside &= table["episode_id"].isin(self.episodes)
        if self.rarities:
            inside &= table["rarity"].isin(self.rarities)
        return inside


class NoSuchEpisode(Exception):
    """A `pull --episode` that matches no listed file: a usage error (exit 2), nothing done."""


def local_path(dest: Path, ml_prefix: str, key: str) -> Path:
    """`tuttle_twins/ML/train/Rare/X.jpg` -> `DEST/train/Rare/X.jpg` (keys come from a parsed listing)."""
    return dest.joinpath(*key[len(ml_prefix) :].split("/"))


def plan_downloads(dest: Path, ml_prefix: str, keys: Sequence[str], sizes: dict[str, int]) -> list[Download]:
    """The objects that are missing locally or whose local size differs."""
    downloads = []
    for key in keys:
        path = local_path(dest, ml_prefix, key)
        try:
            local_size: int | None = path.stat().st_size
        except FileNotFoundError:
            local_size = None
        if local_size != sizes[key]:
            downloads.append(Download(key, path, sizes[key]))
    return downloads


def delete_extra_files(
    dest: Path,
    datasets: Sequence[str],
    wanted: set[Path],
    in_scope: Callable[[Path], bool] | None = None,
    dry_run: bool = False,
) -> int:
    """Remove files under `dest/<dataset>/` that are not in `wanted` (and, with `in_scope`, for which it is
    true), then empty folders; return the count. `dry_run`: count only, remove nothing."""
    deleted = 0
    for dataset in datasets:
        root = dest / dataset
        if not root.is_dir():
            continue
        for folder, _, files in os.walk(root, topdown=False):
            for name in files:
                path = Path(folder) / name
                if path not in wanted and (in_scope is None or in_scope(path)):
                    if not dry_run:
                        path.unlink()
                    deleted += 1
            if not dry_run and Path(folder) != root and not os.listdir(folder):
                os.rmdir(folder)
    return deleted


def filter_scope(dest: Path, layout: KeyLayout, selection: PullFilter) -> Callable[[Path], bool]:
    """For a filtered --delete: true only for a local file that is, as a whole, a dataset file of the filter
    (`<dataset>/<rarity>/<FRAME NUMBER>.jpg` of a selected episode and rarity); anything else is kept."""

    def in_scope(path: Path) -> bool:
        key = f"{layout.ml_prefix}{path.relative_to(dest).as_posix()}"
        found, _ = layout.parse_dataset_keys([key])
        return bool(len(found)) and bool(selection.matches(found).all())

    return in_scope


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` (atomically) unless it already holds exactly that; True if written."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    part = path.with_name(path.name + PART_SUFFIX)
    with open_part(path) as out:
        out.write(data)
    os.replace(part, path)
    return True


def local_dataset_files(dest: Path, layout: KeyLayout, datasets: Sequence[str]) -> pd.DataFrame:
    """The dataset files on disk under `dest/<dataset>/` (INVENTORY_COLUMNS, keys as in S3); other files skipped."""
    keys = []
    for dataset in datasets:
        root = dest / dataset
        for folder, _, files in os.walk(root):
            relative = Path(folder).relative_to(dest).as_posix()
            keys.extend(f"{layout.ml_prefix}{relative}/{name}" for name in files if not name.endswith(PART_SUFFIX))
    found, _ = layout.parse_dataset_keys(keys)
    return found


def index_catalogue(
    dest: Path, layout: KeyLayout, datasets: Sequence[str], current: pd.DataFrame, result: PullResult
) -> pd.DataFrame:
    """What DEST/labels.csv lists: the pulled datasets' S3 files that are on disk (a failed download has no row),
    and the files of every other configured dataset folder already under DEST (pulled by an earlier run)."""
    # a listed file is on disk unless its download failed: it was up to date (same size) or has just been written
    failed = {failure.key for failure in result.failures}
    pulled = current[~current["key"].isin(failed)] if failed else current
    result.indexed_from_disk = [d for d in layout.datasets if d not in datasets and (dest / d).is_dir()]
    if not result.indexed_from_disk:
        return pulled
    earlier = local_dataset_files(dest, layout, result.indexed_from_disk)
    return pd.concat([pulled, earlier], ignore_index=True)


def _index_metadata(store: S3Bucket, layout: KeyLayout, result: PullResult) -> pd.DataFrame | None:
    key = labels_key(layout.ml_prefix)
    where = f"s3://{store.bucket}/{key}"
    try:
        data = read_labels_object(store, key)
    except (ClientError, BotoCoreError) as exc:
        result.metadata_note = f"cannot read the labels index {where} ({describe(exc)}); metadata left empty"
        return None
    if data is None:
        result.metadata_note = f"no labels index at {where} yet (a real sync writes it); metadata left empty"
        return None
    try:
        return parse_labels_csv(data, where)
    except ValueError as exc:
        result.metadata_note = f"{exc}; metadata left empty"
        return None


def pull_datasets(
    store: S3Bucket,
    layout: KeyLayout,
    datasets: Sequence[str],
    dest: Path,
    delete: bool = False,
    workers: int = 16,
    selection: PullFilter = PullFilter(),
    dry_run: bool = False,
) -> PullResult:
    """Bring `dest` in line with `datasets` (only the files `selection` names, when it names any); list failures
    raise InventoryError, download failures are collected; NoSuchEpisode, before anything is written, for a
    selected episode without a listed file; UnsafePath, before anything is written or deleted, if a dataset or
    rarity folder resolves outside DEST. `dry_run`: plan and count, write and delete nothing."""
    result = PullResult(dry_run=dry_run)
    wanted_layout = replace(layout, datasets=tuple(datasets))
    inventory = list_datasets(store, wanted_layout, with_sizes=True)
    current, _ = wanted_layout.parse_dataset_keys(inventory.keys)
    if selection.episodes:
        unknown = unmatched("--episode", selection.episodes, set(current["episode_id"]), "episode with files in "
                            f"{', '.join(datasets)}")
        if unknown:
            raise NoSuchEpisode("; ".join(unknown))
    # the one-place check judges DEST against every listed file, not only the selection's (a filtered pull must
    # not call the other episodes' files stale)
    listed_names = {key[len(layout.ml_prefix) :] for key in current["key"].tolist()}
    if selection:
        current = current[selection.matches(current)].reset_index(drop=True)
    result.listed = len(current)
    keys = current["key"].tolist()

    # before anything is written: every rarity folder the pull writes to or cleans stays under DEST
    dest_root = dest.resolve()
    for dataset in datasets:
        checked_folder(dest_root, dest / dataset)
        for rarity in RARITIES:
            checked_folder(dest_root, dest / dataset / rarity)
    # an empty listing more likely means a wrong bucket or prefix than an emptied dataset: its folder is not judged
    result.empty_datasets = [d for d in datasets if not current["dataset"].eq(d).any()]
    judged = [d for d in datasets if d not in result.empty_datasets]
    check_misplaced(
        dest, judged, [d for d in layout.datasets if d not in result.empty_datasets], listed_names, delete
    )
    downloads = plan_downloads(dest, layout.ml_prefix, keys, inventory.sizes)
    result.up_to_date = len(keys) - len(downloads)
    log.info("%d dataset files listed, %d to download", len(keys), len(downloads))
    if dry_run:
        result.would_download = len(downloads)
        result.would_download_bytes = sum(d.size for d in downloads)
        result.empty_datasets = [d for d in datasets if not current["dataset"].eq(d).any()]
        if delete:
            wanted = {local_path(dest, layout.ml_prefix, key) for key in keys}
            wanted |= {dest / d / HF_METADATA_NAME for d in datasets}
            deletable = [d for d in datasets if d not in result.empty_datasets]
            scope = filter_scope(dest, layout, selection) if selection else None
            result.deleted = delete_extra_files(dest, deletable, wanted, scope, dry_run=True)
        return result
    with progress(len(downloads), "download") as bar:
        for item, outcome in run_bounded(lambda d: download_object(store, d.key, d.path), downloads, workers):
            bar.update(1)
            if isinstance(outcome, (ClientError, BotoCoreError, OSError)):
                result.failures.append(Failure("download", item.key, describe(outcome)))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                result.downloaded += 1
                result.downloaded_bytes += outcome

    if delete:
        wanted = {local_path(dest, layout.ml_prefix, key) for key in keys}
        wanted |= {dest / d / HF_METADATA_NAME for d in datasets}
        deletable = [d for d in datasets if d not in result.empty_datasets]
        scope = filter_scope(dest, layout, selection) if selection else None
        result.deleted = delete_extra_files(dest, deletable, wanted, scope)

    catalogue = index_catalogue(dest, layout, datasets, current, result)
    if selection:  # the pulled datasets' files outside the filter are listed as they are on disk
        on_disk = local_dataset_files(dest, layout, datasets)
        catalogue = pd.concat([catalogue, on_disk[~selection.matches(on_disk)]], ignore_index=True)
    labels = build_labels(catalogue, _index_metadata(store, layout, result))
    result.labels_rows = len(labels)
    result.marker = latest_version_match(store, layout, datasets, current, result)
    result.labels_written = write_labels(dest, labels, layout.datasets, result.marker, result)
    return result


def latest_version_match(
    store: S3Bucket, layout: KeyLayout, datasets: Sequence[str], current: pd.DataFrame, result: PullResult
) -> dict[str, object]:
    """What DEST's marker says after a plain pull: the latest dataset version, and `version` = its id if the pulled
    datasets' files are exactly that version's (dataset, rarity, frame) for them, else None (a sync ran since,
    or the version could not be read: `note` says which)."""
    marker: dict[str, object] = {"pulled": "datasets", "datasets": list(datasets), "version": None}
    versions = VersionStore(store.client, store.bucket, layout.ml_prefix)
    try:
        ids = versions.list().ids
        if not ids:
            marker["note"] = "no dataset version yet (a real sync writes them)"
            return marker
        table, info = versions.read(ids[-1], ["dataset", "dataset_key"])
    except (InventoryError, VersionError, ClientError, BotoCoreError) as exc:
        reason = exc if isinstance(exc, (InventoryError, VersionError)) else describe(exc)
        marker["note"] = f"the latest version could not be read ({reason})"
        return marker
    marker["latest_version"] = ids[-1]
    if info.partial is not None:  # the newest version, written by a run that failed: still what the bucket held
        marker["latest_partial"] = True
    mine = table.filter(pc.is_in(table["dataset"], value_set=pa.array(list(datasets), pa.string())))
    failed = {failure.key for failure in result.failures}
    pulled = set(current["key"]) - failed
    if set(mine["dataset_key"].to_pylist()) == pulled:
        marker["version"] = ids[-1]
    else:
        marker["note"] = (
            f"the pulled files differ from version {ids[-1]} (a sync changed the datasets since, or a download failed)"
        )
    return marker


def write_labels(
    dest: Path, labels: pd.DataFrame, datasets: Sequence[str], marker: dict[str, object], result: object = None
) -> bool:
    """`DEST/labels.csv`, `DEST/labels.parquet` (label schema, `file_name`, the version in its schema metadata),
    `DEST/<dataset>/metadata.parquet` and `DEST/README.md` for Hugging Face `datasets`, and DEST/.tuttle-version.json
    (`marker`), each only if its content changed; True if labels.csv or labels.parquet was written."""
    info = {"version": marker.get("version")}
    csv_written = write_if_changed(dest / LABELS_NAME, labels_csv(labels))
    table = labels_table(labels, datasets, True, info)
    parquet_written = write_if_changed(dest / PARQUET_NAME, table_parquet(table))
    present = [d for d in datasets if d in set(labels["dataset"])]
    for dataset in present:
        write_if_changed(dest / dataset / HF_METADATA_NAME, imagefolder_metadata(table, dataset))
    card = dest / CARD_NAME
    try:
        foreign = CARD_MARK not in card.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        foreign = False
    if foreign:
        log.warning("%s is not the card pull writes: left alone, so load_dataset(DEST) does not see the splits", card)
    else:
        write_if_changed(card, dataset_card(present))
    write_if_changed(dest / MARKER_NAME, (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode())
    return csv_written or parquet_written


# ---- pull --version ------------------------------------------------------------------------------

_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
#: a dataset file's name in a rarity folder: `<FRAME NUMBER>.jpg`, ASCII digits, the whole name
_FRAME_FILE = re.compile(f"{FRAME_PATTERN}\\.jpg", re.ASCII)


class UnsafePath(Exception):
    """A local path that would leave DEST (a folder or file under it resolves elsewhere): nothing is done."""


@dataclass
class SourceDownload:
    """One source frame to fetch for a version: where it goes (`name` relative to DEST), its recorded ETag
    and size, and the MD5 of the local file of that size it replaces (None if there was none)."""

    key: str
    path: Path
    name: str
    etag: str
    size: int
    local_md5: str | None = None
    #: other ETags the same bytes may carry (the source's, when the version says the dataset held them)
    also: tuple[str, ...] = ()


@dataclass
class _Check:
    """A local file of the recorded size to verify by content: its stat before reading, its index entry."""

    item: SourceDownload
    stat: os.stat_result
    entry: IndexEntry | None


@dataclass
class VersionPullResult:
    """What a `pull --version` found and did."""

    files: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    up_to_date: int = 0
    deleted: int = 0
    #: local files of the recorded size whose content was hashed (not known from the index to be unchanged)
    hashed: int = 0
    #: (path relative to DEST, its MD5, the source's MD5) of local files whose bytes differed from the source's
    #: (downloaded again), sorted
    corrupted: list[tuple[str, str, str]] = field(default_factory=list)
    #: local files of the recorded size with no MD5 to check them against (a multipart or SSE-KMS ETag and no
    #: record in the index) that were downloaded again and had the source's bytes
    unverifiable: int = 0
    #: why the local index was ignored, if it was
    index_note: str | None = None
    #: source keys that are gone (or had no source when the version was written), sorted
    missing_sources: list[str] = field(default_factory=list)
    #: (source key, recorded ETag, current ETag) of the sources changed since the version, sorted
    changed_sources: list[tuple[str, str, str]] = field(default_factory=list)
    #: the changed sources were downloaded anyway (--accept-changed-sources)
    accepted_changed: bool = False
    #: files taken from an older S3 object version of their source (the source changed since the version)
    from_older_versions: int = 0
    #: why changed sources could not be looked up among object versions (no permission, say), by source key
    version_lookup_problems: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    labels_rows: int = 0
    labels_written: bool = False

    @property
    def exit_code(self) -> int:
        """1 if some file of the version could not be rebuilt as the version had it, else 0."""
        unfaithful = bool(self.changed_sources) and not self.accepted_changed
        return EXIT_ERRORS if self.failures or self.missing_sources or unfaithful else EXIT_OK


def checked_folder(dest_root: Path, folder: Path) -> Path:
    """`folder` if it resolves (symlinks followed) to a folder under `dest_root` (DEST resolved) other than
    DEST itself; UnsafePath otherwise."""
    resolved = folder.resolve()
    if resolved == dest_root or not resolved.is_relative_to(dest_root):
        raise UnsafePath(f"{shown(str(folder))} resolves to {shown(str(resolved))}, not a folder under {dest_root}")
    return folder


def _local_stat(dest_root: Path, path: Path) -> os.stat_result | None:
    """The stat of a dataset file under DEST (None if absent); UnsafePath if it is a link leading out of DEST."""
    try:
        stat = os.lstat(path)
    except FileNotFoundError:
        return None
    if S_ISLNK(stat.st_mode):
        resolved = path.resolve()
        if not resolved.is_relative_to(dest_root):
            raise UnsafePath(f"{shown(str(path))} is a link to {shown(str(resolved))}, outside {dest_root}")
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
    return stat if S_ISREG(stat.st_mode) else None


def plan_source_downloads(
    dest: Path, rows: pa.Table, index: dict[str, IndexEntry]
) -> tuple[list[SourceDownload], list[_Check], dict[str, IndexEntry], list[str]]:
    """Split the version's rows: downloads (missing locally or of another size than the recorded source), files
    of that size to check by content, the entries of files the index shows unchanged since they were verified
    against the recorded ETag (up to date without reading them), and the source keys the version has no ETag
    for (their source was missing when it was written). UnsafePath, before anything is written, if a folder
    or file the rows lead to resolves outside DEST."""
    dest_root = dest.resolve()
    downloads: list[SourceDownload] = []
    checks: list[_Check] = []
    verified: dict[str, IndexEntry] = {}
    unrecorded: list[str] = []
    folders: dict[tuple[str, str], Path] = {}
    names = ("dataset", "rarity", "frame", "source_key", "source_etag", "source_size", "dataset_etag", "dataset_size")
    columns = [rows[n].to_pylist() if n in rows.column_names else [None] * rows.num_rows for n in names]
    for dataset, rarity, frame, key, source_etag, source_size, held_etag, held_size in zip(*columns, strict=True):
        # what the dataset held (recorded since issue 22); a version without it recorded only the source's
        held = held_etag is not None and held_size is not None
        etag, size = (held_etag, held_size) if held else (source_etag, source_size)
        if etag is None or size is None:
            unrecorded.append(key)
            continue
        same = held and holds_source(held_etag, held_size, source_etag, source_size)
        also = (source_etag,) if same and source_etag != etag else ()
        folder = folders.get((dataset, rarity))
        if folder is None:
            folder = folders[(dataset, rarity)] = checked_folder(dest_root, dest / dataset / rarity)
        name = f"{dataset}/{rarity}/{frame}.jpg"
        item = SourceDownload(key, folder / f"{frame}.jpg", name, etag, size, also=also)
        stat = _local_stat(dest_root, item.path)
        if stat is None or stat.st_size != size:
            downloads.append(item)
            continue
        entry = index.get(name)
        if entry is not None and entry.still(stat, etag):
            verified[name] = entry
        else:
            checks.append(_Check(item, stat, entry))
    return downloads, checks, verified, unrecorded


def _content_verified(check: _Check, md5: str) -> bool:
    """A file of the recorded size holds the source's bytes: its MD5 is the single-part ETag, or is the MD5 the
    index recorded when this file was verified (downloaded) against the same ETag."""
    etag = check.item.etag
    if is_single_part(etag) and md5 == etag.lower():
        return True
    return check.entry is not None and check.entry.etag == etag and check.entry.md5 == md5


def delete_unplaced_files(dest: Path, datasets: Sequence[str], wanted: set[str]) -> int:
    """Remove the dataset files under DEST the job would place (`<dataset>/<rarity>/<FRAME NUMBER>.jpg` of
    `datasets`, the five rarities) that are not in `wanted` (paths relative to DEST), then the rarity folders
    left empty; return the count. Any other file or folder is left alone, and so is DEST itself; UnsafePath
    if a rarity folder resolves outside DEST (nothing deleted there)."""
    dest_root = dest.resolve()
    deleted = 0
    for dataset in datasets:
        for rarity in RARITIES:
            folder = checked_folder(dest_root, dest / dataset / rarity)
            if not folder.is_dir():
                continue
            with os.scandir(folder) as entries:
                extra = [
                    e.path
                    for e in entries
                    if _FRAME_FILE.fullmatch(e.name)
                    and (e.is_symlink() or e.is_file(follow_symlinks=False))
                    and f"{dataset}/{rarity}/{e.name}" not in wanted
                ]
            for path in extra:
                os.unlink(path)
                deleted += 1
            if extra and not os.listdir(folder):
                os.rmdir(folder)
    return deleted


def pull_version(
    store: S3Bucket,
    table: pa.Table,
    datasets: Sequence[str],
    dest: Path,
    delete: bool = False,
    workers: int = 16,
    accept_changed: bool = False,
    layout: KeyLayout | None = None,
    version_id: str | None = None,
) -> VersionPullResult:
    """Bring `dest` in line with the `datasets` of a version (its rows in `table`, checked by the caller against
    the layout's rules), downloading from the source frames; failed downloads and changed or missing sources
    are collected, not raised. A local file of the recorded size is kept only if its content is the source's
    (MD5, or the local index shows it unchanged since it was verified); UnsafePath, before anything is
    written, if a path would leave DEST. `layout` (default: `datasets`) names the datasets whose entries the
    local index may hold."""
    result = VersionPullResult(accepted_changed=accept_changed)
    rows = table.filter(pc.is_in(table["dataset"], value_set=pa.array(list(datasets), type=pa.string())))
    result.files = rows.num_rows
    index_layout = layout or KeyLayout("", "", "", tuple(datasets))
    index, result.index_note = read_index(dest, index_layout)
    downloads, checks, verified, result.missing_sources = plan_source_downloads(dest, rows, index)
    if delete:  # before anything is written: every rarity folder --delete would clean stays under DEST
        for dataset in datasets:
            for rarity in RARITIES:
                checked_folder(dest.resolve(), dest / dataset / rarity)
    places = {
        f"{d}/{r}/{f}.jpg"
        for d, r, f in zip(*(rows[n].to_pylist() for n in ("dataset", "rarity", "frame")), strict=True)
    }
    check_misplaced(dest, datasets, index_layout.datasets, places, delete)

    with progress(len(checks), "verify") as bar:
        for check, outcome in run_bounded(lambda c: md5_of(c.item.path), checks, workers):
            bar.update(1)
            if isinstance(outcome, FileNotFoundError):
                downloads.append(check.item)
            elif isinstance(outcome, BaseException):
                raise outcome
            elif _content_verified(check, outcome):
                verified[check.item.name] = IndexEntry.of(check.stat, check.item.etag, outcome)
            else:
                check.item.local_md5 = outcome
                downloads.append(check.item)
    result.hashed = len(checks)
    result.up_to_date = len(verified)
    log.info(
        "%d files in the version, %d checked by content, %d to download", rows.num_rows, len(checks), len(downloads)
    )

    def fetch(item: SourceDownload) -> tuple[SourceDownloaded, os.stat_result]:
        done = download_source(store, item.key, item.path, item.etag, accept_changed, item.also)
        return done, os.stat(item.path)

    with progress(len(downloads), "download") as bar:
        for item, outcome in run_bounded(fetch, downloads, workers):
            bar.update(1)
            if isinstance(outcome, SourceChanged):
                result.changed_sources.append((item.key, outcome.recorded, outcome.current))
                if outcome.why:
                    result.version_lookup_problems[item.key] = outcome.why
            elif isinstance(outcome, ClientError) and error_code(outcome) in _NOT_FOUND:
                result.missing_sources.append(item.key)
            elif isinstance(outcome, (ClientError, BotoCoreError, OSError)):
                result.failures.append(Failure("download", item.key, describe(outcome)))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                done, stat = outcome
                result.downloaded += 1
                result.downloaded_bytes += done.written
                result.from_older_versions += done.version_id is not None
                verified[item.name] = IndexEntry.of(stat, done.changed or item.etag, done.md5)
                if done.changed is not None:
                    result.changed_sources.append((item.key, item.etag, done.changed))
                elif item.local_md5 is not None and item.local_md5 != done.md5:
                    result.corrupted.append((item.name, item.local_md5, done.md5))
                elif item.local_md5 is not None:
                    result.unverifiable += 1
    result.missing_sources.sort()
    result.changed_sources.sort()
    result.corrupted.sort()
    if delete:
        result.deleted = delete_unplaced_files(dest, datasets, places)
    # the index keeps what this run verified, and the entries of datasets it did not pull
    pulled = tuple(f"{d}/" for d in datasets)
    kept = {name: entry for name, entry in index.items() if not name.startswith(pulled)}
    write_if_changed(dest / INDEX_NAME, index_bytes({**kept, **verified}.items()))
    # as for `pull`, the index lists the files on disk: not those whose source is gone or changed (unless taken)
    absent = set(result.missing_sources) | {failure.key for failure in result.failures}
    if not accept_changed:
        absent |= {key for key, _, _ in result.changed_sources}
    if absent:
        rows = rows.filter(pc.invert(pc.is_in(rows["source_key"], value_set=pa.array(sorted(absent), pa.string()))))
    labels = version_labels(rows)
    result.labels_rows = len(labels)
    marker: dict[str, object] = {"pulled": "version", "datasets": list(datasets), "version": version_id}
    if result.exit_code != EXIT_OK or (result.changed_sources and accept_changed):
        marker["note"] = "incomplete or not exact: some files of the version were not rebuilt as it had them"
        marker["complete"] = False
    else:
        marker["complete"] = True
    result.labels_written = write_labels(dest, labels, index_layout.datasets, marker)
    return result


def _rarities(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """`--rarity rare` -> `Rare` (case and spaces ignored, `Junk` is `Trash`, as in the sheets); BadParameter
    naming the rarities for anything else."""
    chosen = []
    for value in values:
        rarity = normalize_rarity(value)
        if rarity is None:
            raise click.BadParameter(f"'{value}' is not a rarity ({', '.join(RARITIES)})")
        chosen.append(rarity)
    return tuple(dict.fromkeys(chosen))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


@click.command("pull")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    metavar="NAME",
    help="A dataset to download, e.g. train (repeatable; required without --version, whose default is every "
    "dataset of the version).",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Local folder; files land in DEST/<dataset>/<rarity>/<frame>.jpg.",
)
@click.option(
    "--delete",
    is_flag=True,
    help="Remove local files under DEST/<dataset>/ that are no longer in it (without it, a pull that would leave "
    "such a frame file is refused, naming them).",
)
@click.option("--workers", type=click.IntRange(1, 256), default=16, show_default=True, help="Parallel downloads.")
@click.option(
    "--version",
    "version",
    metavar="V",
    help="Rebuild dataset version V (an id, a unique prefix of one, latest, previous) from the source frames "
    "instead of copying today's datasets.",
)
@click.option(
    "--accept-changed-sources",
    is_flag=True,
    help="With --version: download a source frame whose ETag differs from the version's (it is still named) "
    "instead of leaving it out and exiting 1.",
)
@click.option(
    "--include-partial",
    is_flag=True,
    help="With --version latest|previous: a partial version (written by a run that failed) may be the one; "
    "by default they are skipped. A version named by id is pulled partial or not (with a warning).",
)
@episode_option
@click.option(
    "--rarity",
    "rarities",
    multiple=True,
    metavar="RARITY",
    callback=_rarities,
    help=f"Only this rarity's files ({', '.join(RARITIES)}; repeatable).",
)
@click.option(
    "--dry-run", is_flag=True, help="List and compare; print what would be downloaded and deleted; change nothing."
)
@format_option("The outcome as one line for people, or one JSON object for machines.")
def pull(
    datasets: tuple[str, ...],
    dest: Path,
    delete: bool,
    workers: int,
    version: str | None,
    accept_changed_sources: bool,
    include_partial: bool,
    episodes: tuple[str, ...],
    rarities: tuple[str, ...],
    dry_run: bool,
    output_format: str,
) -> None:
    """Download datasets to a local folder: only files missing locally or of another size.

    Writes DEST/labels.csv (frame,episode_id,dataset,rarity,metadata,s3_key), DEST/labels.parquet (the same with
    file_name, season, seconds; rarity coded in the fixed class order), Hugging Face's metadata and card
    (load_dataset(DEST)) and DEST/.tuttle-version.json (the version pulled) for every dataset folder under DEST: the
    pulled datasets' files that are on disk (a failed download gets no row) and, as they are on disk, the files of
    other datasets pulled earlier into DEST. A pull that would leave one frame in two places (a stale file without
    --delete, a frame also in another dataset folder) is refused, naming the files. Metadata comes from the labels
    index a real sync keeps in S3. A rerun with nothing changed downloads nothing. With --version V the files of
    that dataset version come from the source frames, each checked against the ETag the version recorded, so a
    version can be rebuilt after the datasets moved on; local files are kept only if their content (MD5) is the
    source's, and a version whose rows break the dataset layout is refused. Exit status: 0 done, 1 a listing or
    download failed or the pull was refused (with --version also: a source deleted or changed since the version, or
    a version refused), 2 usage or configuration error (also an --episode with no file in the pulled datasets).

    --episode and --rarity pull only those files (labels.csv still lists the other files on disk); with them,
    --delete removes only local files of the selected episodes and rarities. --dry-run lists and compares,
    then says what would be downloaded and deleted, writing nothing (not even DEST).
    """
    if version is not None:
        if episodes or rarities or dry_run:
            raise click.UsageError("--episode, --rarity and --dry-run go without --version (for now)")
        pull_version_command(
            version, datasets, dest, delete, workers, accept_changed_sources, include_partial, output_format
        )
    if accept_changed_sources:
        raise click.UsageError("--accept-changed-sources goes with --version")
    if include_partial:
        raise click.UsageError("--include-partial goes with --version")
    if not datasets:
        raise click.UsageError("Missing option '--dataset' (or rebuild a dataset version with --version V).")
    settings = load_settings()
    for name in datasets:
        if name not in settings.split:
            raise click.BadParameter(
                f"'{name}' is not a dataset of TUTTLE_SPLIT ({', '.join(settings.split)})", param_hint="--dataset"
            )
    datasets = tuple(dict.fromkeys(datasets))
    if not dry_run:
        make_folder(dest, "--dest")
    store = open_bucket(settings, workers)
    selection = PullFilter(episodes=tuple(dict.fromkeys(episodes)), rarities=rarities)
    try:
        result = pull_datasets(
            store, key_layout(settings), datasets, dest, delete=delete, workers=workers, selection=selection,
            dry_run=dry_run,
        )
    except NoSuchEpisode as exc:
        fail_usage(f"{exc}; nothing downloaded or deleted")
    except MisplacedFiles as exc:
        outcome_log.error("pull refused: %s", exc)
        sys.exit(EXIT_ERRORS)
    except (InventoryError, UnsafePath) as exc:
        outcome_log.error("%s; nothing downloaded or deleted", exc)
        sys.exit(EXIT_ERRORS)
    except OSError as exc:
        outcome_log.error("cannot write under %s: %s", dest, exc.strerror or exc)
        sys.exit(EXIT_ERRORS)
    if result.metadata_note:
        outcome_log.warning(result.metadata_note)
    for name in result.empty_datasets:
        note = "; its local files were left alone" if delete else ""
        of = " of the selected episodes and rarities" if selection else ""
        outcome_log.warning(
            "dataset '%s' has no files%s in s3://%s/%s%s", name, of, settings.bucket, settings.ml_prefix, note
        )
    for failure in result.failures[:20]:
        outcome_log.error("download %s failed: %s", failure.key, failure.error)
    if result.failed > 20:
        outcome_log.error("... and %d more failed downloads", result.failed - 20)
    if result.indexed_from_disk:
        outcome_log.info(
            "labels.csv also lists the files of %s already under %s (not pulled this run)",
            ", ".join(result.indexed_from_disk),
            dest,
        )
    if output_format == "json":
        record = {
            "datasets": list(datasets),
            "dest": str(dest),
            "episodes": list(selection.episodes),
            "rarities": list(selection.rarities),
            **result.to_json(),
        }
        click.echo(json.dumps(record, indent=2))
    elif dry_run:
        deleted = f", delete {result.deleted:,} local files" if delete else ""
        click.echo(
            f"dry run: pull {', '.join(datasets)} to {dest}: {result.listed:,} files; would download "
            f"{result.would_download:,} ({_size(result.would_download_bytes)}), {result.up_to_date:,} up to date"
            f"{deleted}; nothing was changed"
        )
    else:
        deleted = f", deleted {result.deleted:,} local files" if delete else ""
        labels = "written" if result.labels_written else "unchanged"
        click.echo(
            f"pulled {', '.join(datasets)} to {dest}: {result.listed:,} files; downloaded {result.downloaded:,} "
            f"({_size(result.downloaded_bytes)}), {result.up_to_date:,} up to date{deleted}; "
            f"failed {result.failed:,}; labels.csv {labels} ({result.labels_rows:,} rows)"
        )
    sys.exit(EXIT_ERRORS if result.failed else EXIT_OK)


def refuse_unsound_version(url: str, table: pa.Table, counts: dict, layout: KeyLayout) -> None:
    """Exit 1 naming the version object, row, column and value if a row breaks the layout's rules (or its
    metadata counts files of a dataset not configured); nothing has been written or deleted then."""
    problems = check_version_rows(table, layout, IMG_SIZES)
    strangers = [d for d, n in counts.items() if n and d not in layout.datasets]
    if not problems and not strangers:
        return
    for name in strangers[:SHOWN]:
        outcome_log.error("%s: its metadata counts files of %s, not a dataset of TUTTLE_SPLIT", url, shown(name))
    for problem in problems[:SHOWN]:
        outcome_log.error("%s: %s", url, problem.describe())
    if len(problems) > SHOWN:
        outcome_log.error("... and %d more problems in %s", len(problems) - SHOWN, url)
    outcome_log.error(
        "version %s refused: %d values break the dataset layout; nothing written or deleted",
        url,
        len(problems) + len(strangers),
    )
    sys.exit(EXIT_ERRORS)


def pull_version_command(
    reference: str,
    datasets: tuple[str, ...],
    dest: Path,
    delete: bool,
    workers: int,
    accept_changed: bool,
    include_partial: bool = False,
    output_format: str = "text",
) -> NoReturn:
    """`pull --version V`: rebuild version V under `dest` from the source frames, then exit."""
    settings = load_settings()
    store = open_bucket(settings, workers)
    versions = VersionStore(store.client, store.bucket, settings.ml_prefix)
    version_id = resolve_or_exit(list_ids(versions), reference, versions, include_partial)
    table, info = read_or_exit(versions, version_id)
    flag_partial(info)
    layout = key_layout(settings)
    known = [d for d in dict.fromkeys([*info.split, *info.datasets]) if isinstance(d, str)]
    for name in datasets:
        if name not in layout.datasets:
            raise click.BadParameter(
                f"'{name}' is not a dataset of TUTTLE_SPLIT ({', '.join(layout.datasets)})", param_hint="--dataset"
            )
        if name not in known:
            raise click.BadParameter(
                f"'{name}' is not a dataset of version {version_id} ({', '.join(map(shown, known))})",
                param_hint="--dataset",
            )
    # the version object is read back from S3: every row is checked against the layout before anything is done
    refuse_unsound_version(versions.url(version_id), table, info.datasets, layout)
    chosen = tuple(dict.fromkeys(datasets)) or tuple(d for d in known if info.datasets.get(d))
    make_folder(dest, "--dest")
    try:
        result = pull_version(store, table, chosen, dest, delete, workers, accept_changed, layout, version_id)
    except MisplacedFiles as exc:
        outcome_log.error("pull of version %s refused: %s", version_id, exc)
        sys.exit(EXIT_ERRORS)
    except UnsafePath as exc:
        outcome_log.error("version %s refused: %s; nothing written or deleted", version_id, exc)
        sys.exit(EXIT_ERRORS)
    except OSError as exc:
        outcome_log.error("cannot write under %s: %s", dest, exc.strerror or exc)
        sys.exit(EXIT_ERRORS)
    if result.index_note:
        outcome_log.warning(
            "%s; the local index is ignored (files of the right size are hashed again)", result.index_note
        )
    for name, local, source in result.corrupted[:SHOWN]:
        outcome_log.warning(
            "local file %s differed from its source frame in version %s (MD5 %s, the source's %s); downloaded again",
            *(dest / name, version_id, local, source),
        )
    if len(result.corrupted) > SHOWN:
        outcome_log.warning("... and %d more local files that differed", len(result.corrupted) - SHOWN)
    if result.unverifiable:
        outcome_log.info(
            "%d local files of the right size had no MD5 to check against (multipart or SSE-KMS ETags, not in "
            "the local index): downloaded again, they held the source's bytes",
            result.unverifiable,
        )
    where = f"s3://{settings.bucket}"
    for key in result.missing_sources[:SHOWN]:
        outcome_log.error("source frame %s/%s of version %s is gone; its file was not rebuilt", where, key, version_id)
    if len(result.missing_sources) > SHOWN:
        outcome_log.error("... and %d more missing source frames", len(result.missing_sources) - SHOWN)
    for key, recorded, current in result.changed_sources[:SHOWN]:
        if accept_changed:
            outcome_log.warning(
                "source frame %s/%s changed since version %s (ETag %s, now %s); today's picture downloaded "
                "(--accept-changed-sources)",
                *(where, key, version_id, recorded, current),
            )
        else:
            why = result.version_lookup_problems.get(key) or "the bucket keeps no object version with that ETag"
            outcome_log.error(
                "source frame %s/%s changed since version %s (ETag %s, now %s) and %s; not downloaded "
                "(--accept-changed-sources takes today's picture)",
                *(where, key, version_id, recorded, current, why),
            )
    if len(result.changed_sources) > SHOWN:
        outcome_log.error("... and %d more changed source frames", len(result.changed_sources) - SHOWN)
    for failure in result.failures[:SHOWN]:
        outcome_log.error("download %s failed: %s", failure.key, failure.error)
    if len(result.failures) > SHOWN:
        outcome_log.error("... and %d more failed downloads", len(result.failures) - SHOWN)
    if result.from_older_versions:
        outcome_log.info(
            "%d frames of version %s came from older object versions of their sources (changed since; the bucket "
            "keeps object versions)",
            result.from_older_versions,
            version_id,
        )
    if output_format == "json":
        record = {"version": version_id, "datasets": list(chosen), "dest": str(dest), **dataclasses.asdict(result)}
        record["failures"] = [{"key": f.key, "error": f.error} for f in result.failures]
        click.echo(json.dumps(record, indent=2, default=str))
        sys.exit(result.exit_code)
    deleted = f", deleted {result.deleted:,} local files" if delete else ""
    labels = "written" if result.labels_written else "unchanged"
    older = f", {result.from_older_versions:,} from older object versions" if result.from_older_versions else ""
    click.echo(
        f"pulled version {version_id} ({', '.join(chosen)}) to {dest}: {result.files:,} files; downloaded "
        f"{result.downloaded:,} ({_size(result.downloaded_bytes)}{older}), {result.up_to_date:,} up to date "
        f"({result.hashed:,} hashed), {len(result.corrupted):,} differed from the source{deleted}; "
        f"sources missing {len(result.missing_sources):,}, changed {len(result.changed_sources):,}; "
        f"failed {len(result.failures):,}; labels.csv {labels} ({result.labels_rows:,} rows)"
    )
    sys.exit(result.exit_code)
