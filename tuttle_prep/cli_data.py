"""`report` and `pull`: the dataset commands for the people who train the model and review the sheets.

Both only read the bucket. Exit status: 0 done, 1 a listing or download failed, 2 usage or configuration.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import aws
from .cli_common import episode_option, fail_config, load_settings, season_option
from .errors import ConfigError, InventoryError
from .labels import labels_key
from .manifests import collect_episodes
from .plan import KeyLayout
from .report import EXIT_ERRORS, EXIT_OK
from .s3_store import S3Store
from .settings import Settings
from .sheet_headers import headers_key

log = logging.getLogger("tuttle_prep")

LIST_WORKERS = 16


def _store(settings: Settings, workers: int) -> S3Store:
    """A client sized to `workers`, after checking the bucket (exit 2 with one sentence if it is unusable)."""
    client = aws.make_client("s3", max_pool=workers)
    try:
        aws.check_bucket(client, settings.bucket)
    except ConfigError as exc:
        fail_config(str(exc))
    return S3Store(client, settings.bucket, workers)


def _layout(settings: Settings) -> KeyLayout:
    return KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))


def _make_folder(path: Path, option: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail_config(f"cannot create {option} {path}: {exc.strerror or exc}")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


@click.command("report")
@season_option
@episode_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for report.png and report.csv.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="What to print: tables for people, or one JSON object for machines.",
)
def report_command(seasons: tuple[str, ...], episodes: tuple[str, ...], out: Path, output_format: str) -> None:
    """Count the dataset files per dataset and rarity against the target split.

    Lists the dataset folders once and reads the manifests; prints shares per season and overall,
    files per episode, orphans and unexpected keys; writes report.png (stacked bars) and report.csv
    (level,scope,dataset,<rarities>,total,share,target). Changes nothing in the bucket.
    """
    from .dataset_report import build_dataset_report, table_csv, write_chart

    settings = load_settings()
    _make_folder(out, "--out")
    store = _store(settings, LIST_WORKERS)
    layout = _layout(settings)
    where = f"s3://{settings.bucket}/{settings.ml_prefix}"
    try:
        inventory = store.list_datasets(layout)
    except InventoryError as exc:
        log.error("%s; no report written", exc)
        sys.exit(EXIT_ERRORS)
    current, unexpected = layout.parse_dataset_keys(inventory.keys + inventory.unexpected)
    unexpected = [k for k in unexpected if k not in (labels_key(settings.ml_prefix), headers_key(settings.ml_prefix))]

    known = _manifest_episodes(store, settings)
    selected = None
    if seasons or episodes:
        candidates = set(current["episode_id"]) | set(known or ())
        selected = {e for e in candidates if e[:3] in seasons or e in episodes}
        for wanted in sorted(set(episodes) - candidates):
            log.warning("--episode %s: no dataset files and in no manifest", wanted)

    report = build_dataset_report(current, settings.split, unexpected, known, selected)
    scope = f" ({', '.join(seasons + episodes)})" if selected is not None else ""
    png, csv = out / "report.png", out / "report.csv"
    try:
        csv.write_text(table_csv(report), encoding="utf-8")
        write_chart(report, png, f"Tuttle Twins datasets{scope}: {report.total_files:,} files in {where}")
    except OSError as exc:
        fail_config(f"cannot write to --out {out}: {exc.strerror or exc}")

    if output_format == "json":
        record: dict[str, Any] = {
            "bucket": settings.bucket,
            "ml_prefix": settings.ml_prefix,
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "selection": list(seasons + episodes),
            **report.to_json(),
            "files": {"png": str(png), "csv": str(csv)},
        }
        click.echo(json.dumps(record, indent=2))
    else:
        click.echo(report.to_text(where + scope))
        click.echo(f"\nwrote {png} and {csv}")
    sys.exit(EXIT_OK)


def _manifest_episodes(store: S3Store, settings: Settings) -> set[str] | None:
    """Every episode of the manifests, or None (with a warning) if they cannot be read at all."""
    try:
        ignored: list[str] = []
        files, read_errors = store.read_manifests(settings.manifests_prefix, ignored)
    except InventoryError as exc:
        log.warning("%s; orphans cannot be told apart", exc)
        return None
    for message in ignored:
        log.warning(message)
    manifests = collect_episodes(files)
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


@click.command("pull")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    required=True,
    metavar="NAME",
    help="A dataset to download, e.g. train (repeatable).",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Local folder; files land in DEST/<dataset>/<rarity>/<frame>.jpg.",
)
@click.option("--delete", is_flag=True, help="Remove local files under DEST/<dataset>/ that are no longer in it.")
@click.option("--workers", type=click.IntRange(1, 256), default=16, show_default=True, help="Parallel downloads.")
def pull_command(datasets: tuple[str, ...], dest: Path, delete: bool, workers: int) -> None:
    """Download datasets to a local folder: only files missing locally or of another size.

    Writes DEST/labels.csv (frame,episode_id,dataset,rarity,metadata,s3_key) for every dataset folder
    under DEST: the pulled datasets' files that are on disk (a failed download gets no row) and, as they
    are on disk, the files of other datasets pulled earlier into DEST. Metadata comes from the labels
    index a real sync keeps in S3. A rerun with nothing changed downloads nothing. Exit status: 0 done,
    1 a listing or download failed, 2 usage or configuration error.
    """
    from .pull import pull_datasets

    settings = load_settings()
    for name in datasets:
        if name not in settings.split:
            raise click.BadParameter(
                f"'{name}' is not a dataset of TUTTLE_SPLIT ({', '.join(settings.split)})", param_hint="--dataset"
            )
    datasets = tuple(dict.fromkeys(datasets))
    _make_folder(dest, "--dest")
    store = _store(settings, workers)
    try:
        result = pull_datasets(store, _layout(settings), datasets, dest, delete=delete, workers=workers)
    except InventoryError as exc:
        log.error("%s; nothing downloaded or deleted", exc)
        sys.exit(EXIT_ERRORS)
    except OSError as exc:
        log.error("cannot write under %s: %s", dest, exc.strerror or exc)
        sys.exit(EXIT_ERRORS)
    if result.metadata_note:
        log.warning(result.metadata_note)
    for name in result.empty_datasets:
        note = "; its local files were left alone" if delete else ""
        log.warning("dataset '%s' has no files in s3://%s/%s%s", name, settings.bucket, settings.ml_prefix, note)
    for failure in result.failures[:20]:
        log.error("download %s failed: %s", failure.key, failure.error)
    if result.failed > 20:
        log.error("... and %d more failed downloads", result.failed - 20)
    if result.indexed_from_disk:
        log.info(
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
