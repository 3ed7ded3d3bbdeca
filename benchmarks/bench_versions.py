#!/usr/bin/env python3
"""Benchmark dataset versions at 1,000,000 frames (in memory: no S3).

    python benchmarks/bench_versions.py                  # 1,000,000 frames, 3 repeats
    python benchmarks/bench_versions.py --frames 200000 --repeat 5

Measures what a sync does after its apply when the datasets changed, and what `versions diff` does:
1. write: labels index -> `build_version_table` (source ETags/sizes joined from a listing) -> `outcome_digest`
   -> `version_info` -> `version_to_parquet`; the Parquet size;
2. diff: `version_from_parquet` of two versions (the diff columns) -> `diff_versions`; B differs from A by
   2.5 % reclassified frames, 0.5 % moved, 0.5 % removed, 0.5 % added.
Targets (issue 13): write <= 3 s and <= 40 MB; diff <= 3 s. Wall and CPU seconds, medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tuttle_prep.core.frame_table import RARITIES  # noqa: E402
from tuttle_prep.core.plan import KeyLayout  # noqa: E402
from tuttle_prep.core.versions import (  # noqa: E402
    DIFF_INPUT_COLUMNS,
    build_version_table,
    diff_versions,
    known_sources_table,
    outcome_digest,
    version_from_parquet,
    version_info,
    version_to_parquet,
)

SPLIT = {"train": 0.7, "validate": 0.2, "test": 0.1}
EPISODE_FRAMES = 28_800
CHARACTERS = ["Emily", "Ethan", "Grandpa", "Space Tunnel", "Time Machine", "Ms. Jones", "Derek", "Dad", "Mom"]
LAYOUT = KeyLayout("tuttle_twins/ML/", "tuttle_twins/", "thumbnails", tuple(SPLIT))


def frames(n: int) -> list[str]:
    out: list[str] = []
    episode = 0
    while len(out) < n:
        season, number = divmod(episode, 13)
        for i in range(min(EPISODE_FRAMES, n - len(out))):
            seconds, ff = divmod(i, 24)
            hh, rest = divmod(seconds, 3600)
            mm, ss = divmod(rest, 60)
            out.append(f"TT_S{season + 1:02d}_E{number + 1:02d}_FRM-{hh:02d}-{mm:02d}-{ss:02d}-{ff:02d}")
        episode += 1
    return out


def labels_index(frame_numbers: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """A labels index as a sync builds it (string columns, sorted by key)."""
    n = len(frame_numbers)
    datasets = np.array(list(SPLIT), dtype=object)[rng.choice(3, n, p=list(SPLIT.values()))]
    rarities = np.array(RARITIES, dtype=object)[rng.integers(0, 5, n)]
    texts = ["[" + ", ".join(rng.choice(CHARACTERS, 2, replace=False)) + "]" for _ in range(500)]
    metadata = np.array(texts, dtype=object)[rng.integers(0, len(texts), n)]
    table = pd.DataFrame(
        {
            "frame": frame_numbers,
            "episode_id": [f[3:6] + f[7:10] for f in frame_numbers],
            "dataset": datasets,
            "rarity": rarities,
            "metadata": metadata,
        }
    )
    table["s3_key"] = LAYOUT.dataset_keys(table["dataset"], table["rarity"], table["frame"]).to_numpy()
    return table.sort_values("s3_key").reset_index(drop=True).astype(str)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(13)
    numbers = frames(args.frames)
    labels = labels_index(numbers, rng)
    listing = known_sources_table(  # the source listing of a first run: every frame, quoted ETags
        LAYOUT,
        labels["episode_id"].tolist(),
        labels["frame"].tolist(),
        [f'"{hashlib.md5(f.encode()).hexdigest()}"' for f in labels["frame"]],
        rng.integers(20_000, 60_000, len(labels)).tolist(),
    )

    def write(table_labels: pd.DataFrame) -> bytes:
        table = build_version_table(table_labels, LAYOUT, listing)
        digest = outcome_digest(table)
        info = version_info(table, "20261201T023005Z-bench", "bench", SPLIT, "seed", 0, None, {}, digest)
        return version_to_parquet(table, info)

    # B: 2.5 % reclassified, 0.5 % moved, 0.5 % removed, 0.5 % added (new frames of a new episode)
    n = len(labels)
    changed = labels.copy()
    picks = rng.permutation(n)
    reclassified, moved, removed = picks[: n // 40], picks[n // 40 : n // 40 + n // 200], picks[-(n // 200) :]
    changed.loc[reclassified, "rarity"] = [
        RARITIES[(RARITIES.index(r) + 1) % 5] for r in changed.loc[reclassified, "rarity"]
    ]
    changed.loc[moved, "dataset"] = ["validate" if d == "train" else "train" for d in changed.loc[moved, "dataset"]]
    changed = changed.drop(index=removed)
    added = labels.iloc[: n // 200].copy()
    added["frame"] = [f"TT_S99_E01_FRM-{f[15:]}" for f in added["frame"]]
    added["episode_id"] = "S99E01"
    changed = pd.concat([changed, added], ignore_index=True)
    changed["s3_key"] = LAYOUT.dataset_keys(changed["dataset"], changed["rarity"], changed["frame"]).to_numpy()
    changed = changed.sort_values("s3_key").reset_index(drop=True).astype(str)

    writes, diffs = [], []
    data_a = data_b = b""
    for _ in range(args.repeat):
        data_a, wall, cpu = timed(lambda: write(labels))
        writes.append((wall, cpu))
    data_b = write(changed)
    result = None
    for _ in range(args.repeat):

        def diff():
            a, _ = version_from_parquet(data_a, "a", DIFF_INPUT_COLUMNS)
            b, _ = version_from_parquet(data_b, "b", DIFF_INPUT_COLUMNS)
            return diff_versions(a, b)

        result, wall, cpu = timed(diff)
        diffs.append((wall, cpu))
    assert result is not None
    expected = {"added": n // 200, "removed": n // 200}
    assert {k: result.counts[k] for k in expected} == expected, result.counts

    def median(pairs, i):
        return statistics.median(p[i] for p in pairs)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"dataset versions at {n:,} frames ({platform.python_version()}, {os.cpu_count()} cores, load {load:.1f})")
    print(
        f"write a version: {median(writes, 0):.2f} s wall, {median(writes, 1):.2f} s CPU (target <= 3 s); "
        f"{len(data_a) / 1e6:.1f} MB Parquet (target <= 40 MB)"
    )
    print(
        f"versions diff (decode both + diff): {median(diffs, 0):.2f} s wall, {median(diffs, 1):.2f} s CPU "
        f"(target <= 3 s); {result.counts}, {len(result.changes):,} changed dataset objects"
    )


if __name__ == "__main__":
    main()
