"""`report`: dataset files per dataset and rarity against the target split, as tables, CSV, JSON and a chart.

Only reads the bucket. Exit status: 0 done, 1 a listing failed, 2 usage or configuration.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..core.clock import utc
from ..core.content_leakage import content_leakage, content_leakage_lines, leak_clusters
from ..core.dataset_report import (
    DatasetReport,
    build_dataset_report,
    json_records,
    leakage_csv,
    rarity_shares_csv,
    table_csv,
)
from ..core.labels import is_job_key
from ..core.manifests import collect_episodes
from ..core.run_report import EXIT_ERRORS, EXIT_OK
from ..core.selectors import unmatched
from ..core.text import csv_safe
from ..edges.csv_sheets import local_path_exists
from ..edges.s3_bucket import S3Bucket
from ..edges.s3_content import read_all_hashes
from ..edges.s3_listing import list_datasets
from ..edges.s3_objects import read_manifests
from ..edges.s3_sheet_headers import headers_key
from ..errors import InventoryError
from ..settings import Settings
from .common import (
    echo_detail,
    episode_option,
    fail_config,
    fail_usage,
    format_option,
    invocation_clock,
    key_layout,
    leak_seconds_option,
    load_settings,
    make_folder,
    open_bucket,
    quiet,
    season_option,
)

log = logging.getLogger("tuttle_prep")

LIST_WORKERS = 16


@click.command("report")
@season_option
@episode_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write report.png, report.csv, rarity_shares.csv and leakage.csv into this folder (without it, no file "
    "is written).",
)
@leak_seconds_option
@click.option(
    "--contact-sheet",
    "contact_sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the worst content-leak clusters (thumbnails, frame names, datasets) to this PNG.",
)
@format_option("What to print: tables for people, or one JSON object for machines.")
def report(
    seasons: tuple[str, ...],
    episodes: tuple[str, ...],
    out: Path | None,
    leak_seconds: tuple[float, ...],
    contact_sheet: Path | None,
    output_format: str,
) -> None:
    """Count the dataset files per dataset and rarity against the target split.

    Lists the dataset folders once and reads the manifests; prints shares per season and overall, each
    rarity's split against the target (the largest deviation flagged), the leakage (the share of each
    other dataset's frames with a train frame of the same episode within --leak-seconds), files per
    episode, orphans and unexpected keys. With --out DIR, writes into DIR report.png (four panels), report.csv
    (level,scope,dataset,<rarities>,total,share,target), rarity_shares.csv
    (rarity,dataset,files,rarity_files,share,target,deviation,deviation_files) and leakage.csv
    (dataset,seconds,frames,leaking,share). With the content hashes kept by sync, also the content leakage
    (validate/test frames with a train frame within TUTTLE_CONTENT_DISTANCE bits of dHash, within and across
    episodes, per rarity; content_leakage.csv) and, with --contact-sheet, a PNG of the worst leak clusters.
    Changes nothing in the bucket.
    """
    settings = load_settings()
    if out is not None:
        make_folder(out, "--out")
    store = open_bucket(settings, LIST_WORKERS)
    layout = key_layout(settings)
    where = f"s3://{settings.bucket}/{settings.ml_prefix}"
    try:
        inventory = list_datasets(store, layout)
    except InventoryError as exc:
        log.error("%s; no report written", exc)
        sys.exit(EXIT_ERRORS)
    current, unexpected = layout.parse_dataset_keys(inventory.every_key())
    own = headers_key(settings.ml_prefix)  # the sheet header memory; is_job_key: the index and the versions
    unexpected = [k for k in unexpected if k != own and not is_job_key(k, settings.ml_prefix)]

    known = _manifest_episodes(store, settings)
    selected = None
    if seasons or episodes:
        candidates = set(current["episode_id"]) | set(known or ())
        selected = {e for e in candidates if e[:3] in seasons or e in episodes}
        where = "with dataset files or in a manifest"
        unknown = unmatched("--episode", episodes, candidates, f"episode {where}") + unmatched(
            "--season", seasons, {e[:3] for e in candidates}, f"season {where}"
        )
        if unknown:  # empty tables for a mistyped season would read as "no files": a usage error instead
            fail_usage("; ".join(unknown))

    report = build_dataset_report(
        current, settings.split, unexpected, known, selected, leak_seconds, train=settings.train_dataset
    )
    scope = f" ({', '.join(seasons + episodes)})" if selected is not None else ""
    files: dict[str, Path] = {}
    if out is not None:
        try:
            title = f"Tuttle Twins datasets{scope}: {report.total_files:,} files in {where}"
            files = write_report_files(report, out, title)
        except OSError as exc:
            fail_config(f"cannot write to --out {out}: {exc.strerror or exc}")
    content = _content_report(store, settings, current, selected, files, out, contact_sheet)

    if output_format == "json":
        record: dict[str, Any] = {
            "bucket": settings.bucket,
            "ml_prefix": settings.ml_prefix,
            "generated": utc(invocation_clock()()).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "selection": list(seasons + episodes),
            **report.to_json(),
            "content_leakage": content,
            "files": {name: str(path) for name, path in files.items()},
        }
        click.echo(json.dumps(record, indent=2))
    else:
        text = report.to_text(where + scope) + "\n\n" + "\n".join(content["lines"])
        if files:
            echo_detail(text)
            written = ", ".join(
                str(files[n])
                for n in ("png", "csv", "rarity_shares", "leakage", "content_leakage", "contact_sheet")
                if n in files
            )
            click.echo(f"\nwrote {written}")
        elif quiet():  # the one line: what was counted
            click.echo(text.splitlines()[0])
        else:
            click.echo(text)
    sys.exit(EXIT_OK)


def _content_report(
    store: S3Bucket,
    settings: Settings,
    current: Any,
    selected: set[str] | None,
    files: dict[str, Path],
    out: Path | None,
    contact_sheet: Path | None,
) -> dict[str, Any]:
    """The content leakage of the dataset objects with a stored hash: content_leakage.csv in `out` (if given),
    the contact sheet if asked for; the JSON record (its text lines under "lines")."""
    hashes, warnings = read_all_hashes(store, settings.ml_prefix)
    for message in warnings:
        log.warning(message)
    known = hashes[hashes["hash"].notna()].drop_duplicates("frame")[["frame", "hash"]]
    frames = current[["key", "episode_id", "frame", "dataset", "rarity"]].astype(str)
    if selected is not None:
        frames = frames[frames["episode_id"].isin(selected)]
    frames = frames.merge(known, on="frame", how="left")
    k = settings.content_distance
    train = settings.train_dataset  # the reference, wherever it stands in TUTTLE_SPLIT
    order = [train, *(name for name in settings.split if name != train)]
    table = content_leakage(frames, order, k)
    hashed = int(frames["hash"].notna().sum())
    try:
        if out is not None:
            files["content_leakage"] = out / "content_leakage.csv"
            csv_safe(table).to_csv(files["content_leakage"], index=False)
        if contact_sheet is not None:
            from ..edges.contact_sheet import write_contact_sheet

            clusters = leak_clusters(frames, order[0], k)
            title = f"worst content-leak clusters (dHash within {k} bits): {len(clusters)} shown"
            write_contact_sheet(store, clusters, contact_sheet, title)
            files["contact_sheet"] = contact_sheet
    except OSError as exc:
        fail_config(f"cannot write the content leakage files: {exc.strerror or exc}")
    return {
        "distance": k,
        "hashed_frames": hashed,
        "frames": len(frames),
        "table": json_records(table),
        "lines": content_leakage_lines(table, k, hashed, len(frames)),
    }


def write_report_files(report: DatasetReport, out: Path, title: str) -> dict[str, Path]:
    """report.png, report.csv, rarity_shares.csv and leakage.csv in `out`; their paths by name (OSError)."""
    from ..edges.report_chart import write_chart  # matplotlib: imported only by the command that draws

    files = {
        "png": out / "report.png",
        "csv": out / "report.csv",
        "rarity_shares": out / "rarity_shares.csv",
        "leakage": out / "leakage.csv",
    }
    files["csv"].write_text(table_csv(report), encoding="utf-8")
    files["rarity_shares"].write_text(rarity_shares_csv(report), encoding="utf-8")
    files["leakage"].write_text(leakage_csv(report), encoding="utf-8")
    write_chart(report, files["png"], title)
    return files


def _manifest_episodes(store: S3Bucket, settings: Settings) -> set[str] | None:
    """Every episode of the manifests, or None (with a warning) if they cannot be read at all."""
    try:
        ignored: list[str] = []
        files, read_errors = read_manifests(store, settings.manifests_prefix, ignored)
    except InventoryError as exc:
        log.warning("%s; orphans cannot be told apart", exc)
        return None
    for message in ignored:
        log.warning(message)
    manifests = collect_episodes(files, local_path_exists(settings.local_sheets_dir))
    for message in read_errors + manifests.errors:
        log.warning(message)
    if not files:
        log.warning(
            "no manifests under s3://%s/%s; orphans cannot be told apart", store.bucket, settings.manifests_prefix
        )
        return None
    if read_errors or manifests.broken_files:
        log.warning("some manifests could not be used: their episodes' files show as orphans")
    return manifests.episode_ids
