"""The dataset report's chart as a PNG file, drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.dataset_report import ALL, OVERALL, DatasetReport
from ..core.frame_table import RARITIES

#: one colour per rarity, rarest first: gold, purple, blue, grey, brown
RARITY_COLOURS = {
    "Legendary": "#e0a800",
    "Rare": "#8e44ad",
    "Uncommon": "#2e86de",
    "Common": "#a4adb5",
    "Trash": "#7f5f3f",
}


def write_chart(report: DatasetReport, path: Path, title: str) -> None:
    """Stacked bars of files per dataset × rarity, and each dataset's rarity mix, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

    overall = report.scope(OVERALL).drop(index=ALL)
    datasets = list(overall.index)
    figure = Figure(figsize=(12, 5.2), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    counts_axes, mix_axes = figure.subplots(1, 2, width_ratios=[3, 2])
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
    figure.savefig(path, format="png")
