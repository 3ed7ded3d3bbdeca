"""Dataset versions in S3: list, read, write once (If-None-Match), delete, under `<ML prefix>_versions/`;
and, after a real sync, write the version of the datasets if they differ from the latest one.

Each version object also carries, as S3 user metadata, the digest of its outcome columns and a short summary,
so a nightly run that changed nothing tells so with one LIST and one HEAD, and `versions list` reads no
version's body. Those fields repeat what the Parquet schema metadata says; an object without them is read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from ..core.clock import utc
from ..core.plan import KeyLayout
from ..core.run_report import RunReport
from ..core.versions import (
    CHANGE_KINDS,
    CONTENT_COLUMN,
    KNOWN_COLUMNS,
    VersionError,
    VersionInfo,
    build_version_table,
    describe_partial,
    diff_versions,
    frames_in_two_places,
    known_sources_table,
    new_version_id,
    outcome_digest,
    partial_record,
    rows_without_source,
    version_from_parquet,
    version_id_of,
    version_info,
    version_key,
    version_time,
    version_to_parquet,
    versions_prefix,
    versions_to_delete,
    with_content_hashes,
    with_sources,
)
from ..errors import InventoryError
from ..settings import Settings
from .aws import describe, error_code
from .s3_bucket import run_bounded

log = logging.getLogger(__name__)

DIGEST_FIELD = "tuttle-digest"
SUMMARY_FIELD = "tuttle-summary"
CONTENT_TYPE = "application/vnd.apache.parquet"
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
_EXISTS = ("PreconditionFailed", "412", "ConditionalRequestConflict")
#: keys under the versions folder not named like a version that a sync names in its warnings
STRAYS_SHOWN = 20
#: HEADs in flight when retention checks which versions are readable
HEAD_WORKERS = 16


class VersionExists(Exception):
    """An object with this version's id is already there: it is never overwritten."""


@dataclass
class VersionListing:
    """The version ids under the versions folder (oldest first) and keys there not named like a version."""

    ids: list[str]
    strays: list[str]


class VersionStore:
    """The versions folder of one bucket, through a boto3 S3 client (thread-safe)."""

    def __init__(self, client: Any, bucket: str, ml_prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.ml_prefix = ml_prefix
        self.prefix = versions_prefix(ml_prefix)

    def key(self, version_id: str) -> str:
        return version_key(self.ml_prefix, version_id)

    def url(self, version_id: str) -> str:
        return f"s3://{self.bucket}/{self.key(version_id)}"

    @property
    def folder_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def list(self) -> VersionListing:
        """Every version id, oldest first; InventoryError if the listing fails."""
        ids: list[str] = []
        strays: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", ()):
                    version_id = version_id_of(obj["Key"], self.prefix)
                    if version_id is None:
                        strays.append(obj["Key"])
                    else:
                        ids.append(version_id)
        except (ClientError, BotoCoreError) as exc:
            raise InventoryError(f"listing {self.folder_url} failed: {describe(exc)}") from None
        return VersionListing(sorted(ids), sorted(strays))

    def head(self, version_id: str) -> dict[str, str] | None:
        """The object's job metadata (digest, summary; {} if it has none), None if there is no such object."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(version_id))
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return None
            raise
        return {k: v for k, v in head.get("Metadata", {}).items() if k in (DIGEST_FIELD, SUMMARY_FIELD)}

    def summary(self, version_id: str) -> VersionInfo:
        """The version's info from its S3 metadata, else from the object itself; VersionError naming the object
        if it is not a usable version."""
        fields = self.head(version_id)
        if fields is None:
            raise VersionError(f"{self.url(version_id)}: no such object (deleted since it was listed)")
        raw = fields.get(SUMMARY_FIELD)
        if raw:
            try:
                info = VersionInfo.from_json(raw, self.url(version_id))
            except VersionError:
                info = None
            if info is not None and info.id == version_id:
                info.digest = fields.get(DIGEST_FIELD, info.digest)
                return info
        return self.read(version_id, columns=["frame"])[1]

    def read(self, version_id: str, columns: list[str] | None = None) -> tuple[pa.Table, VersionInfo]:
        """The version's table (only `columns`, if given) and info; VersionError naming the object if it is not
        a usable version (not Parquet, a missing column, no version metadata, another version's metadata)."""
        url = self.url(version_id)
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=self.key(version_id))["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                raise VersionError(f"{url}: no such object") from None
            raise
        table, info = version_from_parquet(data, url, columns)
        if info.id != version_id:
            raise VersionError(f"{url}: its metadata names another version ({info.id})")
        return table, info

    def write(self, info: VersionInfo, data: bytes) -> None:
        """Create the version object; VersionExists if an object of that id is there (it is left as it is)."""
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key(info.id),
                Body=data,
                ContentType=CONTENT_TYPE,
                IfNoneMatch="*",
                Metadata={DIGEST_FIELD: info.digest, SUMMARY_FIELD: info.summary_json()},
            )
        except ClientError as exc:
            if error_code(exc) in _EXISTS:
                raise VersionExists(f"{self.url(info.id)} already exists; it was left as it is") from None
            raise

    def delete(self, version_id: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(version_id))


# ---- after a sync ----------------------------------------------------------------------------------

#: lists episodes' source folders: {episode_id: folder} -> rows (episode_id, frame, etag, size), errors by episode
ListSources = Callable[[dict[str, str]], tuple[pd.DataFrame, dict[str, str]]]


def listed_sources(sources: pd.DataFrame | None, layout: KeyLayout) -> pa.Table:
    """A source listing (episode_id, frame, etag, size) as known sources (source_key, source_etag, source_size)."""
    if sources is None or sources.empty or "etag" not in sources:
        return known_sources_table(layout, [], [], [], [])
    columns = (sources[c].tolist() for c in ("episode_id", "frame", "etag", "size"))
    return known_sources_table(layout, *columns)


@dataclass
class Baseline:
    """The newest readable dataset version (`table`, `info`; None if there is none) and what finding it learned."""

    listing: VersionListing
    #: the HEAD fields of the versions passed on the way, newest first, up to the baseline itself
    heads: list[tuple[str, dict[str, str]]]
    #: version id -> readable, for those read or found missing (each unreadable one is warned about by key)
    readable: dict[str, bool]
    table: pa.Table | None = None
    info: VersionInfo | None = None


def find_baseline(versions: VersionStore, report: RunReport, digest: str | None = None) -> Baseline:
    """List the versions and read the newest readable one (whole); an object that is no usable version is named
    in a warning and passed over for the one before it. With `digest`, the search stops at a version whose HEAD
    says it has that outcome digest, without reading a body. Raises InventoryError, ClientError, BotoCoreError."""
    listing = versions.list()
    for key in listing.strays[:STRAYS_SHOWN]:
        report.warn(f"not a dataset version (not named like one), left alone: s3://{versions.bucket}/{key}")
    found = Baseline(listing, [], {})
    for version_id in reversed(listing.ids):
        fields = versions.head(version_id)
        if fields is None:
            found.readable[version_id] = False
            continue
        found.heads.append((version_id, fields))
        if digest is not None and fields.get(DIGEST_FIELD) == digest:
            return found
        try:
            found.table, found.info = versions.read(version_id)
        except VersionError as exc:
            report.warn(f"{exc}; left alone, compared with the version before it")
            found.readable[version_id] = False
            continue
        found.readable[version_id] = True
        break
    return found


def record_version(
    versions: VersionStore,
    list_sources: ListSources,
    layout: KeyLayout,
    settings: Settings,
    labels: pd.DataFrame,
    sources: pd.DataFrame | None,
    report: RunReport,
    now: datetime | None = None,
    baseline: Baseline | None = None,
    content: pa.Table | None = None,
) -> None:
    """Write `<ML prefix>_versions/<time>-<run id>.parquet` unless the datasets (`labels`: this run's labels
    index) match the latest readable version; then delete the versions beyond TUTTLE_VERSIONS_KEEP.

    The version id's time is `now`, by default the run's start (`report.started`, from the command's clock).
    `sources` is this run's source listing. Failures are errors on `report` (exit 1): the next run compares
    what it finds with the latest version, so a version not written now is written then, and no change is
    missing from the history. `baseline`: what `find_baseline` found earlier in the run (the lock held since),
    so the versions are not listed nor the latest one read again. `content` (source_key, source_etag,
    content_hash): the content hashes known this run; a row's hash is recorded only for the ETag it has.
    """
    try:
        _record(versions, list_sources, layout, settings, labels, sources, report, now, baseline, content)
    except (ClientError, BotoCoreError) as exc:
        report.error(f"dataset version not written to {versions.folder_url}: {describe(exc)}; the next run writes it")
    except (InventoryError, VersionExists) as exc:
        report.error(f"dataset version not written: {exc}; the next run writes it")


def _unchanged(
    versions: VersionStore,
    version_id: str,
    ids: list[str],
    settings: Settings,
    report: RunReport,
    readable: dict[str, bool],
) -> None:
    report.version_unchanged = version_id
    log.info("datasets unchanged since version %s: no version written", version_id)
    apply_retention(versions, ids, settings, report, readable)


def _record(
    versions: VersionStore,
    list_sources: ListSources,
    layout: KeyLayout,
    settings: Settings,
    labels: pd.DataFrame,
    sources: pd.DataFrame | None,
    report: RunReport,
    now: datetime | None,
    baseline: Baseline | None,
    content: pa.Table | None = None,
) -> None:
    table = build_version_table(labels, layout, listed_sources(sources, layout))
    digest = outcome_digest(table)
    # a run that failed (exit 1) records what the bucket holds all the same, marked partial
    partial = (
        partial_record(
            report.exit_code,
            report.failed,
            report.deletes_held_back,
            frames_in_two_places(table),
            [*([report.refused] if report.refused else []), *report.errors],
        )
        if report.job_failed
        else None
    )
    found = baseline if baseline is not None else find_baseline(versions, report, digest)
    listing, readable = found.listing, dict(found.readable)
    # the same outcome as a version: nothing to write, unless that version is partial and this run is not
    # (then a complete version of the same datasets is written, so `latest` finds it)
    for version_id, fields in found.heads:  # a HEAD that tells the same outcome: no body compared
        if fields.get(DIGEST_FIELD) == digest and (partial is not None or not _head_partial(fields)):
            return _unchanged(versions, version_id, listing.ids, settings, report, readable)
    baseline_table, baseline_info = found.table, found.info
    if (
        baseline_table is not None
        and baseline_info is not None
        and outcome_digest(baseline_table) == digest
        and (partial is not None or baseline_info.partial is None)
    ):
        return _unchanged(versions, baseline_info.id, listing.ids, settings, report, readable)  # no S3 metadata

    if baseline_table is not None:  # frames whose source was not listed this run keep the recorded ETag and size
        table = with_sources(table, baseline_table.select(KNOWN_COLUMNS))
    missing = rows_without_source(table)
    if missing.num_rows:
        episodes = sorted(set(missing["episode_id"].to_pylist()))
        log.info(
            "listing the source folders of %d episodes for the ETags of %d frames", len(episodes), missing.num_rows
        )
        listed, errors = list_sources({e: layout.source_folder(e) for e in episodes})
        for episode_id, message in errors.items():
            report.warn(f"{episode_id}: source ETags not recorded in the dataset version ({message})")
        table = with_sources(table, listed_sources(listed, layout))
        still = rows_without_source(table).num_rows
        if still:
            report.warn(
                f"{still:,} dataset objects have no source frame to record an ETag and size of; "
                "`pull --version` will report them"
            )

    table = with_content_hashes(table, content)
    if baseline_table is not None and CONTENT_COLUMN in baseline_table.column_names:
        table = with_content_hashes(table, baseline_table.select(["source_key", "source_etag", CONTENT_COLUMN]))
    if baseline_table is not None:
        change = diff_versions(baseline_table, table).counts
    else:
        change = dict.fromkeys(CHANGE_KINDS, 0) | {"added": table.num_rows}
    when = now or utc(report.started)  # the sync's start time, from the clock the command was handed
    if baseline_info is not None and new_version_id(when, report.run_id) <= baseline_info.id:
        # ids sort by time: a clock set back, or two runs in one second, must not put this one before the latest
        when = version_time(baseline_info.id) + timedelta(seconds=1)
    version_id = new_version_id(when, report.run_id)
    info = version_info(
        table,
        version_id,
        report.run_id,
        settings.split,
        settings.split_seed,
        settings.split_group_seconds,
        baseline_info.id if baseline_info else None,
        change,
        digest,
        stratify=settings.split_stratify,
        partial=partial,
    )
    versions.write(info, version_to_parquet(table, info))
    report.version = version_id
    report.version_partial = partial is not None
    if partial is not None:
        report.warn(
            f"dataset version {version_id} is {describe_partial(partial)}; `latest` skips it until a run that "
            "does all its work writes the next one"
        )
    log.info(
        "dataset version %s written: %s dataset objects (%s); against %s (dataset objects): +%d added, "
        "-%d removed, %d moved, %d reclassified, %d with other metadata",
        versions.url(version_id),
        f"{info.frames:,}",
        ", ".join(f"{d} {n:,}" for d, n in info.datasets.items()),
        info.previous or "no earlier version",
        change["added"],
        change["removed"],
        change["moved"],
        change["reclassified"],
        change["metadata"],
    )
    apply_retention(versions, [*listing.ids, version_id], settings, report, readable | {version_id: True})


def _head_partial(fields: dict[str, str]) -> bool:
    """Whether a version's HEAD summary marks it partial (an object without a summary, or an older one: no)."""
    raw = fields.get(SUMMARY_FIELD)
    if not raw:
        return False
    try:
        return VersionInfo.from_json(raw, "").partial is not None
    except VersionError:
        return True  # a summary that cannot be read: in doubt, not taken as the same version


def unreadable_versions(
    versions: VersionStore, ids: list[str], report: RunReport, known: dict[str, bool] | None = None
) -> set[str]:
    """The ids whose object cannot be read as that version (a HEAD, the body if it has no job metadata), each
    warned about by key unless `known` (id -> readable, what the caller already learned and named) says so."""
    known = known or {}
    unreadable = {v for v in ids if known.get(v) is False}
    unknown = [v for v in ids if v not in known]
    for version_id, outcome in run_bounded(versions.summary, unknown, HEAD_WORKERS):
        if isinstance(outcome, VersionError):
            problem = str(outcome)
        elif isinstance(outcome, (ClientError, BotoCoreError)):
            problem = f"{versions.url(version_id)}: cannot read ({describe(outcome)})"
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            continue
        unreadable.add(version_id)
        report.warn(f"{problem}; not a readable dataset version: never deleted, not counted in TUTTLE_VERSIONS_KEEP")
    return unreadable


def apply_retention(
    versions: VersionStore,
    ids: list[str],
    settings: Settings,
    report: RunReport,
    known: dict[str, bool] | None = None,
) -> None:
    """Delete the versions beyond TUTTLE_VERSIONS_KEEP, never the latest, never a pinned one; log each.

    Only readable versions count and are deleted: an object named like a version that is not readable as one
    (`known`: id -> readable, what the caller learned; the others are checked) is named and left alone.
    """
    if settings.versions_keep is None:
        return
    for pin in settings.versions_pinned:
        if not any(v.startswith(pin) for v in ids):
            report.warn(f"TUTTLE_VERSIONS_PINNED names {pin}, which matches no version in {versions.folder_url}")
    unreadable = unreadable_versions(versions, ids, report, known)
    for version_id in versions_to_delete(ids, settings.versions_keep, settings.versions_pinned, unreadable):
        versions.delete(version_id)
        report.versions_deleted.append(version_id)
        log.info(
            "deleted dataset version %s (TUTTLE_VERSIONS_KEEP=%d)", versions.url(version_id), settings.versions_keep
        )
