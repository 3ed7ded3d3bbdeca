"""The dataset report's chart as a PNG file, drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.dataset_report import ALL, OVERALL, DatasetReport
from ..core.frame_table import RARITIES
from ..core.split_quality import largest_deviation

#: one colour per rarity, rarest first: gold, purple, blue, grey, brown
RARITY_COLOURS = {
    "Legendary": "#e0a800",
    "Rare": "#8e44ad",
    "Uncommon": "#2e86de",
    "Common": "#a4adb5",
    "Trash": "#7f5f3f",
}


def write_chart(report: DatasetReport, path: Path, title: str) -> None:
    """A PNG of four panels: files per dataset × rarity, each dataset's rarity mix, each rarity's split
    against the target, and the leakage of train frames into the other datasets."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

    overall = report.scope(OVERALL).drop(index=ALL)
    datasets = list(overall.index)
    figure = Figure(figsize=(13, 10), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    (counts_axes, mix_axes), (split_axes, leak_axes) = figure.subplots(2, 2, width_ratios=[3, 2])
    figure.suptitle(title, fontsize=13, fontweight="bold")

    # left: files per dataset, stacked by rarity (rarest on top), total and share vs target above
    stack_order = list(reversed(RARITIES))
    bottom = pd.Series(0, index=datasets, dtype=float)
    for rarity in stack_order:
        values = overall[rarity].astype(float)
        counts_axes.bar(datasets, values, bottom=bottom, color=RARITY_COLOURS[rarity], label=rarity, width=0.6)
        bottom += values
    grand_total = float(overall["total"].sum())
    for x, dataset in enumerate(datasets):
        counts_axes.hlines(
            overall.loc[dataset, "target"] * grand_total,
            x - 0.38,
            x + 0.38,
            colors="black",
            linestyles="dashed",
            linewidth=1.4,
            label="target share" if x == 0 else None,
        )
    tallest = max(float(bottom.max()), grand_total * max(report.split.values(), default=0), 1.0)
    for x, dataset in enumerate(datasets):
        row = overall.loc[dataset]
        counts_axes.annotate(
            f"{int(row['total']):,} files\n{row['share']:.1%} (target {row['target']:.0%})",
            (x, max(bottom[dataset], row["target"] * grand_total)),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=10,
        )
    counts_axes.set_ylim(0, tallest * 1.22)
    counts_axes.set_ylabel("files")
    counts_axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    counts_axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    counts_axes.set_title("files per dataset and rarity")
    counts_axes.spines[["top", "right"]].set_visible(False)
    counts_axes.tick_params(axis="x", labelsize=11)

    # right: each dataset's rarity mix in percent (should look alike across datasets)
    totals = overall["total"].replace(0, 1).astype(float)
    left = pd.Series(0.0, index=datasets)
    for rarity in RARITIES:
        shares = overall[rarity] / totals * 100
        mix_axes.barh(datasets, shares, left=left, color=RARITY_COLOURS[rarity], height=0.6)
        for y, dataset in enumerate(datasets):
            if shares[dataset] >= 6:
                light = rarity in ("Rare", "Uncommon", "Trash")
                mix_axes.text(
                    left[dataset] + shares[dataset] / 2,
                    y,
                    f"{shares[dataset]:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if light else "black",
                )
        left += shares
    mix_axes.set_xlim(0, 100)
    mix_axes.invert_yaxis()
    mix_axes.xaxis.set_major_formatter(PercentFormatter())
    mix_axes.set_title("rarity mix per dataset")
    mix_axes.spines[["top", "right"]].set_visible(False)

    handles, labels = counts_axes.get_legend_handles_labels()
    # rarities rarest first, then the target marker
    order = [labels.index(r) for r in RARITIES] + [labels.index("target share")]
    figure.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="outside lower center",
        ncols=len(order),
        frameon=False,
        fontsize=10,
    )
    _rarity_split_panel(split_axes, report.rarity_shares, report.split, largest_deviation(report.rarity_shares))
    _leakage_panel(leak_axes, report.leakage, report.split)
    figure.savefig(path, format="png")


DATASET_COLOURS = ("#3b6fb6", "#e07b39", "#3a9a5b", "#9b59b6", "#7f8c8d", "#c0392b")


def _dataset_colour(index: int) -> str:
    return DATASET_COLOURS[index % len(DATASET_COLOURS)]


def _rarity_split_panel(axes, shares: pd.DataFrame, split: dict[str, float], largest) -> None:
    """Each rarity's files across the datasets (100 % bars), with the target cut points dashed."""
    from matplotlib.ticker import PercentFormatter

    rarities = list(RARITIES)
    left = pd.Series(0.0, index=rarities)
    for i, dataset in enumerate(split):
        rows = shares[shares["dataset"] == dataset].set_index("rarity").reindex(rarities)
        values = rows["share"].fillna(0.0) * 100
        axes.barh(rarities, values, left=left, color=_dataset_colour(i), height=0.6, label=dataset)
        for y, rarity in enumerate(rarities):
            if values[rarity] >= 7:
                axes.text(
                    left[rarity] + values[rarity] / 2, y, f"{values[rarity]:.0f}%",
                    ha="center", va="center", fontsize=9, color="white",
                )
        left += values
    cumulative = 0.0
    for target in list(split.values())[:-1]:
        cumulative += target * 100
        axes.axvline(cumulative, color="black", linestyle="dashed", linewidth=1.2)
    labels = [f"{r} ({int(shares.loc[shares['rarity'] == r, 'rarity_files'].iloc[0]):,})" for r in rarities]
    axes.set_yticks(range(len(rarities)), labels)
    axes.set_xlim(0, 100)
    axes.invert_yaxis()
    axes.xaxis.set_major_formatter(PercentFormatter())
    title = "each rarity's split (dashed: target)"
    if largest is not None:
        title += f"\nlargest deviation: {largest['rarity']} {largest['dataset']} {largest['deviation'] * 100:+.1f} pp"
    axes.set_title(title)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncols=len(split), fontsize=9, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)


def _leakage_panel(axes, leakage: pd.DataFrame, split: dict[str, float]) -> None:
    """Share of each non-train dataset's frames with a train frame of the same episode within s seconds."""
    from matplotlib.ticker import PercentFormatter

    thresholds = list(dict.fromkeys(leakage["seconds"]))
    names = list(dict.fromkeys(leakage["dataset"]))
    width = 0.8 / max(len(names), 1)
    reference = next(iter(split))
    for i, name in enumerate(names):
        rows = leakage[leakage["dataset"] == name].set_index("seconds").reindex(thresholds)
        xs = [x + (i - (len(names) - 1) / 2) * width for x in range(len(thresholds))]
        values = rows["share"].to_numpy() * 100
        colour = _dataset_colour(list(split).index(name)) if name in split else "grey"
        axes.bar(xs, values, width=width * 0.95, color=colour, label=f"{name} ({int(rows['frames'].iloc[0]):,} frames)")
        for x, v in zip(xs, values, strict=True):
            axes.annotate(f"{v:.0f}%", (x, v), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    axes.set_xticks(range(len(thresholds)), [f"≤ {s:g} s" for s in thresholds])
    axes.set_ylim(0, 108)
    axes.yaxis.set_major_formatter(PercentFormatter())
    axes.set_title(f"leakage: frames with a {reference} frame\nof the same episode within")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncols=len(names), fontsize=9, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
