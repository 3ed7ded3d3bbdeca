"""`versions list|diff|show`: the dataset versions a real sync writes under `<ML prefix>_versions/`.

They only read the bucket. Exit status: 0 done; 1 a version object is unusable (named) or S3 failed;
2 usage or configuration, including a version reference that matches no version.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from ..core.dataset_report import build_dataset_report
from ..core.run_report import EXIT_CONFIG, EXIT_ERRORS, EXIT_OK
from ..core.text import counted, csv_safe, escape_control
from ..core.versions import (
    DIFF_INPUT_COLUMNS,
    DIFF_UNIT,
    VersionError,
    VersionInfo,
    VersionNotFound,
    describe_partial,
    diff_versions,
    resolve_version,
)
from ..edges.aws import describe
from ..edges.s3_bucket import run_bounded
from ..edges.s3_versions import VersionStore
from ..errors import InventoryError
from ..settings import Settings, seed_fingerprint
from .common import echo_detail, echo_json_error, format_option, load_settings, open_bucket, quiet

#: the commands' outcome is logged under the package's own name, as every command's is
log = logging.getLogger("tuttle_prep")

HEAD_WORKERS = 16
#: changed frames printed by `versions diff` (all of them go to --out)
CHANGES_SHOWN = 20
_FORMAT = format_option("Tables for people, or JSON for machines.")


def version_store(settings: Settings, workers: int = HEAD_WORKERS) -> VersionStore:
    """The bucket's versions folder (exit 2 with one sentence if the bucket is unusable)."""
    store = open_bucket(settings, workers)
    return VersionStore(store.client, store.bucket, settings.ml_prefix)


def list_ids(versions: VersionStore) -> list[str]:
    """Every version id, oldest first; exit 1 if the folder cannot be listed."""
    try:
        return versions.list().ids
    except InventoryError as exc:
        log.error("%s", exc)
        sys.exit(EXIT_ERRORS)


def echo_lines(text: str, *, err: bool = False) -> None:
    """`click.echo` of `text`, each of its lines with its control characters escaped: frames, dataset names and
    ids come from version objects read back from the bucket, and must not forge a line or move the cursor."""
    click.echo("\n".join(escape_control(line) for line in text.split("\n")), err=err)


def resolve_or_exit(ids: list[str], reference: str, versions: VersionStore, include_partial: bool = False) -> str:
    """The id `reference` names (`latest` and `previous` skip partial versions unless `include_partial`), or
    one sentence on stderr and exit 2 (exit 1 if S3 fails while telling which versions are partial)."""

    def is_partial(version_id: str) -> bool:
        try:
            return versions.summary(version_id).partial is not None
        except VersionError:
            return False  # resolved all the same: reading it names the object and exits 1
        except (ClientError, BotoCoreError) as exc:
            _unusable(f"{versions.url(version_id)}: cannot read ({describe(exc)})")

    try:
        return resolve_version(ids, reference, None if include_partial else is_partial)
    except VersionNotFound as exc:
        echo_lines(f"{exc} (in {versions.folder_url})", err=True)
        echo_json_error(f"{exc} (in {versions.folder_url})")
        sys.exit(EXIT_CONFIG)


def flag_partial(info: VersionInfo) -> None:
    """A warning on stderr when `info` is a partial version (written by a run that failed)."""
    if info.partial is not None:
        log.warning("version %s is %s", info.id, describe_partial(info.partial))


INCLUDE_PARTIAL = click.option(
    "--include-partial",
    is_flag=True,
    help="Let `latest` and `previous` name a partial version too (one written by a run that failed); "
    "by default they skip those.",
)


def read_or_exit(versions: VersionStore, version_id: str, columns: list[str] | None = None) -> Any:
    """The version's (table, info), or the object named on stderr and exit 1."""
    try:
        return versions.read(version_id, columns)
    except VersionError as exc:
        _unusable(str(exc))
    except (ClientError, BotoCoreError) as exc:
        _unusable(f"{versions.url(version_id)}: cannot read ({describe(exc)})")


def _unusable(message: str) -> NoReturn:
    log.error("%s", message)
    sys.exit(EXIT_ERRORS)


@click.group("versions")
def versions() -> None:
    """Dataset versions: what the datasets held after each sync that changed them.

    Every real sync whose outcome differs from the latest version writes one immutable Parquet object
    under <ML prefix>_versions/. V may be an id, a unique prefix of one, `latest` or `previous`.
    `pull --version V` rebuilds a version locally from the source frames. Exit status: 0 done, 1 a version
    object is unusable (it is named) or S3 failed, 2 usage or configuration, or V matches no version.
    """


@versions.command("list")
@_FORMAT
def list_command(output_format: str) -> None:
    """Every version, newest first: time, id, frames per dataset, and the change against the one before."""
    settings = load_settings()
    store = version_store(settings)
    ids = list_ids(store)
    infos: dict[str, VersionInfo] = {}
    problems: list[str] = []
    for version_id, outcome in run_bounded(store.summary, ids, HEAD_WORKERS):
        if isinstance(outcome, VersionError):
            problems.append(str(outcome))
        elif isinstance(outcome, (ClientError, BotoCoreError)):
            problems.append(f"{store.url(version_id)}: cannot read ({describe(outcome)})")
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            infos[version_id] = outcome
    newest_first = [infos[v] for v in sorted(infos, reverse=True)]
    if output_format == "json":
        click.echo(json.dumps([_record(info, store) for info in newest_first], indent=2))
    elif quiet():  # the one line: how many versions
        echo_lines(_list_text(newest_first, store, settings).splitlines()[0])
    else:
        echo_lines(_list_text(newest_first, store, settings))
    for message in sorted(problems):
        log.error("%s", message)
    sys.exit(EXIT_ERRORS if problems else EXIT_OK)


def _record(info: VersionInfo, store: VersionStore) -> dict[str, Any]:
    return {
        "id": info.id,
        "time": info.time,
        "run_id": info.run_id,
        "frames": info.frames,
        "datasets": info.datasets,
        "previous": info.previous,
        "change": info.change,
        "counted": info.counted,
        "partial": info.partial,
        "url": store.url(info.id),
    }


def _list_text(infos: list[VersionInfo], store: VersionStore, settings: Settings) -> str:
    if not infos:
        return f"{store.folder_url}: no versions yet (a real sync writes the first one)"
    datasets = list(dict.fromkeys([*settings.split, *(d for i in infos for d in i.datasets)]))
    header = (
        f"{'time (UTC)':<21}{'id':<32}{'objects':>10}"
        + "".join(f"{d:>10}" for d in datasets)
        + f"{'added':>9}{'removed':>9}{'moved':>8}{'reclass.':>9}{'metadata':>9}  state"
    )
    lines = [
        f"{store.folder_url}: {counted(len(infos), 'version')}, newest first; counts are {DIFF_UNIT}, "
        "the change is against the version before",
        header,
        "-" * len(header),
    ]
    notes: list[str] = []
    for info in infos:
        change = info.change
        state = "PARTIAL" if info.partial is not None else ""
        if info.counted != "objects":
            state = (state + " *").strip()
        lines.append(
            f"{info.time.replace('T', ' ').rstrip('Z'):<21}{info.id:<32}{info.frames:>10,}"
            + "".join(f"{info.datasets.get(d, 0):>10,}" for d in datasets)
            + f"{'+' + format(change.get('added', 0), ','):>9}{'-' + format(change.get('removed', 0), ','):>9}"
            + f"{change.get('moved', 0):>8,}{change.get('reclassified', 0):>9,}{change.get('metadata', 0):>9,}"
            + (f"  {state}" if state else "")
        )
        if info.partial is not None:
            notes.append(f"{info.id} is {describe_partial(info.partial)}")
    if any(i.counted != "objects" for i in infos):
        notes.append("* change counted by frame (its first row): written before versions counted dataset objects")
    if any(i.partial is not None for i in infos):
        notes.append("`latest` and `previous` skip PARTIAL versions unless --include-partial (or name one by id)")
    return "\n".join([*lines, *([""] + notes if notes else [])])


@versions.command("diff")
@click.argument("a")
@click.argument("b", default="latest")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write one row per changed frame to this CSV: frame,episode_id,change,from_dataset,to_dataset,"
    "from_rarity,to_rarity,from_metadata,to_metadata.",
)
@INCLUDE_PARTIAL
@_FORMAT
def diff_command(a: str, b: str, out: Path | None, include_partial: bool, output_format: str) -> None:
    """What changed from version A to version B (default: latest), dataset object by dataset object (key by
    key: a frame in two places is two objects): objects added, removed, moved between datasets, reclassified,
    with other METADATA, and the rarity transition table."""
    settings = load_settings()
    store = version_store(settings)
    ids = list_ids(store)
    id_a = resolve_or_exit(ids, a, store, include_partial)
    id_b = resolve_or_exit(ids, b, store, include_partial)
    table_a, info_a = read_or_exit(store, id_a, DIFF_INPUT_COLUMNS)
    table_b, info_b = read_or_exit(store, id_b, DIFF_INPUT_COLUMNS)
    flag_partial(info_a)
    flag_partial(info_b)
    diff = diff_versions(table_a, table_b)
    counts = diff.counts

    def side(version_id: str, objects: int, frames: int, doubled: int, info: VersionInfo) -> str:
        twice = f", {doubled:,} of them in two places" if doubled else ""
        return f"{version_id} ({objects:,} dataset objects, {frames:,} frames{twice}" + (
            "; PARTIAL)" if info.partial is not None else ")"
        )

    if output_format == "json":
        _write_diff_csv(diff.changes, out)

        def side_record(version_id: str, objects: int, frames: int, doubled: int, info: VersionInfo) -> dict:
            return {
                "id": version_id,
                "url": store.url(version_id),
                "dataset_objects": objects,
                "frames": frames,
                "frames_in_two_places": doubled,
                "partial": describe_partial(info.partial) if info.partial is not None else None,
            }

        record = {
            "compared_as": DIFF_UNIT,
            "from": side_record(id_a, diff.objects_a, diff.frames_a, diff.doubled_a, info_a),
            "to": side_record(id_b, diff.objects_b, diff.frames_b, diff.doubled_b, info_b),
            "counts": {k: int(v) for k, v in counts.items()},
            "unchanged": int(diff.unchanged),
            "transitions": {
                str(name): {str(c): int(v) for c, v in row.items()} for name, row in diff.transitions.iterrows()
            },
            "changes": json.loads(diff.changes.to_json(orient="records")),
            "out": str(out) if out is not None else None,
        }
        click.echo(json.dumps(record, indent=2))
        sys.exit(EXIT_OK)
    lines = [
        side(id_a, diff.objects_a, diff.frames_a, diff.doubled_a, info_a)
        + " -> "
        + side(id_b, diff.objects_b, diff.frames_b, diff.doubled_b, info_b),
        *(f"{i.id} is {describe_partial(i.partial)}" for i in (info_a, info_b) if i.partial is not None),
        f"compared as {DIFF_UNIT}: "
        f"added {counts['added']:,}, removed {counts['removed']:,}, moved {counts['moved']:,}, "
        f"reclassified {counts['reclassified']:,}, metadata changed {counts['metadata']:,}; "
        f"{diff.unchanged:,} unchanged",
        "",
        "rarity transitions of dataset objects (rows: rarity in A, columns: rarity in B; (none): not in that version)",
        *_grid_text(diff.transitions),
    ]
    if len(diff.changes):
        shown_rows = min(len(diff.changes), CHANGES_SHOWN)
        lines += ["", f"changed dataset objects ({shown_rows:,} of {len(diff.changes):,} shown)"]
        for row in diff.changes.head(CHANGES_SHOWN).itertuples(index=False):
            before = f"{row.from_dataset}/{row.from_rarity}" if row.from_dataset else "-"
            after = f"{row.to_dataset}/{row.to_rarity}" if row.to_dataset else "-"
            lines.append(f"  {row.frame}  {row.change:<22} {before} -> {after}")
    echo_lines(f"{lines[0]}: {lines[1]}" if quiet() else "\n".join(lines))
    if out is not None:
        _write_diff_csv(diff.changes, out)
        echo_detail(f"\nwrote {len(diff.changes):,} changed dataset objects to {out}")
    sys.exit(EXIT_OK)


def _write_diff_csv(changes: pd.DataFrame, out: Path | None) -> None:
    """`--out`: one row per changed dataset object (exit 2 naming the file if it cannot be written)."""
    if out is None:
        return
    try:
        csv_safe(changes).to_csv(out, index=False, lineterminator="\n")
    except OSError as exc:
        click.echo(f"cannot write --out {out}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_CONFIG)


def _grid_text(grid: pd.DataFrame) -> list[str]:
    width = max([10, *(len(str(c)) + 2 for c in grid.columns)])
    lines = ["from \\ to".ljust(12) + "".join(f"{c:>{width}}" for c in grid.columns)]
    for name, row in grid.iterrows():
        lines.append(f"{name:<12}" + "".join(f"{int(v):>{width},}" for v in row))
    return lines


@versions.command("show")
@click.argument("version")
@_FORMAT
@INCLUDE_PARTIAL
def show_command(version: str, output_format: str, include_partial: bool) -> None:
    """The dataset × rarity table of version V (as `report` prints it for today), and its metadata."""
    settings = load_settings()
    store = version_store(settings)
    version_id = resolve_or_exit(list_ids(store), version, store, include_partial)
    table, info = read_or_exit(store, version_id, ["frame", "episode_id", "dataset", "rarity", "dataset_key"])
    flag_partial(info)
    inventory = table.to_pandas().rename(columns={"dataset_key": "key"})
    split = info.split or dict.fromkeys(sorted(info.datasets), 0.0)
    report = build_dataset_report(inventory, split, train=settings.train_dataset)  # none if not in its split
    if output_format == "json":
        record = {"version": json.loads(info.to_json()), "url": store.url(version_id), **report.to_json()}
        click.echo(json.dumps(record, indent=2))
    else:
        shares = ", ".join(f"{d}={s:g}" for d, s in info.split.items())
        lines = [
            f"version {info.id} ({store.url(version_id)})",
            f"written {info.time} by run {info.run_id}; split {shares}, seed fingerprint "
            f"{seed_fingerprint(info.seed)}, stratify {info.stratify}, group seconds {info.group_seconds}",
            *([f"PARTIAL: {describe_partial(info.partial)}"] if info.partial is not None else []),
            f"compared with {info.previous or 'no earlier version'} ({info.counted}): "
            + ", ".join(f"{k} {v:,}" for k, v in info.change.items()),
            "",
            report.tables_text(f"{info.frames:,} frames"),
        ]
        echo_lines(lines[0] if quiet() else "\n".join(lines))
    sys.exit(EXIT_OK)
