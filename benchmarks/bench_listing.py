#!/usr/bin/env python3
"""Listing the datasets at catalogue scale: `s3_listing.list_datasets` over N keys vs `s5cmd ls`.

    python benchmarks/bench_listing.py --fast-s3 --keys 1000000

Seeds N dataset keys (15 rarity folders of 3 datasets, production key layout) into a local_s3 endpoint this
script starts, then lists them as a sync does (wall and CPU time, peak RSS of this process after the seeding)
and with `s5cmd ls` (`--no-s5cmd` skips it). A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_common import S5cmd, add_endpoint_options, endpoint, frame_numbers  # noqa: E402

from tuttle_prep.commands.sync import SyncOptions, build_context  # noqa: E402
from tuttle_prep.core.frame_table import RARITIES  # noqa: E402
from tuttle_prep.core.plan import KeyLayout  # noqa: E402
from tuttle_prep.edges.s3_listing import list_datasets  # noqa: E402
from tuttle_prep.settings import Settings  # noqa: E402


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_endpoint_options(parser, required=True)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--no-s5cmd", action="store_true")
    args = parser.parse_args()
    settings = Settings(bucket="tuttle-bench-listing")
    layout = KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))
    folders = [f"{settings.ml_prefix}{d}/{r}/" for d in layout.datasets for r in RARITIES]
    with endpoint(args.fast_s3, args.latency_ms) as s3, tempfile.TemporaryDirectory():
        os.environ.update(
            AWS_ENDPOINT_URL=s3.url,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        urllib.request.urlopen(urllib.request.Request(f"{s3.url}/{settings.bucket}", method="PUT")).close()
        per_episode = 28_800
        for start in range(0, args.keys, per_episode):
            index = start // per_episode
            episode = f"S{index // 13 + 1:02d}E{index % 13 + 1:02d}"
            frames = frame_numbers(episode, min(per_episode, args.keys - start))
            body = "\n".join(f"{folders[i % len(folders)]}{f}.jpg" for i, f in enumerate(frames)).encode()
            seed = f"{s3.url}/__seed?bucket={settings.bucket}&size=2300"
            urllib.request.urlopen(urllib.request.Request(seed, data=body), timeout=600).close()
        store = build_context(settings, SyncOptions()).store
        with open("/proc/self/clear_refs", "w") as refs:  # peak RSS from here on
            refs.write("5")
        rss_before = peak_rss_mb()
        wall, cpu = time.perf_counter(), time.process_time()
        inventory = list_datasets(store, layout)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result = {
            "keys": len(inventory.keys),
            "ours_s": round(wall, 2),
            "ours_cpu_s": round(cpu, 2),
            "peak_rss_mb": round(peak_rss_mb()),
            "rss_before_mb": round(rss_before),
            "load": [round(x, 2) for x in os.getloadavg()],
        }
        if len(inventory.keys) != args.keys:
            raise RuntimeError(f"listed {len(inventory.keys)}, want {args.keys}")
        s5cmd = None if args.no_s5cmd else S5cmd.find(s3.url)
        if s5cmd is not None:
            seconds, out = s5cmd("ls", f"s3://{settings.bucket}/{settings.ml_prefix}*")
            result["s5cmd_ls_s"] = round(seconds, 2)
            result["s5cmd_listed"] = sum(1 for line in out.splitlines() if line.strip())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
