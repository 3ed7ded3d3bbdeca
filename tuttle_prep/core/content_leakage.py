"""Leakage by content (pure): frames of validate/test with a near-duplicate picture in train.

A frame leaks when some train frame's dHash is within k bits of its own (`core.content`). Counted per dataset
after the reference (train), per scope — `any`, `within` (a twin in train of the same episode), `across` (a
twin in train of another episode: the title sequence, recaps) — and per rarity of the leaking frame (`all` and
each rarity). The worst clusters (connected near-duplicates spanning train and another dataset, most non-train
frames first) are what the contact sheet shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .content import iter_near_pairs, near_duplicate_clusters
from .frame_table import RARITIES

CONTENT_LEAKAGE_COLUMNS = ["dataset", "scope", "rarity", "frames", "leaking", "share"]
SCOPES = ("any", "within", "across")
#: the frames shown of one cluster, and the clusters shown
CLUSTER_FRAMES = 6
CLUSTERS_SHOWN = 6


def content_leakage(frames: pd.DataFrame, order: Sequence[str], k: int) -> pd.DataFrame:
    """CONTENT_LEAKAGE_COLUMNS. `frames`: frame, episode_id, dataset, rarity, hash (uint64; rows without a hash
    are left out and not counted); `order[0]` is the reference (train)."""
    hashed = frames[frames["hash"].notna()].reset_index(drop=True)
    hashes = hashed["hash"].astype("uint64").to_numpy()
    datasets = hashed["dataset"].astype(str).to_numpy()
    episodes = hashed["episode_id"].astype(str).to_numpy()
    in_train = datasets == order[0]
    within = np.zeros(len(hashed), dtype=bool)
    across = np.zeros(len(hashed), dtype=bool)
    for i, j in iter_near_pairs(hashes, k):
        for a, b in ((i, j), (j, i)):  # b leaks when a is a train frame and b is not
            hit = in_train[a] & ~in_train[b]
            same = episodes[a[hit]] == episodes[b[hit]]
            within[b[hit][same]] = True
            across[b[hit][~same]] = True
    rows = []
    rarities = hashed["rarity"].astype(str).to_numpy()
    for name in order[1:]:
        mine = datasets == name
        for scope, leaks in (("any", within | across), ("within", within), ("across", across)):
            for rarity in ("all", *RARITIES):
                chosen = mine if rarity == "all" else mine & (rarities == rarity)
                n, leaking = int(chosen.sum()), int((leaks & chosen).sum())
                rows.append((name, scope, rarity, n, leaking, leaking / n if n else 0.0))
    return pd.DataFrame(rows, columns=CONTENT_LEAKAGE_COLUMNS)


def leak_clusters(frames: pd.DataFrame, reference: str, k: int, shown: int = CLUSTERS_SHOWN) -> list[pd.DataFrame]:
    """The worst leak clusters: near-duplicate clusters with frames in `reference` and in another dataset, the
    most frames outside the reference first (then the canonical member); each as its rows (frame, episode_id,
    dataset, rarity, ...) sorted with the other datasets' frames first, up to CLUSTER_FRAMES of them."""
    hashed = frames[frames["hash"].notna()].sort_values("frame", kind="stable").reset_index(drop=True)
    if hashed.empty:
        return []
    labels = near_duplicate_clusters(hashed["hash"].astype("uint64").to_numpy(), k)
    hashed = hashed.assign(_cluster=labels, _ref=(hashed["dataset"] == reference).astype(int))
    stats = hashed.groupby("_cluster")["_ref"].agg(["sum", "count"])
    stats["other"] = stats["count"] - stats["sum"]
    leaking = stats[(stats["sum"] > 0) & (stats["other"] > 0)]
    worst = leaking.sort_values(["other", "count"], ascending=False, kind="stable").index[:shown]
    out = []
    for label in worst:
        members = hashed[hashed["_cluster"] == label].sort_values(["_ref", "frame"], kind="stable")
        out.append(members.head(CLUSTER_FRAMES).drop(columns=["_cluster", "_ref"]).reset_index(drop=True))
    return out


def content_leakage_lines(table: pd.DataFrame, k: int, hashed: int, total: int) -> list[str]:
    """The text report's lines: per dataset, the leaking share by scope, and by rarity for `any`."""
    lines = [f"content leakage (a train frame within {k} bits of dHash; {hashed:,} of {total:,} frames hashed):"]
    if table.empty:
        return [*lines, "  (no frames)"]
    for dataset, rows in table.groupby("dataset", sort=False):
        total_rows = rows[rows["rarity"] == "all"].set_index("scope")
        parts = [
            f"{scope} {int(total_rows.loc[scope, 'leaking']):,} ({total_rows.loc[scope, 'share']:.1%})"
            for scope in SCOPES
        ]
        lines.append(f"  {dataset}: {int(total_rows.loc['any', 'frames']):,} frames; leaking: " + ", ".join(parts))
        by_rarity = rows[(rows["scope"] == "any") & (rows["rarity"] != "all") & (rows["frames"] > 0)]
        if len(by_rarity):
            lines.append(
                "    by rarity: "
                + ", ".join(f"{r.rarity} {r.leaking:,}/{r.frames:,}" for r in by_rarity.itertuples(index=False))
            )
    return lines
