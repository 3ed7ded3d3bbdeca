"""`pull`: copy datasets from S3 to a local folder (a training box), incrementally.

The local layout mirrors the ML prefix: `DEST/<dataset>/<rarity>/<frame>.jpg`, plus `DEST/labels.csv`
(LABEL_COLUMNS): the pulled datasets' files that are on disk after this run (a failed download has no row),
and the files of every other configured dataset folder under DEST, as they are on disk (a second pull of
other datasets into the same DEST keeps the first pull's datasets in the index).

A file is downloaded when it is missing locally or its size differs from the object's; each download
goes to `<name>.part` first and is renamed when complete, so an interrupted pull never leaves a truncated
jpg under its real name. `--delete` removes every other file under `DEST/<dataset>/` of the pulled datasets
(and then-empty folders); nothing outside them is touched.
Metadata comes from the labels index the sync writes (`<ML prefix>labels.csv`), when there is one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from .aws import describe
from .labels import LABELS_NAME, build_labels, labels_csv, labels_key, parse_labels_csv, read_labels_object
from .plan import KeyLayout
from .s3_store import Failure, S3Store, progress, run_bounded

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
_CHUNK = 1 << 20


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


def _download(store: S3Store, item: Download) -> int:
    item.path.parent.mkdir(parents=True, exist_ok=True)
    part = item.path.with_name(item.path.name + PART_SUFFIX)
    body = store.client.get_object(Bucket=store.bucket, Key=item.key)["Body"]
    written = 0
    try:
        with open(part, "wb") as out:
            for chunk in body.iter_chunks(_CHUNK):
                out.write(chunk)
                written += len(chunk)
        os.replace(part, item.path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return written


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


def _index_metadata(store: S3Store, layout: KeyLayout, result: PullResult) -> pd.DataFrame | None:
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
    store: S3Store,
    layout: KeyLayout,
    datasets: Sequence[str],
    dest: Path,
    delete: bool = False,
    workers: int = 16,
) -> PullResult:
    """Bring `dest` in line with `datasets`; list failures raise InventoryError, download failures are collected."""
    result = PullResult()
    wanted_layout = replace(layout, datasets=tuple(datasets))
    inventory = store.list_datasets(wanted_layout, with_sizes=True)
    current, _ = wanted_layout.parse_dataset_keys(inventory.keys)
    result.listed = len(current)
    keys = current["key"].tolist()

    downloads = plan_downloads(dest, layout.ml_prefix, keys, inventory.sizes)
    result.up_to_date = len(keys) - len(downloads)
    log.info("%d dataset files listed, %d to download", len(keys), len(downloads))
    with progress(len(downloads), "download") as bar:
        for item, outcome in run_bounded(lambda d: _download(store, d), downloads, workers):
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
    result.labels_written = write_if_changed(dest / LABELS_NAME, labels_csv(labels))
    return result
