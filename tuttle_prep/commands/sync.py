"""The `sync` command: wires the edges (S3, sheets) to the pure core (frame table, split, plan).

manifests -> sheets -> frame tables -> wanted datasets -> listings -> plan -> guard -> apply.
Everything found along the way goes into a `RunReport`; `run_sync` prints nothing, the click command prints
the report and exits with its code.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import pyarrow as pa
from botocore.exceptions import BotoCoreError, ClientError

from .. import __version__
from ..core.clock import Clock
from ..core.content import canonical_members
from ..core.delete_guard import DeleteLimit, delete_guard, episode_delete_guard, refresh_guard
from ..core.findings import NO_FINDINGS_HASH, UNDECODABLE_COLUMNS, SheetRef, render_digest
from ..core.frame_table import build_frame_table
from ..core.labels import is_job_key, labels_key, parse_labels_csv
from ..core.listing_check import check_listing
from ..core.manifests import Episode, collect_episodes, filter_episodes
from ..core.plan import (
    OBJECT_COLUMNS,
    KeyLayout,
    Plan,
    held_in_place,
    plan_changes,
    split_holding_in_place,
    wanted_frames,
)
from ..core.run_report import COUNT_COLUMNS, MISSING_COLUMNS, RunReport
from ..core.selectors import unmatched
from ..core.sheets import SheetReader, SheetSource, is_google_location
from ..core.text import counted, csv_safe, escape_control
from ..core.versions import dataset_objects_table
from ..edges import aws
from ..edges.aws import describe
from ..edges.cloudwatch import log_group_from_env, metrics_destination, observed_run
from ..edges.csv_sheets import CsvFileSource, CsvS3Source, local_path_exists
from ..edges.data_digest import (
    DATA_TOPIC,
    describe_failure,
    digest_topic,
    publish_digest,
    record_sent_findings,
    sent_findings_hash,
)
from ..edges.s3_apply import ApplyResult, apply_plan
from ..edges.s3_bucket import BOTO3_THREADS, S3Bucket
from ..edges.s3_content import read_all_hashes, stored_episodes, update_hashes
from ..edges.s3_labels import read_labels_object, update_labels_index
from ..edges.s3_listing import Inventory, list_datasets, list_sources
from ..edges.s3_lock import S3Lock
from ..edges.s3_objects import fetch_object, read_manifests
from ..edges.s3_sheet_headers import headers_key, read_seen_headers, write_seen_headers
from ..edges.s3_versions import Baseline, VersionStore, find_baseline, record_version
from ..errors import ConfigError, InventoryError, LocalSheetRefused, LockError, SheetContentError, SheetError
from ..settings import Settings, metrics_from_env
from .common import echo_detail, episode_option, fail_config, format_option, invocation_clock, season_option

log = logging.getLogger(__name__)
#: the run's outcome is logged under the package's own name, as every command's is
outcome_log = logging.getLogger("tuttle_prep")

SHEET_THREADS = 8
#: copy requests in flight (s5cmd's default; S3 takes at least 3,500 writes/s per prefix)
DEFAULT_WORKERS = 256
#: rejected rows logged one by one per sheet; a sheet linked to the wrong episode would otherwise flood the log
REJECTIONS_SHOWN = 50


@dataclass
class SyncOptions:
    """The `sync` command's options."""

    dry_run: bool = False
    seasons: tuple[str, ...] = ()
    episodes: tuple[str, ...] = ()
    plan_out: Path | None = None
    workers: int = DEFAULT_WORKERS
    max_delete: DeleteLimit | None = None
    force: bool = False
    allow_empty: bool = False
    prune_orphans: bool = False
    strict: bool = False
    findings_out: Path | None = None


@dataclass
class SyncContext:
    """The outside systems a run talks to (replaceable in tests and the demo)."""

    store: S3Bucket
    reader: SheetReader
    lock: Callable[[], AbstractContextManager[Any]] = field(default=nullcontext)


class LazyGoogleSource:
    """The Google Sheets source, built on the first Google location read: a run whose manifests link no
    Google sheet needs no key file. A bad key file raises ConfigError (exit 2) from that first read."""

    name = "google-sheets"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._source: Any = None
        self._lock = threading.Lock()

    def can_read(self, location: str) -> bool:
        return is_google_location(location)

    def read(self, location: str, *, title: str = "", episode_id: str = "") -> pd.DataFrame:
        with self._lock:
            if self._source is None:
                from ..edges.google_sheets import GoogleSheetSource

                self._source = GoogleSheetSource.from_settings(self._settings)
        return self._source.read(location, title=title, episode_id=episode_id)


def build_context(
    settings: Settings, options: SyncOptions, run_id: str | None = None, clock: Clock = time.time
) -> SyncContext:
    """The bucket (a boto3 client, and the obstore data plane built from the same session), the sheet sources
    (Google first when configured), the run lock."""
    session = aws.new_session()
    client = aws.make_client("s3", max_pool=2 * BOTO3_THREADS, session=session)
    store = S3Bucket(client, settings.bucket, options.workers, session=session)
    sources: list[SheetSource] = [
        CsvFileSource(settings.local_sheets_dir),
        CsvS3Source(partial(fetch_object, client)),
    ]
    if settings.google_credentials_file is not None:
        sources.insert(0, LazyGoogleSource(settings))
    lock = partial(S3Lock, client, settings.bucket, settings.lock_key, settings.lock_stale_seconds, run_id, clock=clock)
    return SyncContext(store=store, reader=SheetReader(sources), lock=lock)


def load_frames(
    episodes: list[Episode],
    reader: SheetReader,
    report: RunReport,
    allow_empty: bool,
    optional_columns: tuple[str, ...] = (),
    seen_columns: dict[str, list[str]] | None = None,
) -> tuple[dict[str, pd.DataFrame], set[str], set[str]]:
    """Read every episode's sheet (a few at a time) into its classified frames; skip and report failures.

    Returns the frames by episode, the frames held back by rejected rows, and the episodes whose plain
    deletes are all held back (a rejected row names no frame of the episode, so any delete could be its frame).
    `seen_columns` (the rarity columns each sheet had in earlier runs) is updated with the sheets read; a sheet
    that lost one of them, and `optional_columns` does not name it, skips its episode.
    """

    def load(episode: Episode) -> tuple[Episode, Any, SheetRef | None]:
        try:
            raw = reader.read(episode.sheet_location, title=episode.title, episode_id=episode.episode_id)
        except SheetError as exc:
            return episode, exc, None
        ref = SheetRef(
            location=episode.sheet_location.strip(),
            title=str(raw.attrs.get("sheet_title") or episode.title),
            spreadsheet_id=raw.attrs.get("spreadsheet_id"),
            gid=raw.attrs.get("worksheet_gid"),
            columns=tuple(str(c) for c in raw.columns),
        )
        try:
            where = f"{episode.episode_id} sheet"
            return episode, build_frame_table(raw, episode.episode_id, where, optional_columns), ref
        except SheetError as exc:  # read, but what it says cannot be used: a data finding
            return episode, SheetContentError(str(exc), column=exc.column, letter=exc.letter), ref

    loaded: dict[str, pd.DataFrame] = {}
    held: set[str] = set()
    held_episodes: set[str] = set()
    rejections = [report.rejections]
    with ThreadPoolExecutor(max_workers=SHEET_THREADS, thread_name_prefix="sheet") as pool:
        for episode, outcome, ref in pool.map(load, episodes):
            eid = episode.episode_id
            if ref is not None:
                report.sheets[eid] = ref
            if isinstance(outcome, SheetContentError):
                report.finding(f"{eid}: {outcome}; skipped, its dataset files are kept")
                detail = str(outcome).removeprefix(f"{eid} sheet: ")
                report.skip(
                    eid, "sheet not usable", data=True, detail=detail, column=outcome.column, letter=outcome.letter
                )
                continue
            if isinstance(outcome, LocalSheetRefused):  # a host file named by a manifest: never opened
                report.error(f"{episode.manifest}: episode {eid}: {outcome}; skipped, its dataset files are kept")
                report.skip(eid, "sheet not read")
                continue
            if isinstance(outcome, SheetError):
                report.error(f"{eid}: {outcome}")
                report.skip(eid, "sheet not read")
                continue
            if seen_columns is not None:
                lost = [
                    c
                    for c in seen_columns.get(eid, ())
                    if c not in outcome.rarity_columns and c not in optional_columns
                ]
                if lost:  # what the sheet says: a data finding for its owners
                    detail = (
                        f"no '{lost[0]}' column, which earlier runs saw; the episode is skipped (its "
                        "files stay as they are) rather than planned from the less trusted columns; restore the "
                        "column, or name it in TUTTLE_SHEET_OPTIONAL_COLUMNS if it was removed on purpose"
                    )
                    report.finding(f"{eid} sheet: {detail}")
                    report.skip(eid, "rarity column lost", data=True, detail=detail, column=lost[0])
                    continue
                seen_columns[eid] = list(outcome.rarity_columns)
            rejections.append(outcome.rejections)
            held |= outcome.held_frames
            for note in outcome.notes:
                report.warn(f"{eid}: {note}")
            for row in outcome.rejections.head(REJECTIONS_SHOWN).itertuples(index=False):
                report.finding(f"{eid} sheet row {row.row}, column {row.column!r}: {row.value!r} {row.reason}")
            if len(outcome.rejections) > REJECTIONS_SHOWN:
                more = len(outcome.rejections) - REJECTIONS_SHOWN
                report.finding(
                    f"{eid}: ... and {more:,} more rejected rows in its sheet ({REJECTIONS_SHOWN} shown); "
                    "--findings-out lists them all"
                )
            untied = outcome.untied_rows
            if untied:  # rejected rows (data findings); holding the deletes back keeps their files
                held_episodes.add(eid)
                rows = ", ".join(str(r) for r in untied[:10]) + (", ..." if len(untied) > 10 else "")
                report.finding(
                    f"{eid}: {len(untied):,} rejected rows name no frame of this episode (sheet rows {rows}); "
                    f"every plain delete of {eid} is held back until they are fixed"
                )
            if outcome.frames.empty and not allow_empty:
                detail = "the sheet has no classified frames; skipped (use --allow-empty to empty it)"
                report.finding(f"{eid}: {detail}")
                report.skip(eid, "no classified frames", data=True, detail=detail)
                continue
            log.info(
                "%s: sheet read, %d classified frames, %d rejected rows",
                eid,
                len(outcome.frames),
                len(outcome.rejections),
            )
            loaded[eid] = outcome.frames.assign(episode_id=eid, row=outcome.rows)
    report.rejections = pd.concat([r for r in rejections if len(r)] or [report.rejections], ignore_index=True)
    return loaded, held, held_episodes


def _record_counts(report: RunReport, plan: Plan | None, episode_ids: list[str]) -> None:
    counts = plan.counts_by_episode() if plan is not None else pd.DataFrame(columns=COUNT_COLUMNS)
    rejected = report.rejections.groupby("episode_id").size() if len(report.rejections) else pd.Series(dtype=int)
    index = sorted(set(counts.index) | set(episode_ids) | set(rejected.index))
    counts = counts.reindex(index=index, columns=COUNT_COLUMNS, fill_value=0)
    counts["rejected"] = rejected.reindex(index, fill_value=0).to_numpy()
    report.counts = counts.fillna(0).astype(int)


def run_sync(
    settings: Settings, options: SyncOptions, context: SyncContext, report: RunReport | None = None
) -> RunReport:
    """Run one sync (or dry run) and return its report. ConfigError propagates (exit 2)."""
    report = report or RunReport(dry_run=options.dry_run)
    store = context.store
    aws.check_bucket(store.client, settings.bucket, settings.manifests_prefix)
    layout = KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))

    with ExitStack() as held:
        lock = None
        if not options.dry_run:  # a dry run writes nothing, so it runs beside a real one
            try:
                lock = held.enter_context(context.lock())
            except LockError as exc:
                report.error(str(exc))
                return report
        planned = _plan_run(settings, options, context, layout, report)
        if planned is None:
            return report
        plan, baseline = planned
        if report.listing_stop and not options.dry_run:
            return report  # the listing contradicts the latest version: nothing is applied (a job failure)
        # checked in a dry run too, so it tells whether the real run would refuse
        guard = delete_guard(plan.deletes_leaving(), plan.current_count, options.max_delete) or episode_delete_guard(
            plan.deletes_leaving_by_episode(), options.max_delete
        )
        if guard and not options.force:
            report.refused = guard
            log.warning(guard)
        # a refresh is a write, never a delete; but a mass refresh (another TUTTLE_IMG_SIZE) is held to the same
        # limits, so a mistyped size cannot rewrite the catalogue unasked
        refresh_refusal = refresh_guard(plan.count("refresh"), plan.current_count, options.max_delete)
        if refresh_refusal and not options.force:
            report.refresh_refused = refresh_refusal
            log.warning(refresh_refusal)
        if options.dry_run:
            return report
        if plan.writes == 0:
            report.applied = True
            # a version may be due with nothing to apply: a run that crashed after its apply wrote none
            labels = update_labels_index(store, layout, plan, report)
            _record_version(settings, store, layout, plan, labels, report, baseline)
            return report
        log.info(
            "applying: %d copies, %d moves, %d refreshes, %d deletes",
            *(plan.count(action) for action in ("copy", "move", "refresh", "delete")),
        )
        result = apply_plan(
            store,
            plan,
            plain_deletes=report.refused is None,
            refreshes=report.refresh_refused is None,
            on_progress=log.info,
            before_deletes=getattr(lock, "still_ours", None),
        )
        report.applied = True
        report.copied, report.moved, report.deleted = result.copied, result.moved, result.deleted
        report.refreshed, report.refreshes_held_back = result.refreshed, result.refreshes_held_back
        report.failed = result.failed
        report.deletes_held_back = result.deletes_held_back
        for failure in result.failures[:20]:
            kept = "; the old copy is kept, the next run tries again" if failure.action == "refresh" else ""
            report.error(f"{failure.action} {failure.key} failed: {failure.error}{kept}")
        if result.failed > 20:
            report.error(f"... and {result.failed - 20:,} more failed operations")
        if result.failed and result.deletes_held_back:
            report.error(
                f"{result.deletes_held_back:,} plain deletes held back because {result.failed:,} operations failed; "
                "the next run retries them"
            )
        if result.deletes_stopped:
            report.error(
                f"{result.deletes_stopped}; this run deleted nothing (not even the sources of its moves) and "
                "leaves the labels index alone: the lock's holder plans from the bucket as it is now"
            )
            return report  # and writes no version: the next run writes the version of what it finds
        labels = update_labels_index(store, layout, plan, report, result)
        _record_version(settings, store, layout, plan, labels, report, baseline, result)
    return report


def _record_version(
    settings: Settings,
    store: S3Bucket,
    layout: KeyLayout,
    plan: Plan,
    labels: pd.DataFrame | None,
    report: RunReport,
    baseline: Baseline | None = None,
    result: ApplyResult | None = None,
) -> None:
    """The dataset version of what the run left, unless the labels index could not be worked out (that error is
    reported; the next run writes the version). `baseline`: the latest version as read before applying;
    `result`: what the apply wrote (its objects' ETags are recorded as the copies')."""
    if labels is None:
        return
    versions = VersionStore(store.client, store.bucket, settings.ml_prefix)
    objects = objects_after_apply(store, layout, plan, result, report)

    # a listing of sources for the version is needed only for episodes not planned this run that the latest
    # version has no ETags of (a first version, or after a crash): on threads, as the sync's own listing
    content = None
    if plan.content is not None and len(plan.content):
        known = plan.content[plan.content["hash"].notna()]
        content = pa.table(
            {
                "source_key": pa.array(known["source_key"].tolist(), pa.string()),
                "source_etag": pa.array(known["source_etag"].tolist(), pa.string()),
                "content_hash": pa.array(known["hash"].astype("uint64").to_numpy(), pa.uint64()),
            }
        )
    record_version(
        versions,
        partial(list_sources, store),
        layout,
        settings,
        labels,
        plan.sources,
        report,
        baseline=baseline,
        dataset_objects=objects,
        content=content,
    )


def objects_after_apply(
    store: S3Bucket, layout: KeyLayout, plan: Plan, result: ApplyResult | None, report: RunReport
) -> pa.Table:
    """What each dataset object holds after the apply (dataset_key, dataset_etag, dataset_size): the ML listing's
    ETag and size, and for each object written this run those of what it was copied from (a server-side copy
    of a single-part object keeps its MD5 ETag). A copy of a multipart upload may get another ETag, so those
    few are asked of S3 (HEAD), the copy's own answer."""
    listed = plan.objects if plan.objects is not None else pd.DataFrame(columns=OBJECT_COLUMNS)
    table = dataset_objects_table(listed["key"], listed["etag"], listed["size"])  # columnar: no Python per key
    if result is None or not result.written:
        return table
    # the few objects written this run: what each was copied from (a source, or for a move a dataset object)
    written = dict(result.written)
    sources = plan.sources
    known: dict[str, tuple[Any, Any]] = {}
    if len(sources):
        source_keys = layout.source_keys(sources["episode_id"], sources["frame"])
        wanted = source_keys.isin(set(written.values())).to_numpy(dtype=bool)
        columns = (source_keys[wanted], sources["etag"][wanted], sources["size"][wanted])
        rows = zip(*(c.tolist() for c in columns), strict=True)
        known.update((key, (etag, size)) for key, etag, size in rows)
    from_objects = listed[listed["key"].isin(set(written.values()))] if len(listed) else listed
    for key, etag, size in zip(*(from_objects[c].tolist() for c in ("key", "etag", "size")), strict=True):
        known.setdefault(key, (etag, size))
    keys, etags, sizes = [], [], []
    for dst, src in written.items():
        etag, size = known.get(src, (None, None))
        if etag is None or "-" in str(etag):  # a multipart source: its copy may carry another ETag; ask S3
            try:
                head = store.client.head_object(Bucket=store.bucket, Key=dst)
                etag, size = head.get("ETag"), head.get("ContentLength")
            except (ClientError, BotoCoreError) as exc:
                report.warn(f"s3://{store.bucket}/{dst}: its ETag is not recorded in the version ({describe(exc)})")
                etag = size = None
        keys.append(dst)
        etags.append(etag)
        sizes.append(None if size is None or pd.isna(size) else int(size))
    # written objects first: the first row of a key wins (the listing's row is what the object held before)
    return pa.concat_tables([dataset_objects_table(keys, etags, sizes), table])


def _update_content(
    settings: Settings,
    options: SyncOptions,
    store: S3Bucket,
    layout: KeyLayout,
    planned: set[str],
    sources: pd.DataFrame,
    report: RunReport,
) -> pd.DataFrame | None:
    """Hash the planned episodes' listed source frames not hashed yet (`edges.s3_content`); an episode with no hash
    store object is listed for it once. None when TUTTLE_CONTENT_HASH=off or in a dry run (nothing is fetched)."""
    if not settings.content_hash or options.dry_run or not planned:
        return None
    try:
        stored = stored_episodes(store, settings.ml_prefix)
    except InventoryError as exc:
        report.warn(f"{exc}; no content hashes this run")
        return None
    listed = sources[sources["episode_id"].isin(planned)]
    unlisted = sorted(planned - set(listed["episode_id"]) - stored)
    if unlisted:
        more, errors = list_sources(store, {e: layout.source_folder(e) for e in unlisted})
        for eid, message in errors.items():
            report.warn(f"{eid}: {message}; its frames are not hashed this run")
        listed = pd.concat([listed, more], ignore_index=True) if len(more) else listed
    if listed.empty:
        return None
    rows = pd.DataFrame(
        {
            "episode_id": listed["episode_id"].astype(str).to_numpy(),
            "frame": listed["frame"].astype(str).to_numpy(),
            "source_key": layout.source_keys(listed["episode_id"], listed["frame"]).astype(str).to_numpy(),
            "source_etag": listed["etag"].astype(str).to_numpy(),
        }
    )
    run = update_hashes(store, settings.ml_prefix, rows)
    for message in run.warnings:
        report.warn(message)
    for eid, key, problem in run.undecodable[:20]:
        report.finding(f"{eid}: source frame s3://{store.bucket}/{key} is {problem}; it has no content hash")
    if len(run.undecodable) > 20:
        report.finding(f"... and {len(run.undecodable) - 20:,} more source frames that are no picture")
    if run.undecodable:
        report.undecodable = pd.DataFrame(
            [
                (e, k.rsplit("/", 1)[-1].removesuffix(".jpg"), f"s3://{store.bucket}/{k}", p)
                for e, k, p in run.undecodable
            ],
            columns=UNDECODABLE_COLUMNS,
        )
    for eid, key, error in run.failed[:20]:
        report.warn(f"{eid}: s3://{store.bucket}/{key} not read for its content hash ({error}); tried again next run")
    if len(run.failed) > 20:
        report.warn(f"... and {len(run.failed) - 20:,} more source frames not read for their content hash")
    report.content_hashed, report.content_reused = run.fetched, run.reused
    log.info(
        "content hashes: %d source frames hashed, %d already hashed, %d episode tables written",
        run.fetched,
        run.reused,
        len(run.written),
    )
    tables = list(run.tables.values())
    return pd.concat(tables, ignore_index=True) if tables else None


def canonical_of_store(
    store: S3Bucket, settings: Settings, fresh: pd.DataFrame | None, warn: Callable[[str], Any]
) -> dict[str, str]:
    """frame -> canonical member of its near-duplicate cluster, over every stored hash (`fresh`: this run's
    tables, which replace the stored ones of their episodes)."""
    stored, warnings = read_all_hashes(store, settings.ml_prefix)
    for message in warnings:
        warn(message)
    if fresh is not None and len(fresh):
        stored = pd.concat([stored[~stored["episode_id"].isin(set(fresh["episode_id"]))], fresh], ignore_index=True)
    known = stored[stored["hash"].notna()].drop_duplicates("frame")
    return canonical_members(
        known["frame"].tolist(), known["hash"].astype("uint64").to_numpy(), settings.content_distance
    )


def _content_split(
    settings: Settings,
    options: SyncOptions,
    context: SyncContext,
    frames: dict[str, pd.DataFrame],
    others: list[Episode],
    content: pd.DataFrame | None,
) -> pd.DataFrame:
    """TUTTLE_SPLIT_GROUP=content: split with the clusters of every stored hash. A cluster spans episodes, so a
    run of some episodes also reads the other sheets (for the split only: they are not planned), and its
    frames go where a full run puts them."""
    canonical = canonical_of_store(context.store, settings, content, log.warning)
    parts = [_concat_frames(frames)]
    if others and (options.seasons or options.episodes):
        scratch = RunReport(dry_run=True)
        extra, _, _ = load_frames(others, context.reader, scratch, True, settings.sheet_optional_columns)
        parts += list(extra.values())
        for message in scratch.errors:
            log.warning("content split: %s (its frames are not counted in the split)", message)
    table = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    wanted = wanted_frames(
        table, settings.split, settings.split_seed, settings.split_group_seconds, settings.split_stratify, canonical
    )
    return wanted[wanted["episode_id"].isin(set(frames))].reset_index(drop=True)


def _latest_version(versions: VersionStore, report: RunReport) -> Baseline | None:
    """The newest readable dataset version, read whole once per run (the version write reuses it); None, with a
    warning, when the versions folder cannot be listed or read."""
    try:
        return find_baseline(versions, report)
    except (ClientError, BotoCoreError, InventoryError) as exc:
        problem = describe(exc) if isinstance(exc, (ClientError, BotoCoreError)) else str(exc)
        report.warn(f"{versions.folder_url}: not read ({problem}); the listing is not checked against a version")
        return None


def _labels_index_agrees(
    store: S3Bucket,
    settings: Settings,
    layout: KeyLayout,
    current: pd.DataFrame,
    folders: list[str],
    report: RunReport,
) -> bool:
    """True if the labels index (what the last run that applied left in the datasets) does not contradict the
    listing: a run that applied its plan but could not write its version leaves the latest version behind the
    datasets, and the listing is then no fault. False if the index is absent, unreadable or contradicts too."""
    key = labels_key(settings.ml_prefix)
    where = f"s3://{settings.bucket}/{key}"
    try:
        data = read_labels_object(store, key)
        labels = parse_labels_csv(data, where) if data is not None else None
    except (ClientError, BotoCoreError, ValueError) as exc:
        problem = describe(exc) if isinstance(exc, (ClientError, BotoCoreError)) else str(exc)
        log.info("labels index %s not read (%s): not compared with the listing", where, problem)
        return False
    if labels is None:
        return False
    verdict = check_listing(where, labels["s3_key"], current["key"], folders, layout)
    if verdict.contradicts:
        return False
    report.warn(
        f"the listing contradicts the latest dataset version but agrees with the labels index {where} "
        f"({verdict.listed:,} of its {verdict.recorded:,} dataset objects listed): the datasets moved on since "
        "that version (a run that applied its plan did not write its version), so the run goes on"
    )
    return True


def _check_listing(
    store: S3Bucket,
    settings: Settings,
    options: SyncOptions,
    layout: KeyLayout,
    versions: VersionStore,
    baseline: Baseline | None,
    current: pd.DataFrame,
    folders: list[str],
    report: RunReport,
) -> None:
    """Stop the run (a job failure, `report.listing_stop`) when the ML listing contradicts the latest readable
    version (`core.listing_check`); with --force, warn and go on. No version yet (a first run): no check."""
    if baseline is None:
        return
    if baseline.table is None or baseline.info is None:
        if baseline.listing.ids:
            report.warn(f"no readable dataset version in {versions.folder_url}: the listing is not checked against one")
        return
    verdict = check_listing(baseline.info.id, baseline.table["dataset_key"], current["key"], folders, layout)
    log.info(
        "listing check: %d of the %d dataset objects of version %s listed, %d of its folders missing",
        verdict.listed,
        verdict.recorded,
        verdict.version_id,
        len(verdict.missing_folders),
    )
    if not verdict.contradicts:
        return
    if _labels_index_agrees(store, settings, layout, current, folders, report):
        return
    message = verdict.describe(f"s3://{settings.bucket}/{settings.ml_prefix}", versions.url(verdict.version_id))
    if options.force:
        report.warn(f"{message}; applied anyway (--force)")
        return
    report.listing_stop = verdict.version_id
    if options.dry_run:
        report.error(f"{message}; a real run stops before applying and changes nothing (--force applies anyway)")
    else:
        report.error(
            f"{message}; stopped before applying: nothing was copied, moved or deleted, no labels index or version "
            "was written (check the store, the prefix and the permissions; --force applies anyway)"
        )


def _plan_run(
    settings: Settings, options: SyncOptions, context: SyncContext, layout: KeyLayout, report: RunReport
) -> tuple[Plan, Baseline | None] | None:
    """Read, list and plan; also check the listing against the latest dataset version. None: nothing planned."""
    store = context.store
    try:
        ignored: list[str] = []
        files, read_errors = read_manifests(store, settings.manifests_prefix, ignored)
    except InventoryError as exc:
        report.error(f"{exc}; nothing was planned or changed")
        return None
    for message in ignored:
        report.warn(message)
    for message in read_errors:
        report.error(message)
    if not files and not read_errors:
        report.error(f"no manifests (*-episodes.json) under s3://{settings.bucket}/{settings.manifests_prefix}")
        return None
    manifests = collect_episodes(files, local_path_exists(settings.local_sheets_dir))
    for message in manifests.errors:
        report.error(message)
    episodes = filter_episodes(manifests.episodes, options.seasons, options.episodes)
    unknown = unmatched(
        "--episode", {e.upper() for e in options.episodes}, manifests.episode_ids, "episode in the manifests"
    ) + unmatched(
        "--season", {s.upper() for s in options.seasons}, {e.season_code for e in manifests.episodes},
        "season in the manifests",
    )
    if unknown:  # a mistyped selector: the person at the terminal is told, nobody is paged
        report.usage_error = "; ".join(unknown)
        return None
    if any(is_google_location(e.sheet_location) for e in episodes) and settings.google_credentials_file is None:
        raise ConfigError(
            "the manifests link Google Sheets but GOOGLE_DRIVE_CREDENTIALS_FILE is not set (see .env.example)"
        )
    log.info(
        "%s, %s, %d selected", counted(len(files), "manifest file"), counted(len(manifests.episodes), "episode"),
        len(episodes),
    )

    memory_key = headers_key(settings.ml_prefix)
    seen_before, memory_problem = read_seen_headers(store, memory_key)
    if memory_problem:
        report.warn(f"{memory_problem}; a sheet that lost a rarity column earlier runs saw is not noticed this run")
    seen = dict(seen_before) if seen_before is not None else None
    frames, held, held_episodes = load_frames(
        episodes, context.reader, report, options.allow_empty, settings.sheet_optional_columns, seen
    )
    # the split hashes every frame in Python (~0.5 µs a frame): it runs on a thread while the listings wait on S3
    # and the listed keys are parsed in Arrow; plan_changes leaves out the episodes skipped meanwhile
    content_split = settings.split_group == "content"  # needs the content hashes: split after them
    split = None
    if not content_split:
        split = InBackground(
            wanted_frames,
            _concat_frames(frames),
            settings.split,
            settings.split_seed,
            settings.split_group_seconds,
            settings.split_stratify,
        )

    # the latest dataset version is read while the ML prefix is listed, to check the listing against it
    versions = VersionStore(store.client, store.bucket, settings.ml_prefix)
    latest = InBackground(_latest_version, versions, report)
    # every planned episode's source folder (one LIST page per 1,000 frames, several folders at once), listed
    # while the ML prefix is: each dataset object is compared with its source, so a re-rendered source reaches
    # its copy the same night, and the nightly cost is the longer of the two listings, not their sum
    folders = {eid: layout.source_folder(eid) for eid in frames}
    source_listing = InBackground(list_sources, store, folders)
    try:
        inventory = list_datasets(store, layout, with_objects=True)
    except InventoryError as exc:
        report.error(f"{exc}; nothing was planned or changed")
        _record_counts(report, None, [e.episode_id for e in episodes])
        return None
    current, unexpected = layout.parse_dataset_keys(inventory.every_key())
    baseline = latest.result()
    _check_listing(store, settings, options, layout, versions, baseline, current, inventory.folders, report)

    sources, source_errors = source_listing.result()
    for eid, message in source_errors.items():
        report.error(f"{eid}: {message}")
        report.skip(eid, "source listing failed")
        frames.pop(eid, None)
    hashed = set(frames)
    if settings.split_group == "content":  # the clusters span episodes: every episode's frames are hashed
        hashed |= {e.episode_id for e in manifests.episodes if e.episode_id not in report.skipped}
    content = _update_content(settings, options, store, layout, hashed, sources, report)

    # the job's own keys: the header memory; is_job_key: the labels index (CSV, Parquet) and the versions
    unexpected = [k for k in unexpected if k != memory_key and not is_job_key(k, settings.ml_prefix)]
    report.unexpected = len(unexpected)
    for key in unexpected[:20]:
        report.warn(f"not a dataset object, left alone: {key}")
    if len(unexpected) > 20:
        report.warn(f"... and {len(unexpected) - 20:,} more keys under {settings.ml_prefix} left alone")

    # only once the listings succeeded, and agree with the latest version: a run that stops changes nothing
    if seen is not None and seen != seen_before and not options.dry_run and not report.listing_stop:
        try:
            write_seen_headers(store, memory_key, seen)
        except (ClientError, BotoCoreError) as exc:
            report.warn(f"s3://{settings.bucket}/{memory_key}: not updated ({describe(exc)})")
    prune = options.prune_orphans
    manifest_problems = read_errors + manifests.errors
    if prune and manifest_problems:
        report.error(
            "--prune-orphans ignored: some manifests have errors or could not be read, so orphans cannot be told apart"
        )
        prune = False
    known_episodes = manifests.episode_ids | doubtful_episodes(manifest_problems, current["episode_id"])
    all_frames = _concat_frames(frames)
    if split is not None:
        wanted = split.result()
    else:
        others = [e for e in manifests.episodes if e.episode_id not in frames and e.episode_id not in report.skipped]
        wanted = _content_split(settings, options, context, frames, others, content)
    # frames in doubt keep their files; the split counts each where it is, so no other frame moves meanwhile
    # (the content split does not pin: its clusters span episodes, and a held frame only stays where it is)
    in_doubt = held_in_place(current, all_frames, held, held_episodes)
    if len(in_doubt) and settings.split_group != "content":
        log.info("%d frames in doubt counted where they are by the split of their episodes", len(in_doubt))
        wanted = split_holding_in_place(
            wanted,
            all_frames,
            in_doubt,
            settings.split,
            settings.split_seed,
            settings.split_group_seconds,
            settings.split_stratify,
        )
    plan = plan_changes(
        wanted,
        current,
        sources,
        layout,
        planned_episodes=set(frames),
        known_episodes=known_episodes,
        prune_orphans=prune,
        held_frames=held,
        held_episodes=held_episodes,
        objects=dataset_objects(inventory),
    )
    plan.metadata = all_frames.reindex(columns=["episode_id", "frame", "metadata"]).fillna("")
    plan.sources = sources
    plan.content = content
    report.planned = True
    report.orphans = len(plan.orphans)
    if len(plan.orphans):
        by_episode = {str(e): int(n) for e, n in plan.orphans.groupby("episode_id").size().items()}
        message = f"{len(plan.orphans):,} dataset files of episodes in no manifest ({', '.join(sorted(by_episode))})"
        if prune:  # deleted as the operator asked: not a finding
            report.warn(f"{message}: deleting")
        else:
            report.orphan_files = by_episode
            report.finding(f"{message}: left alone (use --prune-orphans to delete)")
    report.missing = plan.missing.reindex(columns=MISSING_COLUMNS).assign(
        src_key=lambda m: f"s3://{settings.bucket}/" + m["src_key"].astype(str),
        row=_sheet_rows(plan.missing, frames),
    )
    for row in report.missing.head(20).itertuples(index=False):
        at = f" sheet row {row.row}" if row.row else ""
        report.finding(f"{row.episode_id}{at}: missing source frame {row.src_key}")
    if len(plan.missing) > 20:
        report.finding(f"... and {len(plan.missing) - 20:,} more missing source frames (--findings-out lists them all)")
    _record_counts(report, plan, [e.episode_id for e in episodes if e.episode_id not in report.skipped])
    if options.plan_out is not None:
        write_plan_csv(plan, options.plan_out)
    return plan, baseline


_MANIFEST_NAMED = re.compile(r"([^/\s:]+)-episodes\.json", re.IGNORECASE)
_SEASON_CODE = re.compile(r"S[0-9]{2}\Z", re.IGNORECASE)


def _sheet_rows(missing: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> np.ndarray:
    """The sheet row of each missing frame (0 where its episode's frames carry none)."""
    rows = np.zeros(len(missing), dtype=np.int64)
    if not len(missing):
        return rows
    episodes = missing["episode_id"].astype(str).to_numpy()
    for eid in np.unique(episodes):
        table = frames.get(eid)
        if table is None or "row" not in table:
            continue
        where = episodes == eid
        by_frame = pd.Series(table["row"].to_numpy(), index=table["frame"].to_numpy())
        found = by_frame.reindex(missing["frame"].to_numpy()[where])
        rows[where] = found.fillna(0).astype(np.int64).to_numpy()
    return rows


def dataset_objects(inventory: Inventory) -> pd.DataFrame:
    """The listed dataset objects as OBJECT_COLUMNS (key, etag, size, last_modified), for the refresh."""
    table = inventory.objects
    if table is None:
        return pd.DataFrame(columns=OBJECT_COLUMNS)
    return pd.DataFrame(
        {
            "key": pd.Series(pd.arrays.ArrowStringArray(table["path"].cast(pa.string()))),
            "etag": pd.Series(pd.arrays.ArrowStringArray(table["e_tag"].cast(pa.string()))),
            "size": table["size"].cast(pa.int64()).to_pandas(),
            "last_modified": table["last_modified"].to_pandas(),
        }
    )


def _concat_frames(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    frame_list = list(frames.values())
    if not frame_list:
        return pd.DataFrame(columns=["episode_id", "frame", "rarity"])
    return pd.concat(frame_list, ignore_index=True)


class InBackground:
    """`fn(*args)` started on a thread at once; `result()` waits for it and returns its value or raises its
    error. A daemon thread: a run that ends early (a failed listing, SIGTERM) does not wait for it."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._outcome: tuple[bool, Any] = (False, RuntimeError("not finished"))
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="split", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._outcome = (True, fn(*args))
        except BaseException as exc:  # handed to the caller of result()
            self._outcome = (False, exc)

    def result(self) -> Any:
        self._thread.join()
        ok, value = self._outcome
        if not ok:
            raise value
        return value


def doubtful_episodes(manifest_problems: list[str], listed: pd.Series) -> set[str]:
    """Listed episodes a manifest that could not be read or parsed may hold: they count as known, not orphans.

    Every problem message names its manifest file; `S02-episodes.json` covers season S02. A file whose name
    gives no season (or a problem naming no file) could hold any episode: then every listed one counts.
    """
    seasons: set[str] = set()
    episodes = set(listed.unique().tolist())  # a few dozen values: not a Python object per listed key
    for message in manifest_problems:
        names = _MANIFEST_NAMED.findall(message)
        if not names or not all(_SEASON_CODE.match(n) for n in names):
            return episodes
        seasons.update(n.upper() for n in names)
    return {e for e in episodes if e[:3] in seasons}


def write_plan_csv(plan: Plan, path: Path) -> None:
    """`action,episode_id,frame,src_key,dst_key`, one row per frame decision."""
    try:
        csv_safe(plan.to_csv_frame()).to_csv(path, index=False)
    except OSError as exc:
        raise ConfigError(f"cannot write --plan-out {path}: {exc.strerror or exc}") from None


@click.command("sync")
@click.option("--dry-run", is_flag=True, help="Read, list and plan; print what would change; change nothing.")
@season_option
@episode_option
@click.option(
    "--plan-out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write every decision to this CSV: action,episode_id,frame,src_key,dst_key.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 1024),
    default=DEFAULT_WORKERS,
    show_default=True,
    metavar="N",
    help="Copy requests in flight (listings, deletes and sheet reads use fewer).",
)
@click.option(
    "--max-delete",
    metavar="N|P%",
    help="Refuse plain deletes above N files or P% of the planned episodes' dataset files, and above P% of any "
    "one episode's files [default: refuse above 10% when more than 100, run-wide and per episode].",
)
@click.option(
    "--force",
    is_flag=True,
    help="Apply the plain deletes even above --max-delete, and apply a plan whose listing contradicts the latest "
    "dataset version (far fewer of its objects listed, or a dataset folder of it missing).",
)
@click.option("--allow-empty", is_flag=True, help="Sync an episode whose sheet has no classified frames (empties it).")
@click.option("--prune-orphans", is_flag=True, help="Delete dataset files of episodes that are in no manifest.")
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 on data findings too (rejected rows, skipped sheets, missing sources): for checking sheets.",
)
@click.option(
    "--findings-out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write every data finding to this CSV: episode_id,kind,row,column,value,reason,where (cell link).",
)
@format_option("What stdout gets: the tables and the outcome line, or the run summary as one JSON object.")
def sync(
    dry_run: bool,
    seasons: tuple[str, ...],
    episodes: tuple[str, ...],
    plan_out: Path | None,
    workers: int,
    max_delete: str | None,
    force: bool,
    allow_empty: bool,
    prune_orphans: bool,
    strict: bool,
    findings_out: Path | None,
    output_format: str,
) -> None:
    """Bring the dataset folders in line with the sheets.

    Copies run in parallel on the server side; deletes run last, in batches of 1,000, and only when
    every copy succeeded.

    Two kinds of findings are reported apart. Job failures (a setting, S3 or Google failing, a sheet
    that cannot be opened, a broken manifest, failed copies or deletes, refused deletes, a lost run
    lock, a listing that contradicts the latest dataset version) exit 1 and raise the RunFailed
    alarm. Data findings (rejected rows, a sheet without FRAME NUMBER or without classified rows,
    missing source frames, orphans) are printed, leave the files they concern as they are, and go to
    the sheet owners in the data digest (`alarm setup --digest-email`); they exit 0 unless --strict.
    Exit status 2: usage or configuration error (also a --season/--episode that matches no episode of the
    manifests: the nearest ids are named, nothing is done, no RunFailed); 143 stopped by SIGTERM (130 by Ctrl-C).
    Metrics go where TUTTLE_METRICS / TUTTLE_METRICS_NAMESPACE say (by default only when TUTTLE_LOG_GROUP is set);
    the run prints where.
    """
    try:
        limit = DeleteLimit.parse(max_delete)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-delete") from None
    options = SyncOptions(
        dry_run=dry_run,
        seasons=seasons,
        episodes=episodes,
        plan_out=plan_out,
        workers=workers,
        max_delete=limit,
        force=force,
        allow_empty=allow_empty,
        prune_orphans=prune_orphans,
        strict=strict,
        findings_out=findings_out,
    )
    report = RunReport(dry_run=dry_run, strict=strict, clock=invocation_clock(), program_version=__version__)
    try:  # read on its own, as TUTTLE_LOG_GROUP: where the metrics of even a misconfigured run go
        metrics = metrics_from_env()
        # an unusable AWS_* setting reaches neither CloudWatch nor S3: one sentence, before trying either
        aws.new_session()
    except ConfigError as exc:
        fail_config(str(exc))
    namespace = None if dry_run else metrics.namespace
    report.metrics = (
        "not published: a dry run" if dry_run else metrics_destination(metrics.namespace, metrics.reason)
    )
    # invalid settings are reported inside: a real run's exit 2 must reach the logs and RunFailed too
    with observed_run(report, log_group_from_env(os.environ), metrics_namespace=namespace):
        try:
            settings = Settings.from_env()
            report.seed_fingerprint = settings.seed_fingerprint
            report.split_mode = settings.split_mode
            context = build_context(settings, options, report.run_id, report.clock)
            run_sync(settings, options, context, report)
            if findings_out is not None:
                write_findings_csv(report, findings_out)
            if not dry_run and not report.usage_error:
                send_data_digest(settings, options, context.store, report)
        except ConfigError as exc:
            report.config_error = str(exc)
        print_report(report, output_format)
    # the code the summary recorded (a stop that arrived as the run ended counts there too)
    sys.exit(report.exit_code)


def print_report(report: RunReport, output_format: str = "text") -> int:
    """Print the table, the problems and the outcome (with `json`, the run summary instead of the table and the
    outcome line); return the exit code. Under -q stdout has the outcome line only."""
    report.finished = report.finished or report.clock()
    if report.config_error or report.usage_error:
        kind = "configuration error" if report.config_error else "usage error"
        click.echo(escape_control(f"{kind}: {report.config_error or report.usage_error}"), err=True)
        if output_format == "json":
            click.echo(json.dumps(report.summary(), indent=2, default=str))
        return report.exit_code
    if output_format == "text":
        echo_detail(report.table())
    for message in report.warnings:
        outcome_log.warning(message)
    if report.findings:
        outcome_log.warning(
            "data findings (%s): what the sheets or source folders say", f"{report.data_finding_count:,}"
        )
    for message in report.findings:
        outcome_log.warning(message)
    if report.errors or report.refused or report.refresh_refused:
        outcome_log.error("job failures (%d): the job could not do all its work", report.job_failures)
    for message in report.errors:
        outcome_log.error(message)
    if report.refused:
        outcome_log.error(report.refused)
    if report.refresh_refused:
        outcome_log.error(report.refresh_refused)
    if output_format == "json":  # built from the run summary: every count the report has, nothing to keep in step
        click.echo(json.dumps(report.summary(), indent=2, default=str))
        return report.exit_code
    if report.seed_fingerprint:
        mode = f"; {report.split_mode}" if report.split_mode else ""
        echo_detail(f"split seed fingerprint {report.seed_fingerprint} (sha256 of TUTTLE_SPLIT_SEED){mode}")
    if report.metrics:
        echo_detail(f"metrics: {report.metrics}")
    click.echo(report.outcome_line())
    return report.exit_code


def digest_context(report: RunReport, bucket: str) -> str:
    """The first line of a digest: which run, where, when."""
    started = datetime.fromtimestamp(report.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"tuttle-prep data findings of the run {report.run_id} on {report.host} at {started} (bucket {bucket})."


def send_data_digest(settings: Settings, options: SyncOptions, store: S3Bucket, report: RunReport) -> str:
    """After a real run: publish the data digest if the findings differ from those last sent; return why not.

    Sent only when the run read every sheet of the manifests (no --season/--episode, no sheet that failed),
    so a partial list is never compared with a full one. Never raises: a failure is a warning, and the
    next run tries again. The outcome is also stored as `report.digest`.
    """
    report.digest = _send_data_digest(settings, options, store, report)
    log.info("data digest: %s", report.digest)
    return report.digest


def _send_data_digest(settings: Settings, options: SyncOptions, store: S3Bucket, report: RunReport) -> str:
    if options.dry_run or not report.planned:
        return "not sent: no complete plan"
    if options.seasons or options.episodes:
        return "not sent: --season/--episode read only some sheets"
    unread = sorted(set(report.skipped) - set(report.skipped_for_data))
    if unread:
        return f"not sent: {len(unread)} sheets not read ({', '.join(unread[:5])})"
    table = report.data_findings()
    current = report.data_findings_sha256()
    key = labels_key(settings.ml_prefix)
    try:
        previous, index_exists = sent_findings_hash(store.client, settings.bucket, key)
        if (previous or NO_FINDINGS_HASH) == current:
            return "unchanged since the last digest: not sent"
        topic_arn = digest_topic()
        if topic_arn is None:
            return f"not configured (no SNS topic {DATA_TOPIC}; alarm setup --digest-email)"
        digest = render_digest(table, report.sheets, context=digest_context(report, settings.bucket))
        message_id = publish_digest(topic_arn, digest)
    except Exception as exc:  # noqa: BLE001 - the digest never changes the run's outcome
        log.warning("data digest not sent: %s; the next run tries again", describe_failure(exc))
        return "failed"
    outcome = f"sent ({digest.shown:,} of {digest.total:,} findings, message {message_id})"
    if not index_exists:
        log.warning("data digest: no labels index %s to record it in; the next run sends it again", key)
        return outcome
    try:
        record_sent_findings(store.client, settings.bucket, key, current)
    except Exception as exc:  # noqa: BLE001
        log.warning("data digest sent, but not recorded (%s); the next run sends it again", describe_failure(exc))
    return outcome


def write_findings_csv(report: RunReport, path: Path) -> None:
    """`--findings-out`: every data finding of the run, FINDING_COLUMNS, one row each."""
    try:
        csv_safe(report.data_findings()).to_csv(path, index=False)
    except OSError as exc:
        raise ConfigError(f"cannot write --findings-out {path}: {exc.strerror or exc}") from None
