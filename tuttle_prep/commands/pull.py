"""`pull`: copy datasets from S3 to a local folder (a training box), incrementally; `pull --version V`
rebuilds a dataset version there from the source frames.

The local layout mirrors the ML prefix: `DEST/<dataset>/<rarity>/<frame>.jpg`, plus `DEST/labels.csv` and
`DEST/labels.parquet` (LABEL_COLUMNS, the same table): the pulled datasets' files that are on disk after this
run (a failed download has no row), and the files of every other configured dataset folder under DEST, as they
are on disk (a second pull of other datasets into the same DEST keeps the first pull's datasets in the index).

A file is downloaded when it is missing locally or its size differs from the object's; each download
goes to `<name>.part` first and is renamed when complete, so an interrupted pull never leaves a truncated
jpg under its real name. `--delete` removes every other file under `DEST/<dataset>/` of the pulled datasets
(and then-empty folders); nothing outside them is touched.
Metadata comes from the labels index the sync writes (`<ML prefix>labels.csv`), when there is one.

`pull --version V` takes the files of version V from the source frames instead (a file is fetched when
missing locally or of another size than the recorded source, and checked against the recorded ETag); its
index is the version's rows of the pulled datasets whose file is on disk, with the version's metadata.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn

import click
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import BotoCoreError, ClientError

from ..core.labels import (
    LABELS_NAME,
    PARQUET_NAME,
    build_labels,
    labels_csv,
    labels_key,
    labels_parquet,
    parse_labels_csv,
)
from ..core.plan import KeyLayout
from ..core.run_report import EXIT_ERRORS, EXIT_OK
from ..core.versions import version_labels
from ..edges.aws import describe, error_code
from ..edges.s3_apply import Failure
from ..edges.s3_bucket import S3Bucket, progress, run_bounded
from ..edges.s3_labels import read_labels_object
from ..edges.s3_listing import list_datasets
from ..edges.s3_objects import PART_SUFFIX, SourceChanged, download_object, download_source
from ..edges.s3_versions import VersionStore
from ..errors import InventoryError
from .common import key_layout, load_settings, make_folder, open_bucket
from .versions import list_ids, read_or_exit, resolve_or_exit

log = logging.getLogger(__name__)
#: the command's outcome is logged under the package's own name, as every command's is
outcome_log = logging.getLogger("tuttle_prep")
#: problems named one by one, then a count
SHOWN = 20


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

    @property
    def failed(self) -> int:
        return len(self.failures)


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


def delete_extra_files(dest: Path, datasets: Sequence[str], wanted: set[Path]) -> int:
    """Remove files under `dest/<dataset>/` that are not in `wanted`, then empty folders; return the count."""
    deleted = 0
    for dataset in datasets:
        root = dest / dataset
        if not root.is_dir():
            continue
        for folder, _, files in os.walk(root, topdown=False):
            for name in files:
                path = Path(folder) / name
                if path not in wanted:
                    path.unlink()
                    deleted += 1
            if Path(folder) != root and not os.listdir(folder):
                os.rmdir(folder)
    return deleted


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` (atomically) unless it already holds exactly that; True if written."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    part = path.with_name(path.name + PART_SUFFIX)
    part.write_bytes(data)
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
) -> PullResult:
    """Bring `dest` in line with `datasets`; list failures raise InventoryError, download failures are collected."""
    result = PullResult()
    wanted_layout = replace(layout, datasets=tuple(datasets))
    inventory = list_datasets(store, wanted_layout, with_sizes=True)
    current, _ = wanted_layout.parse_dataset_keys(inventory.keys)
    result.listed = len(current)
    keys = current["key"].tolist()

    downloads = plan_downloads(dest, layout.ml_prefix, keys, inventory.sizes)
    result.up_to_date = len(keys) - len(downloads)
    log.info("%d dataset files listed, %d to download", len(keys), len(downloads))
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

    result.empty_datasets = [d for d in datasets if not current["dataset"].eq(d).any()]
    if delete:
        # an empty listing more likely means a wrong bucket or prefix than an emptied dataset
        wanted = {local_path(dest, layout.ml_prefix, key) for key in keys}
        deletable = [d for d in datasets if d not in result.empty_datasets]
        result.deleted = delete_extra_files(dest, deletable, wanted)

    labels = build_labels(
        index_catalogue(dest, layout, datasets, current, result), _index_metadata(store, layout, result)
    )
    result.labels_rows = len(labels)
    result.labels_written = write_labels(dest, labels)
    return result


def write_labels(dest: Path, labels: pd.DataFrame) -> bool:
    """`DEST/labels.csv` and `DEST/labels.parquet`, each only if its content changed; True if either was written."""
    csv_written = write_if_changed(dest / LABELS_NAME, labels_csv(labels))
    parquet_written = write_if_changed(dest / PARQUET_NAME, labels_parquet(labels))
    return csv_written or parquet_written


# ---- pull --version ------------------------------------------------------------------------------

_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


@dataclass
class SourceDownload:
    """One source frame to fetch for a version: where it goes, its recorded ETag and size."""

    key: str
    path: Path
    etag: str
    size: int


@dataclass
class VersionPullResult:
    """What a `pull --version` found and did."""

    files: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    up_to_date: int = 0
    deleted: int = 0
    #: source keys that are gone (or had no source when the version was written), sorted
    missing_sources: list[str] = field(default_factory=list)
    #: (source key, recorded ETag, current ETag) of the sources changed since the version, sorted
    changed_sources: list[tuple[str, str, str]] = field(default_factory=list)
    #: the changed sources were downloaded anyway (--accept-changed-sources)
    accepted_changed: bool = False
    failures: list[Failure] = field(default_factory=list)
    labels_rows: int = 0
    labels_written: bool = False

    @property
    def exit_code(self) -> int:
        """1 if some file of the version could not be rebuilt as the version had it, else 0."""
        unfaithful = bool(self.changed_sources) and not self.accepted_changed
        return EXIT_ERRORS if self.failures or self.missing_sources or unfaithful else EXIT_OK


def plan_source_downloads(dest: Path, rows: pa.Table) -> tuple[list[SourceDownload], int, list[str]]:
    """The version's rows missing locally or of another size than the recorded source; the count up to date;
    the source keys the version has no ETag for (their source was missing when it was written)."""
    downloads: list[SourceDownload] = []
    up_to_date = 0
    unrecorded: list[str] = []
    names = ("dataset", "rarity", "frame", "source_key", "source_etag", "source_size")
    for dataset, rarity, frame, key, etag, size in zip(*(rows[n].to_pylist() for n in names), strict=True):
        if etag is None or size is None:
            unrecorded.append(key)
            continue
        path = dest / dataset / rarity / f"{frame}.jpg"
        try:
            local_size: int | None = path.stat().st_size
        except FileNotFoundError:
            local_size = None
        if local_size == size:
            up_to_date += 1
        else:
            downloads.append(SourceDownload(key, path, etag, size))
    return downloads, up_to_date, unrecorded


def pull_version(
    store: S3Bucket,
    table: pa.Table,
    datasets: Sequence[str],
    dest: Path,
    delete: bool = False,
    workers: int = 16,
    accept_changed: bool = False,
) -> VersionPullResult:
    """Bring `dest` in line with the `datasets` of a version (its rows in `table`), downloading from the source
    frames; failed downloads and changed or missing sources are collected, not raised."""
    result = VersionPullResult(accepted_changed=accept_changed)
    rows = table.filter(pc.is_in(table["dataset"], value_set=pa.array(list(datasets), type=pa.string())))
    result.files = rows.num_rows
    downloads, result.up_to_date, result.missing_sources = plan_source_downloads(dest, rows)
    log.info("%d files in the version, %d to download", rows.num_rows, len(downloads))

    def fetch(item: SourceDownload) -> tuple[int, str | None]:
        return download_source(store, item.key, item.path, item.etag, accept_changed)

    with progress(len(downloads), "download") as bar:
        for item, outcome in run_bounded(fetch, downloads, workers):
            bar.update(1)
            if isinstance(outcome, SourceChanged):
                result.changed_sources.append((item.key, outcome.recorded, outcome.current))
            elif isinstance(outcome, ClientError) and error_code(outcome) in _NOT_FOUND:
                result.missing_sources.append(item.key)
            elif isinstance(outcome, (ClientError, BotoCoreError, OSError)):
                result.failures.append(Failure("download", item.key, describe(outcome)))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                written, changed = outcome
                result.downloaded += 1
                result.downloaded_bytes += written
                if changed is not None:
                    result.changed_sources.append((item.key, item.etag, changed))
    result.missing_sources.sort()
    result.changed_sources.sort()
    if delete:
        places = zip(*(rows[n].to_pylist() for n in ("dataset", "rarity", "frame")), strict=True)
        result.deleted = delete_extra_files(dest, datasets, {dest / d / r / f"{f}.jpg" for d, r, f in places})
    # as for `pull`, the index lists the files on disk: not those whose source is gone or changed (unless taken)
    absent = set(result.missing_sources) | {failure.key for failure in result.failures}
    if not accept_changed:
        absent |= {key for key, _, _ in result.changed_sources}
    if absent:
        rows = rows.filter(pc.invert(pc.is_in(rows["source_key"], value_set=pa.array(sorted(absent), pa.string()))))
    labels = version_labels(rows)
    result.labels_rows = len(labels)
    result.labels_written = write_labels(dest, labels)
    return result


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
@click.option("--delete", is_flag=True, help="Remove local files under DEST/<dataset>/ that are no longer in it.")
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
def pull(
    datasets: tuple[str, ...],
    dest: Path,
    delete: bool,
    workers: int,
    version: str | None,
    accept_changed_sources: bool,
) -> None:
    """Download datasets to a local folder: only files missing locally or of another size.

    Writes DEST/labels.csv and DEST/labels.parquet (frame,episode_id,dataset,rarity,metadata,s3_key) for every
    dataset folder under DEST: the pulled datasets' files that are on disk (a failed download gets no row) and,
    as they are on disk, the files of other datasets pulled earlier into DEST. Metadata comes from the labels
    index a real sync keeps in S3. A rerun with nothing changed downloads nothing. With --version V the files of
    that dataset version come from the source frames, each checked against the ETag the version recorded, so a
    version can be rebuilt after the datasets moved on. Exit status: 0 done, 1 a listing or download failed
    (with --version also: a source deleted or changed since the version), 2 usage or configuration error.
    """
    if version is not None:
        pull_version_command(version, datasets, dest, delete, workers, accept_changed_sources)
    if accept_changed_sources:
        raise click.UsageError("--accept-changed-sources goes with --version")
    if not datasets:
        raise click.UsageError("Missing option '--dataset' (or rebuild a dataset version with --version V).")
    settings = load_settings()
    for name in datasets:
        if name not in settings.split:
            raise click.BadParameter(
                f"'{name}' is not a dataset of TUTTLE_SPLIT ({', '.join(settings.split)})", param_hint="--dataset"
            )
    datasets = tuple(dict.fromkeys(datasets))
    make_folder(dest, "--dest")
    store = open_bucket(settings, workers)
    try:
        result = pull_datasets(store, key_layout(settings), datasets, dest, delete=delete, workers=workers)
    except InventoryError as exc:
        outcome_log.error("%s; nothing downloaded or deleted", exc)
        sys.exit(EXIT_ERRORS)
    except OSError as exc:
        outcome_log.error("cannot write under %s: %s", dest, exc.strerror or exc)
        sys.exit(EXIT_ERRORS)
    if result.metadata_note:
        outcome_log.warning(result.metadata_note)
    for name in result.empty_datasets:
        note = "; its local files were left alone" if delete else ""
        outcome_log.warning(
            "dataset '%s' has no files in s3://%s/%s%s", name, settings.bucket, settings.ml_prefix, note
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
    deleted = f", deleted {result.deleted:,} local files" if delete else ""
    labels = "written" if result.labels_written else "unchanged"
    click.echo(
        f"pulled {', '.join(datasets)} to {dest}: {result.listed:,} files; downloaded {result.downloaded:,} "
        f"({_size(result.downloaded_bytes)}), {result.up_to_date:,} up to date{deleted}; failed {result.failed:,}; "
        f"labels.csv {labels} ({result.labels_rows:,} rows)"
    )
    sys.exit(EXIT_ERRORS if result.failed else EXIT_OK)


def pull_version_command(
    reference: str, datasets: tuple[str, ...], dest: Path, delete: bool, workers: int, accept_changed: bool
) -> NoReturn:
    """`pull --version V`: rebuild version V under `dest` from the source frames, then exit."""
    settings = load_settings()
    store = open_bucket(settings, workers)
    versions = VersionStore(store.client, store.bucket, settings.ml_prefix)
    version_id = resolve_or_exit(list_ids(versions), reference, versions)
    table, info = read_or_exit(versions, version_id)
    known = list(dict.fromkeys([*info.split, *info.datasets]))
    for name in datasets:
        if name not in known:
            raise click.BadParameter(
                f"'{name}' is not a dataset of version {version_id} ({', '.join(known)})", param_hint="--dataset"
            )
    chosen = tuple(dict.fromkeys(datasets)) or tuple(d for d in known if info.datasets.get(d))
    make_folder(dest, "--dest")
    try:
        result = pull_version(store, table, chosen, dest, delete, workers, accept_changed)
    except OSError as exc:
        outcome_log.error("cannot write under %s: %s", dest, exc.strerror or exc)
        sys.exit(EXIT_ERRORS)
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
            outcome_log.error(
                "source frame %s/%s changed since version %s (ETag %s, now %s); not downloaded "
                "(--accept-changed-sources takes today's picture)",
                *(where, key, version_id, recorded, current),
            )
    if len(result.changed_sources) > SHOWN:
        outcome_log.error("... and %d more changed source frames", len(result.changed_sources) - SHOWN)
    for failure in result.failures[:SHOWN]:
        outcome_log.error("download %s failed: %s", failure.key, failure.error)
    if len(result.failures) > SHOWN:
        outcome_log.error("... and %d more failed downloads", len(result.failures) - SHOWN)
    deleted = f", deleted {result.deleted:,} local files" if delete else ""
    labels = "written" if result.labels_written else "unchanged"
    click.echo(
        f"pulled version {version_id} ({', '.join(chosen)}) to {dest}: {result.files:,} files; downloaded "
        f"{result.downloaded:,} ({_size(result.downloaded_bytes)}), {result.up_to_date:,} up to date{deleted}; "
        f"sources missing {len(result.missing_sources):,}, changed {len(result.changed_sources):,}; "
        f"failed {len(result.failures):,}; labels.csv {labels} ({result.labels_rows:,} rows)"
    )
    sys.exit(result.exit_code)
