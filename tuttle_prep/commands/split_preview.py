"""`split preview`: how a split setting would place the sheets' frames, before it goes into `.env`.

Reads the manifests and the sheets only: no listing of the dataset or source folders, nothing written.
Exit status: 0 done, 1 a manifest or sheet could not be read (the others are still previewed), 2 usage or
configuration. A sheet that was read but is unusable (no FRAME NUMBER column, ...) is a data finding, as in
`sync`: listed under "findings", exit 0.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field, replace
from typing import Any

import click
import pandas as pd

from ..core.dataset_report import json_records, leakage_lines, rarity_share_lines
from ..core.frame_table import RARITIES
from ..core.manifests import collect_episodes, filter_episodes
from ..core.plan import wanted_frames
from ..core.run_report import EXIT_ERRORS, EXIT_OK, RunReport
from ..core.selectors import unmatched
from ..core.sheets import is_google_location
from ..core.split import STRATIFY_CHOICES
from ..core.split_quality import DEFAULT_TRAIN_DATASET, leakage_table, rarity_shares
from ..edges import aws
from ..edges.csv_sheets import local_path_exists
from ..edges.s3_objects import read_manifests
from ..errors import ConfigError, InventoryError
from ..settings import Settings
from .common import (
    echo_detail,
    episode_option,
    fail_config,
    fail_usage,
    format_option,
    invocation_clock,
    leak_seconds_option,
    load_settings,
    season_option,
)
from .sync import SyncOptions, build_context, canonical_of_store, load_frames

log = logging.getLogger("tuttle_prep")

SHEET_WORKERS = 8


@dataclass(frozen=True)
class SplitSetting:
    """The settings that decide a frame's dataset."""

    stratify: str
    group_seconds: int
    seed: str
    #: TUTTLE_SPLIT_GROUP: "content" keeps near-duplicate clusters together, "" does not
    group: str = ""

    def describe(self) -> str:
        text = f"stratify={self.stratify}, group seconds={self.group_seconds}, seed={self.seed}"
        return f"{text}, group=content" if self.group == "content" else text

    def to_json(self) -> dict[str, Any]:
        return {
            "stratify": self.stratify,
            "group_seconds": self.group_seconds,
            "seed": self.seed,
            "group": self.group or "none",
        }


@dataclass
class SplitOutcome:
    """Where one setting puts the frames, and how good that is."""

    setting: SplitSetting
    datasets: pd.Series
    counts: pd.DataFrame  # rarity x dataset
    shares: pd.DataFrame  # RARITY_SHARE_COLUMNS
    leakage: pd.DataFrame  # LEAKAGE_COLUMNS
    train: str = DEFAULT_TRAIN_DATASET  # the dataset leakage is measured against
    moved: int = 0
    #: frames that would change dataset, by "from -> to"
    moves: dict[str, int] = field(default_factory=dict)


def preview_split(
    frames: pd.DataFrame,
    split: dict[str, float],
    setting: SplitSetting,
    seconds: tuple[float, ...],
    canonical: dict[str, str] | None = None,
    train: str = DEFAULT_TRAIN_DATASET,
) -> SplitOutcome:
    """Split `frames` (episode_id, frame, rarity) with `setting` and measure it (leakage against `train`;
    `canonical`: the clusters, for group=content)."""
    clusters = canonical if setting.group == "content" else None
    wanted = wanted_frames(
        frames, split, setting.seed, setting.group_seconds, stratify=setting.stratify, canonical=clusters
    )
    counts = pd.crosstab(wanted["dataset"], wanted["rarity"]).reindex(index=list(split), columns=list(RARITIES))
    counts = counts.fillna(0).astype(int)
    return SplitOutcome(
        setting=setting,
        datasets=wanted["dataset"],
        counts=counts,
        shares=rarity_shares(counts, split),
        leakage=leakage_table(wanted["frame"].tolist(), wanted["dataset"].tolist(), list(split), seconds, train),
        train=train,
    )


def _outcome_json(outcome: SplitOutcome) -> dict[str, Any]:
    return {
        "settings": outcome.setting.to_json(),
        "counts": {
            rarity: {dataset: int(outcome.counts.loc[dataset, rarity]) for dataset in outcome.counts.index}
            for rarity in RARITIES
        },
        "rarity_shares": json_records(outcome.shares),
        "leakage": json_records(outcome.leakage),
        "moved": outcome.moved,
        "moves": outcome.moves,
    }


def _outcome_text(title: str, outcome: SplitOutcome, total: int) -> list[str]:
    lines = [f"{title}: {outcome.setting.describe()}"]
    lines += rarity_share_lines(outcome.shares, list(outcome.counts.index))
    lines += ["", *leakage_lines(outcome.leakage, outcome.train)]
    if title != "current":
        share = outcome.moved / total if total else 0.0
        lines.append(
            f"\nwould move {outcome.moved:,} of {total:,} frames ({share:.1%}) compared with the current settings"
        )
        lines += [f"  {pair}: {n:,}" for pair, n in outcome.moves.items()]
    return lines


@click.group("split")
def split() -> None:
    """Try split settings on the sheets before changing .env."""


@split.command("preview")
@season_option
@episode_option
@click.option("--stratify", type=click.Choice(STRATIFY_CHOICES), help="Preview this TUTTLE_SPLIT_STRATIFY.")
@click.option("--group-seconds", type=click.IntRange(0), help="Preview this TUTTLE_SPLIT_GROUP_SECONDS.")
@click.option("--seed", help="Preview this TUTTLE_SPLIT_SEED.")
@click.option(
    "--group",
    type=click.Choice(["content", "none"]),
    help="Preview this TUTTLE_SPLIT_GROUP (content: near-duplicate clusters of the stored hashes kept together).",
)
@leak_seconds_option
@format_option("Tables for people, or one JSON object for machines.")
def preview(
    seasons: tuple[str, ...],
    episodes: tuple[str, ...],
    stratify: str | None,
    group_seconds: int | None,
    seed: str | None,
    group: str | None,
    leak_seconds: tuple[float, ...],
    output_format: str,
) -> None:
    """Show where the sheets' frames would go: per-rarity counts, leakage, and frames that would move.

    Reads the manifests and the sheets (no listing of the dataset folders, nothing written). Prints the
    current settings' split; with --stratify, --group-seconds or --seed, also that setting's split and how
    many frames it would move compared with the current one.
    """
    if seed is not None:
        seed = seed.strip()  # as TUTTLE_SPLIT_SEED is read
        if not seed:
            raise click.BadParameter("must not be empty", param_hint="--seed")
    settings = load_settings()
    current = SplitSetting(
        settings.split_stratify, settings.split_group_seconds, settings.split_seed, settings.split_group
    )
    wanted_group = None if group is None else ("" if group == "none" else group)
    changed = replace(
        current,
        **{
            k: v
            for k, v in {
                "stratify": stratify,
                "group_seconds": group_seconds,
                "seed": seed,
                "group": wanted_group,
            }.items()
            if v is not None
        },
    )
    frames, report, store = _read_frames(settings, seasons, episodes)
    canonical = None
    if "content" in (current.group, changed.group):
        canonical = canonical_of_store(store, settings, None, report.warn)
    for message in report.warnings:
        log.warning(message)
    for message in report.findings:  # data findings (a sheet without FRAME NUMBER, rejected rows): as in sync
        log.warning(message)
    for message in report.errors:
        log.error(message)
    train = settings.train_dataset
    outcomes = {"current": preview_split(frames, settings.split, current, leak_seconds, canonical, train)}
    if changed != current:
        outcome = preview_split(frames, settings.split, changed, leak_seconds, canonical, train)
        before, after = outcomes["current"].datasets.to_numpy(), outcome.datasets.to_numpy()
        changed = before != after
        outcome.moved = int(changed.sum())
        pairs = pd.Series(before[changed] + " -> " + after[changed]).value_counts()
        outcome.moves = {str(pair): int(n) for pair, n in pairs.items()}
        outcomes["preview"] = outcome
    if output_format == "json":
        record = {
            "frames": len(frames),
            "episodes": sorted(set(frames["episode_id"])),
            "split": dict(settings.split),
            "train_dataset": settings.train_dataset,
            "warnings": list(report.warnings),
            "findings": list(report.findings),
            "errors": list(report.errors),
            **{name: _outcome_json(o) for name, o in outcomes.items()},
        }
        click.echo(json.dumps(record, indent=2))
    else:
        n_episodes = frames["episode_id"].nunique()
        click.echo(f"split preview of {len(frames):,} classified frames in {n_episodes:,} episodes (no bucket changes)")
        for name, outcome in outcomes.items():
            echo_detail("")
            echo_detail("\n".join(_outcome_text(name, outcome, len(frames))))
    sys.exit(EXIT_ERRORS if report.errors else EXIT_OK)


def _read_frames(
    settings: Settings, seasons: tuple[str, ...], episodes: tuple[str, ...]
) -> tuple[pd.DataFrame, RunReport, Any]:
    """The classified frames of the selected episodes' sheets (problems go into the returned report), and the
    bucket."""
    report = RunReport(dry_run=True, clock=invocation_clock())
    context = build_context(settings, SyncOptions(seasons=seasons, episodes=episodes, workers=SHEET_WORKERS))
    try:
        aws.check_bucket(context.store.client, settings.bucket, settings.manifests_prefix)
        ignored: list[str] = []
        files, read_errors = read_manifests(context.store, settings.manifests_prefix, ignored)
    except ConfigError as exc:
        fail_config(str(exc))
    except InventoryError as exc:
        log.error("%s; nothing to preview", exc)
        sys.exit(EXIT_ERRORS)
    for message in ignored:
        report.warn(message)
    for message in read_errors:
        report.error(message)
    if not files and not read_errors:
        report.error(f"no manifests (*-episodes.json) under s3://{settings.bucket}/{settings.manifests_prefix}")
    manifests = collect_episodes(files, local_path_exists(settings.local_sheets_dir))
    for message in manifests.errors:
        report.error(message)
    selected = filter_episodes(manifests.episodes, seasons, episodes)
    unknown = unmatched("--episode", episodes, manifests.episode_ids, "episode in the manifests") + unmatched(
        "--season", seasons, {e.season_code for e in manifests.episodes}, "season in the manifests"
    )
    if unknown:  # a mistyped selector is a usage error, as in sync
        fail_usage("; ".join(unknown))
    if any(is_google_location(e.sheet_location) for e in selected) and settings.google_credentials_file is None:
        fail_config("the manifests link Google Sheets but GOOGLE_DRIVE_CREDENTIALS_FILE is not set (see .env.example)")
    try:
        loaded, _, _ = load_frames(
            selected, context.reader, report, allow_empty=True, optional_columns=settings.sheet_optional_columns
        )
    except ConfigError as exc:
        fail_config(str(exc))
    frames = [f[["episode_id", "frame", "rarity"]] for f in loaded.values()]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["episode_id", "frame", "rarity"])
    return table, report, context.store
