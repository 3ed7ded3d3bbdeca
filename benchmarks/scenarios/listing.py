"""list: listing the N dataset keys, ours (`s3_listing.list_datasets`, as a sync calls it: obstore, the rarity
folders in parallel) against `s5cmd ls 's3://bucket/<ML prefix>*'`, alternating, `--repeat` times each; medians."""

from __future__ import annotations

import time

from bench_common import LIST_OPERATIONS, S3Bench, SyncOptions, _median, _rounded, build_context

from tuttle_prep.edges.s3_listing import list_datasets

NAME = "list"
SUMMARY = "list the N dataset keys: ours vs s5cmd ls (medians of --repeat)"


def run(bench: S3Bench) -> None:
    """Fill bench.results["listing"]."""
    dataset_objects = bench.dataset_objects
    bench.s5cmd_copy()  # the datasets hold the N objects
    ours, theirs = [], []
    ml_glob = bench.s3_url(f"{bench.settings.ml_prefix}*")
    # as a sync lists: obstore, the rarity folders in parallel
    store = build_context(bench.settings, SyncOptions(workers=bench.workers)).store
    for _ in range(bench.repeat):
        with bench.requests() as list_counts:
            clock = time.perf_counter()
            inventory = list_datasets(store, bench.layout)
            ours.append(time.perf_counter() - clock)
        seconds, out = bench.s5cmd("ls", ml_glob)
        theirs.append(seconds)
        listed = sum(1 for line in out.splitlines() if line.strip())
        if len(inventory.keys) != dataset_objects or listed != dataset_objects:
            raise RuntimeError(f"listed {len(inventory.keys)} (ours) / {listed} (s5cmd), want {dataset_objects}")
    bench.results["listing"] = {
        "keys": dataset_objects,
        "ours_s": _median(ours),
        "s5cmd_s": _median(theirs),
        "ours_all_s": _rounded(ours),
        "s5cmd_all_s": _rounded(theirs),
        "our_list_requests": sum(list_counts[op] for op in LIST_OPERATIONS) if bench.endpoint.has_stats else None,
        "ratio": _median(ours) / _median(theirs),
    }
