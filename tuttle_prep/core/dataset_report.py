"""The dataset report: what the dataset folders hold, against the target split (pure; the chart is an edge).

Input is the parsed ML listing (`KeyLayout.parse_dataset_keys`: INVENTORY_COLUMNS), the unexpected keys
and the episodes of the manifests. Output is one table (REPORT_COLUMNS) with a row per
scope × dataset: the whole catalogue ("overall"), each season and each episode, every row counting
files per rarity, the dataset's share of the scope and its target share. Beside it, the split's quality
for a classifier (`split_quality`): each rarity's shares against the target, and the leakage of
near-duplicate frames from the training dataset (`train`, or the one named) into the others.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .frame_table import RARITIES
from .split_quality import (
    DEFAULT_TRAIN_DATASET,
    LEAK_SECONDS,
    LEAKAGE_COLUMNS,
    largest_deviation,
    largest_episode_deviation,
    leakage_table,
    rarity_shares,
)
from .text import csv_safe

OVERALL, SEASON, EPISODE = "overall", "season", "episode"
ALL = "all"
REPORT_COLUMNS = ["level", "scope", "dataset", *RARITIES, "total", "share", "target"]
#: how many unexpected keys the text and JSON name (the count is always complete)
UNEXPECTED_SHOWN = 20

@dataclass
class DatasetReport:
    """Counts of the dataset folders by scope, dataset and rarity, with orphans and unexpected keys."""

    split: dict[str, float]
    #: REPORT_COLUMNS; per scope one row per dataset (in split order) and one `all` row
    table: pd.DataFrame
    #: dataset files per episode that is in no manifest (empty when the manifests are unknown)
    orphans: dict[str, int] = field(default_factory=dict)
    #: keys under the ML prefix that are not dataset objects
    unexpected: list[str] = field(default_factory=list)
    #: episodes of the manifests (None when they could not be read)
    manifest_episodes: frozenset[str] | None = None
    #: RARITY_SHARE_COLUMNS of the whole selection
    rarity_shares: pd.DataFrame = field(default_factory=lambda: rarity_shares(pd.DataFrame(), {}))
    #: LEAKAGE_COLUMNS of the whole selection
    leakage: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LEAKAGE_COLUMNS))
    #: the (episode, rarity, dataset) furthest from its share, in frames (`largest_episode_deviation`)
    episode_deviation: dict[str, Any] | None = None
    #: the dataset leakage is measured against (None: the split has no training dataset, no leakage)
    train: str | None = DEFAULT_TRAIN_DATASET

    def scope(self, level: str, scope: str = ALL) -> pd.DataFrame:
        """The rows of one scope, indexed by dataset (`all` last)."""
        rows = self.table[(self.table["level"] == level) & (self.table["scope"] == scope)]
        return rows.set_index("dataset")[[*RARITIES, "total", "share", "target"]]

    def scopes(self, level: str) -> list[str]:
        return list(dict.fromkeys(self.table.loc[self.table["level"] == level, "scope"]))

    @property
    def total_files(self) -> int:
        overall = self.scope(OVERALL)
        return int(overall.loc[ALL, "total"]) if len(overall) else 0

    def episode_files(self) -> pd.DataFrame:
        """Files per episode: one column per dataset, plus total."""
        rows = self.table[(self.table["level"] == EPISODE)]
        wide = rows.pivot(index="scope", columns="dataset", values="total")
        wide = wide.reindex(columns=[*self.split, ALL]).rename(columns={ALL: "total"})
        wide.index.name = "episode_id"
        return wide.astype(int)

    def episode_note(self, episode_id: str, files: int) -> str:
        if episode_id in self.orphans:
            return "orphan: in no manifest"
        if files == 0:
            return "in a manifest, no dataset files"
        return ""

    def to_json(self) -> dict[str, Any]:
        """Everything as JSON-ready values."""
        episodes = self.episode_files()
        return {
            "total_files": self.total_files,
            "split": dict(self.split),
            "table": [
                {
                    k: (v if isinstance(v, str) else float(v) if k in ("share", "target") else int(v))
                    for k, v in r.items()
                }
                for r in self.table.to_dict(orient="records")
            ],
            "episodes": {
                str(eid): {
                    **{c: int(n) for c, n in row.items()},
                    "note": self.episode_note(str(eid), int(row["total"])),
                }
                for eid, row in episodes.iterrows()
            },
            "orphans": {"files": sum(self.orphans.values()), "episodes": dict(self.orphans)},
            "unexpected": {"count": len(self.unexpected), "keys": self.unexpected[:UNEXPECTED_SHOWN]},
            "manifests_read": self.manifest_episodes is not None,
            "rarity_shares": json_records(self.rarity_shares),
            "largest_deviation": json_record(largest_deviation(self.rarity_shares)),
            "largest_episode_deviation": self.episode_deviation,
            "train_dataset": self.train,
            "leakage": json_records(self.leakage),
        }

    def tables_text(self, title: str) -> str:
        """The dataset × rarity tables alone: all seasons, then each season when there are several."""
        seasons = self.scopes(SEASON)
        lines = [title, "", *_dataset_table("all seasons", self.scope(OVERALL))]
        if len(seasons) > 1:
            for season in seasons:
                lines += ["", *_dataset_table(season, self.scope(SEASON, season))]
        return "\n".join(lines)

    def to_text(self, where: str) -> str:
        """The tables a person reads in a terminal; `where` names the listed prefix."""
        seasons = self.scopes(SEASON)
        episodes = self.episode_files()
        lines = [
            f"{where}: {self.total_files:,} dataset files, {len(episodes):,} episodes in {len(seasons):,} seasons",
            "",
        ]
        lines += _dataset_table("all seasons", self.scope(OVERALL))
        if len(seasons) > 1:
            for season in seasons:
                lines += ["", *_dataset_table(season, self.scope(SEASON, season))]
        lines += ["", *rarity_share_lines(self.rarity_shares, list(self.split))]
        lines.append(episode_deviation_line(self.episode_deviation))
        if self.train is not None:
            lines += ["", *leakage_lines(self.leakage, self.train)]
        lines += ["", *_episode_table(self, episodes)]
        lines.append("")
        if self.manifest_episodes is None:
            lines.append("orphans: unknown (the manifests could not be read)")
        elif self.orphans:
            names = ", ".join(f"{e} ({n:,})" for e, n in sorted(self.orphans.items()))
            lines.append(
                f"orphans: {sum(self.orphans.values()):,} files of episodes in no manifest: {names} "
                "(`sync --prune-orphans` deletes them)"
            )
        else:
            lines.append("orphans: none")
        lines.append(f"unexpected keys (not dataset objects, left alone): {len(self.unexpected):,}")
        lines += [f"  {key}" for key in self.unexpected[:UNEXPECTED_SHOWN]]
        if len(self.unexpected) > UNEXPECTED_SHOWN:
            lines.append(f"  ... and {len(self.unexpected) - UNEXPECTED_SHOWN:,} more")
        return "\n".join(lines)


def json_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [json_record(row) for _, row in table.iterrows()]


def json_record(row: pd.Series | None) -> dict[str, Any] | None:
    """A row as JSON values: text stays text, whole counts become int, the rest float."""
    if row is None:
        return None
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, str):
            out[str(key)] = value
        elif key in ("files", "rarity_files", "frames", "leaking"):
            out[str(key)] = int(value)
        else:
            out[str(key)] = float(value)
    return out


def rarity_share_lines(shares: pd.DataFrame, datasets: list[str]) -> list[str]:
    """Each rarity's files per dataset, share (target), and its largest deviation; the largest of all flagged."""
    largest = largest_deviation(shares)
    header = f"{'rarity':<11}{'files':>9}" + "".join(f"{d:>20}" for d in datasets) + f"{'deviation':>12}"
    lines = ["each rarity's split against the target (files, share, target)", header, "-" * len(header)]
    for rarity in RARITIES:
        rows = shares[shares["rarity"] == rarity].set_index("dataset").reindex(datasets)
        total = int(rows["rarity_files"].iloc[0]) if len(rows) else 0
        cells = "".join(
            f"{int(r.files):>8,} {r.share:>5.1%} ({r.target:.0%})".rjust(20) for r in rows.itertuples()
        )
        worst = rows.loc[rows["deviation"].abs().idxmax()] if total else None
        deviation = f"{worst['deviation'] * 100:+.1f} pp" if worst is not None else "-"
        flag = ""
        if largest is not None and worst is not None and rarity == largest["rarity"]:
            flag = f"  <- largest: {largest['dataset']} {largest['deviation_files']:+.1f} files vs its share"
        lines.append(f"{rarity:<11}{total:>9,}{cells}{deviation:>12}{flag}")
    return lines


def episode_deviation_line(worst: dict[str, Any] | None) -> str:
    """One sentence: how far the worst (episode, rarity, dataset) is from its share, in frames."""
    if worst is None:
        return "per episode: no files"
    return (
        f"per episode: the largest deviation is {worst['deviation_files']:+.1f} frames "
        f"({worst['episode_id']} {worst['rarity']} {worst['dataset']}: "
        f"{worst['files']:,} of {worst['rarity_files']:,}, target {worst['target']:.0%}); "
        "(without groups, a stratified split in sync keeps every one below 1 frame)"
    )


def leakage_lines(leakage: pd.DataFrame, reference: str = DEFAULT_TRAIN_DATASET) -> list[str]:
    """The leakage table: per dataset, the share of its frames with a `reference` frame nearby."""
    thresholds = list(dict.fromkeys(leakage["seconds"]))
    header = f"{'dataset':<12}{'frames':>9}" + "".join(f"{f'<= {s:g} s':>18}" for s in thresholds)
    lines = [
        f"leakage: frames with a {reference} frame of the same episode within (share, frames)",
        header,
        "-" * len(header),
    ]
    for name in dict.fromkeys(leakage["dataset"]):
        rows = leakage[leakage["dataset"] == name].set_index("seconds").reindex(thresholds)
        frames = int(rows["frames"].iloc[0])
        cells = "".join(f"{r.share:>8.1%} {int(r.leaking):>9,}" for r in rows.itertuples())
        lines.append(f"{name:<12}{frames:>9,}{cells}")
    if not thresholds:
        lines.append("(no thresholds)")
    return lines


def _dataset_table(title: str, rows: pd.DataFrame) -> list[str]:
    header = f"{title:<12}" + "".join(f"{r:>10}" for r in RARITIES) + f"{'total':>10}{'share':>8}{'target':>8}"
    lines = [header, "-" * len(header)]
    for dataset, row in rows.iterrows():
        if dataset == ALL:
            lines.append("-" * len(header))
        counts = "".join(f"{int(row[r]):>10,}" for r in RARITIES)
        lines.append(f"{dataset:<12}{counts}{int(row['total']):>10,}{row['share']:>8.1%}{row['target']:>8.0%}")
    return lines


def _episode_table(report: DatasetReport, episodes: pd.DataFrame) -> list[str]:
    columns = list(episodes.columns)
    header = f"{'episode':<12}" + "".join(f"{c:>10}" for c in columns) + "  note"
    lines = ["files per episode", header, "-" * len(header)]
    for episode_id, row in episodes.iterrows():
        note = report.episode_note(str(episode_id), int(row["total"]))
        lines.append(f"{episode_id:<12}" + "".join(f"{int(row[c]):>10,}" for c in columns) + f"  {note}".rstrip())
    return lines


def _scope_rows(level: str, scope: str, counts: pd.DataFrame, split: Mapping[str, float]) -> pd.DataFrame:
    """`counts` has dataset, rarity, files for one scope."""
    grid = counts.pivot_table(index="dataset", columns="rarity", values="files", aggfunc="sum", fill_value=0)
    grid = grid.reindex(index=list(split), columns=list(RARITIES), fill_value=0).fillna(0).astype(int)
    grid["total"] = grid.sum(axis=1)
    scope_total = int(grid["total"].sum())
    grid["share"] = grid["total"] / scope_total if scope_total else 0.0
    grid["target"] = [float(split[d]) for d in split]
    grid.loc[ALL] = [*grid[list(RARITIES)].sum().tolist(), scope_total, 1.0 if scope_total else 0.0, 1.0]
    grid.index.name = "dataset"
    out = grid.reset_index()
    out.insert(0, "scope", scope)
    out.insert(0, "level", level)
    return out


def build_dataset_report(
    inventory: pd.DataFrame,
    split: Mapping[str, float],
    unexpected: Collection[str] = (),
    manifest_episodes: Collection[str] | None = None,
    episode_ids: Collection[str] | None = None,
    leak_seconds: Sequence[float] = LEAK_SECONDS,
    train: str | None = DEFAULT_TRAIN_DATASET,
) -> DatasetReport:
    """Count the dataset objects (INVENTORY_COLUMNS) by scope, dataset and rarity; measure the split.

    `manifest_episodes`: every episode of the manifests (None if unknown); they are listed even with no
    files, and dataset files of other episodes are orphans. `episode_ids`: report only these episodes.
    `leak_seconds`: the leakage thresholds; `train`: the dataset they are measured against (no leakage when
    it is None or not in `split`, e.g. a dataset version written under another TUTTLE_SPLIT).
    """
    known = frozenset(manifest_episodes) if manifest_episodes is not None else None
    if episode_ids is not None:
        inventory = inventory[inventory["episode_id"].isin(set(episode_ids))]
    counts = inventory.groupby(["episode_id", "dataset", "rarity"]).size().rename("files").reset_index()
    counts["season"] = counts["episode_id"].str.slice(0, 3)
    listed_episodes = set(counts["episode_id"])
    empty_episodes = set(known or ()) - listed_episodes
    if episode_ids is not None:
        empty_episodes &= set(episode_ids)
    all_episodes = sorted(listed_episodes | empty_episodes)

    parts = [_scope_rows(OVERALL, ALL, counts, split)]
    for season in sorted({e[:3] for e in all_episodes}):
        parts.append(_scope_rows(SEASON, season, counts[counts["season"] == season], split))
    by_episode = dict(list(counts.groupby("episode_id")))
    for episode_id in all_episodes:
        parts.append(_scope_rows(EPISODE, episode_id, by_episode.get(episode_id, counts.iloc[0:0]), split))
    table = pd.concat(parts, ignore_index=True)[REPORT_COLUMNS]

    orphans: dict[str, int] = {}
    if known is not None:
        per_episode = counts.groupby("episode_id")["files"].sum()
        orphans = {str(e): int(n) for e, n in per_episode.items() if e not in known}
    overall = table[table["level"] == OVERALL].set_index("dataset").drop(index=ALL)
    return DatasetReport(
        split=dict(split),
        table=table,
        orphans=orphans,
        unexpected=sorted(unexpected),
        manifest_episodes=known,
        rarity_shares=rarity_shares(overall[list(RARITIES)], split),
        episode_deviation=largest_episode_deviation(inventory, split),
        leakage=leakage_table(
            inventory["frame"].tolist(), inventory["dataset"].tolist(), list(split), leak_seconds, train
        )
        if train is not None and train in split
        else pd.DataFrame(columns=LEAKAGE_COLUMNS),
        train=train if train is not None and train in split else None,
    )


def table_csv(report: DatasetReport) -> str:
    """REPORT_COLUMNS as CSV (shares rounded to 4 decimals)."""
    return csv_safe(report.table.round({"share": 4, "target": 4})).to_csv(index=False, lineterminator="\n")


def rarity_shares_csv(report: DatasetReport) -> str:
    """RARITY_SHARE_COLUMNS as CSV (shares and deviations rounded to 6 decimals)."""
    return csv_safe(report.rarity_shares.round(6)).to_csv(index=False, lineterminator="\n")


def leakage_csv(report: DatasetReport) -> str:
    """LEAKAGE_COLUMNS as CSV (shares rounded to 6 decimals)."""
    return csv_safe(report.leakage.round({"share": 6})).to_csv(index=False, lineterminator="\n")
