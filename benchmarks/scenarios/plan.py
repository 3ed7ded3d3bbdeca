"""plan: the pure core's plan at 100,000 and 1,000,000 frames, in memory (no S3).

Synthetic sheets of 28,800-frame episodes -> `build_frame_table` -> `wanted_frames` -> `parse_dataset_keys` ->
`plan_changes` -> `counts_by_episode`, as a sync runs them, for a first run (empty datasets) and a nightly run
(the datasets as the previous run left them, 5 % of the sheet rows changed). Each size runs in a fresh process
(`bench_sync.py --plan-child N`), so peak RSS and timings don't carry over.
"""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from bench_common import catalogue, frame_numbers, log, sheet_table

from tuttle_prep.core.frame_table import build_frame_table
from tuttle_prep.core.plan import KeyLayout, plan_changes, wanted_frames
from tuttle_prep.settings import Settings

NAME = "plan"
SUMMARY = "plan time and peak RSS at each --plan-sizes, in memory; the scaling exponent"
BENCH_SYNC = Path(__file__).resolve().parent.parent / "bench_sync.py"


def _peak_rss_mb() -> float:
    """This process's peak RSS since the last `_reset_peak_rss` (Linux), else since it started."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def plan_in_memory(
    sheets: dict[str, pd.DataFrame], listing: list[str], sources: pd.DataFrame, settings: Settings
) -> tuple[dict[str, float], dict[str, int]]:
    """The pure part of a sync, as a sync runs it: sheets -> frame tables -> datasets -> parsed listing -> plan."""
    layout = KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    tables = [build_frame_table(raw, eid, f"{eid} sheet").frames.assign(episode_id=eid) for eid, raw in sheets.items()]
    frames = pd.concat(tables, ignore_index=True)
    seconds["frame tables"] = time.perf_counter() - clock
    clock = time.perf_counter()
    wanted = wanted_frames(frames, settings.split, settings.split_seed, settings.split_group_seconds)
    seconds["split"] = time.perf_counter() - clock
    clock = time.perf_counter()
    current, _ = layout.parse_dataset_keys(listing)
    seconds["parse listing"] = time.perf_counter() - clock
    clock = time.perf_counter()
    episodes = set(sheets)
    plan = plan_changes(wanted, current, sources, layout, episodes, episodes)
    plan.counts_by_episode()
    seconds["plan"] = time.perf_counter() - clock
    return seconds, {action: plan.count(action) for action in ("keep", "copy", "move", "delete")}


def plan_child(frames: int) -> dict[str, Any]:
    """Run in a fresh process: plan a first run and a nightly run of `frames` frames; time and peak RSS."""
    settings = Settings()
    layout = KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))
    episodes = catalogue(frames)
    # the bucket as the previous night's sync left it
    before = pd.concat(
        [build_frame_table(sheet_table(e, n, False), e).frames.assign(episode_id=e) for e, n in episodes],
        ignore_index=True,
    )
    wanted = wanted_frames(before, settings.split, settings.split_seed)
    listing = layout.dataset_keys(wanted["dataset"], wanted["rarity"], wanted["frame"]).tolist()
    del before, wanted
    sheets = {e: sheet_table(e, n, True) for e, n in episodes}
    sources = pd.DataFrame([(e, f) for e, n in episodes for f in frame_numbers(e, n)], columns=["episode_id", "frame"])
    gc.collect()
    inputs_mb = _rss_mb()
    _reset_peak_rss()
    result: dict[str, Any] = {"frames": frames, "episodes": len(episodes), "inputs_rss_mb": round(inputs_mb)}
    for scenario, keys in (("first run", []), ("nightly", listing)):
        wall, cpu = time.perf_counter(), time.process_time()
        stages, counts = plan_in_memory(sheets, keys, sources, settings)
        result[scenario] = {
            "wall_s": round(time.perf_counter() - wall, 3),
            "cpu_s": round(time.process_time() - cpu, 3),
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "actions": counts,
        }
        gc.collect()
    result["peak_rss_mb"] = round(_peak_rss_mb())
    return result


def measure_plans(sizes: list[int]) -> list[dict[str, Any]]:
    """Each size in its own process, so peak RSS and timings don't carry over."""
    results = []
    for frames in sizes:
        log.info("planning %s frames in a fresh process", f"{frames:,}")
        done = subprocess.run(
            [sys.executable, str(BENCH_SYNC), "--plan-child", str(frames)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"the plan of {frames:,} frames failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def run(sizes: list[int]) -> dict[str, Any]:
    """The results of this scenario: {"plans": one entry per size}."""
    return {"plans": measure_plans(sizes)}
