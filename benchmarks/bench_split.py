"""Benchmark and measure the stratified split and the leakage table (a script, never a timed test).

    python benchmarks/bench_split.py                 # 1,000,000 frames (about 35 episodes of 28,800)
    python benchmarks/bench_split.py --frames 200000

Prints, and writes to benchmarks/results/split-<time>.json and split-latest.md:
- wall time of `wanted_frames` (the plan's entry point) at N frames: stratify=rarity, none, and both with
  5-second groups (best of --repeat runs);
- wall time of `leakage_table` at N frames (validate and test against train, 1/5/30 s);
- movement: how many other frames k reclassifications move (the bound is k·2·(D−1): each one leaves a
  rarity and joins another);
- what switching an existing bucket from none to rarity moves (no groups and 5-second groups);
- per-rarity share deviations of the group split at 28,800 frames per episode (N = 1, 5, 10, 30 s).

Synthetic episodes: scenes of 2–30 s, each mostly one rarity (10 % of frames differ), rarities drawn with
weights Legendary 2 %, Rare 8 %, Uncommon 20 %, Common 50 %, Trash 20 %.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuttle_prep.core.frame_table import RARITIES  # noqa: E402
from tuttle_prep.core.plan import wanted_frames  # noqa: E402
from tuttle_prep.core.split_quality import leakage_table  # noqa: E402

SHARES = {"train": 0.7, "validate": 0.2, "test": 0.1}
SEED = "tuttle-twins-2022"
EPISODE_FRAMES = 28_800
WEIGHTS = np.array([0.02, 0.08, 0.2, 0.5, 0.2])


def scene_rarities(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Rarity codes of one episode's frames, in scenes of 2–30 s."""
    lengths = rng.integers(2 * 24, 30 * 24, size=frames // 48 + 2)
    scenes = rng.choice(5, size=len(lengths), p=WEIGHTS)
    codes = np.repeat(scenes, lengths)[:frames]
    noise = rng.random(frames) < 0.1
    codes[noise] = rng.choice(5, size=int(noise.sum()), p=WEIGHTS)
    return codes


def frame_numbers(episode_id: str, ticks: np.ndarray) -> list[str]:
    head = f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-"
    return [f"{head}{t // 86400:02d}-{t // 1440 % 60:02d}-{t // 24 % 60:02d}-{t % 24:02d}" for t in ticks.tolist()]


def catalogue(frames: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    left, number = frames, 0
    while left > 0:
        n = min(EPISODE_FRAMES, left)
        episode_id = f"S{1 + number // 20:02d}E{1 + number % 20:02d}"
        parts.append(
            pd.DataFrame(
                {
                    "episode_id": episode_id,
                    "frame": frame_numbers(episode_id, np.arange(n)),
                    "rarity": np.asarray(RARITIES, dtype=object)[scene_rarities(rng, n)],
                }
            )
        )
        left -= n
        number += 1
    return pd.concat(parts, ignore_index=True)


def best_of(repeat: int, run) -> tuple[dict[str, float], object]:
    """Best wall and CPU seconds of `repeat` runs (single-threaded work: on a quiet machine they agree; on a
    shared one the CPU time is the steadier number)."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall": min(walls), "cpu": min(cpus)}, result


def _times(seconds: dict[str, float]) -> str:
    return f"wall {seconds['wall']:6.3f} s  cpu {seconds['cpu']:6.3f} s"


def group_deviation(seconds: int, episodes: int = 10, stratify: str = "rarity") -> dict[str, dict[str, float]]:
    """Worst |files − share × rarity files| per rarity over datasets and episodes, in frames and in points."""
    rng = np.random.default_rng(seconds)
    worst_frames = dict.fromkeys(RARITIES, 0.0)
    worst_points = dict.fromkeys(RARITIES, 0.0)
    for number in range(episodes):
        episode_id = f"S09E{number + 1:02d}"
        frames = pd.DataFrame(
            {
                "episode_id": episode_id,
                "frame": frame_numbers(episode_id, np.arange(EPISODE_FRAMES)),
                "rarity": np.asarray(RARITIES, dtype=object)[scene_rarities(rng, EPISODE_FRAMES)],
            }
        )
        wanted = wanted_frames(frames, SHARES, SEED, seconds, stratify=stratify)
        for rarity, rows in wanted.groupby("rarity"):
            counts = rows["dataset"].value_counts()
            for dataset, share in SHARES.items():
                off = abs(counts.get(dataset, 0) - len(rows) * share)
                worst_frames[rarity] = max(worst_frames[rarity], off)
                worst_points[rarity] = max(worst_points[rarity], off / len(rows) * 100)
    return {"frames": worst_frames, "points": worst_points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--changes", type=int, default=1000, help="reclassifications for the movement measure")
    args = parser.parse_args()
    frames = catalogue(args.frames)
    results: dict[str, object] = {"frames": len(frames), "episodes": int(frames["episode_id"].nunique())}

    timings = {}
    for label, group_seconds, stratify in [
        ("rarity", 0, "rarity"),
        ("none", 0, "none"),
        ("rarity, 5 s groups", 5, "rarity"),
        ("none, 5 s groups", 5, "none"),
    ]:
        seconds, wanted = best_of(
            args.repeat, lambda g=group_seconds, s=stratify: wanted_frames(frames, SHARES, SEED, g, stratify=s)
        )
        timings[label] = seconds
        results[f"datasets {label}"] = wanted["dataset"].to_numpy()
        print(f"wanted_frames, {label:<20} {len(frames):>10,} frames  {_times(seconds)}")
    results["split_seconds"] = timings

    stratified = results.pop("datasets rarity")
    datasets = stratified.tolist()
    seconds, table_rarity = best_of(
        args.repeat, lambda: leakage_table(frames["frame"].tolist(), datasets, list(SHARES))
    )
    results["leakage_seconds"] = seconds
    print(f"leakage_table (1/5/30 s)             {len(frames):>10,} frames  {_times(seconds)}")

    # leakage of each setting (share of validate/test frames with a train frame within 1/5/30 s)
    frame_list = frames["frame"].tolist()
    leaks = {}
    for label in ("none", "rarity, 5 s groups", "none, 5 s groups"):
        table = leakage_table(frame_list, results[f"datasets {label}"].tolist(), list(SHARES))
        leaks[label] = {f"{r.dataset} <= {r.seconds} s": r.share for r in table.itertuples()}
    leaks["rarity"] = {f"{r.dataset} <= {r.seconds} s": r.share for r in table_rarity.itertuples()}
    results["leakage"] = leaks
    for label, shares in leaks.items():
        print(f"leakage, {label:<20} " + ", ".join(f"{k}: {v:.1%}" for k, v in shares.items()))

    # movement: k reclassifications, how many other frames change dataset
    rng = np.random.default_rng(5)
    picked = rng.choice(len(frames), size=args.changes, replace=False)
    edited = frames.copy()
    codes = edited["rarity"].map({r: i for i, r in enumerate(RARITIES)}).to_numpy()
    new_codes = (codes[picked] + rng.integers(1, 5, size=len(picked))) % 5
    edited.loc[picked, "rarity"] = np.asarray(RARITIES, dtype=object)[new_codes]
    after = wanted_frames(edited, SHARES, SEED)["dataset"].to_numpy()
    others = np.ones(len(frames), dtype=bool)
    others[picked] = False
    moved_others = int((after[others] != stratified[others]).sum())
    bound = args.changes * 2 * (len(SHARES) - 1)
    results["movement"] = {"reclassified": args.changes, "other_frames_moved": moved_others, "bound": bound}
    print(
        f"{args.changes:,} reclassifications moved {moved_others:,} other frames "
        f"({moved_others / args.changes:.2f} per reclassification; bound {bound:,})"
    )

    switch = {}
    for label, a, b in [
        ("no groups", "none", "rarity"),
        ("5 s groups", "none, 5 s groups", "rarity, 5 s groups"),
    ]:
        old = results.pop(f"datasets {a}")
        new = stratified if b == "rarity" else results.pop(f"datasets {b}")
        switch[label] = float((old != new).mean())
        print(f"switching none -> rarity ({label}) moves {switch[label]:.2%} of the frames")
    results["switch_none_to_rarity"] = switch

    groups = {}
    for seconds_ in (1, 5, 10, 30):
        for stratify in ("rarity", "none"):
            worst = groups[f"{seconds_} s, {stratify}"] = group_deviation(seconds_, stratify=stratify)
            text = ", ".join(f"{r} {worst['frames'][r]:.0f} ({worst['points'][r]:.1f} pp)" for r in RARITIES)
            print(f"groups of {seconds_:>2} s, {stratify:<6} at 28,800 frames/episode, worst deviation: {text}")
    results["group_deviation"] = groups

    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"split-{stamp}.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {out / f'split-{stamp}.json'}")


if __name__ == "__main__":
    main()
