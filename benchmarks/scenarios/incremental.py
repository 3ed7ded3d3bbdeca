"""incremental: 5 % of the sheet rows change (60 % get another rarity -> moves, 20 % lose their rarity ->
deletes, 20 % get one -> copies); the whole sync is timed against a full reload with s5cmd (`rm` of every
dataset object + `run` of every copy). Also records that sync's S3 requests against the minimum."""

from __future__ import annotations

from bench_common import CHANGED_SHARE, S3Bench

NAME = "incremental"
SUMMARY = "a sync after 5 % of the rows changed vs a full reload with s5cmd; its requests vs the minimum"


def run(bench: S3Bench) -> None:
    """Fill bench.results["incremental"] and ["incremental requests"]."""
    dataset_objects = bench.dataset_objects
    s5_copy, s5_delete = bench.s5cmd_copy(), bench.s5cmd_rm()
    bench.first_sync()
    bench.write_sheets(edited=True)
    with bench.requests() as incremental_counts:
        incremental, incremental_s, incremental_apply = bench.sync()
    bench.results["incremental"] = {
        "changed rows": f"{CHANGED_SHARE:.0%}",
        "copies": incremental.copied,
        "moves": incremental.moved,
        "deletes": incremental.deleted,
        "ours_s": incremental_s,
        "ours_apply_s": incremental_apply,
        "full_reload_s": s5_delete + s5_copy,
        "s5cmd_rm_s": s5_delete,
        "s5cmd_copy_s": s5_copy,
        "speedup": (s5_delete + s5_copy) / incremental_s,
        "s5cmd_rm_requests": dict(bench.s5cmd_rm_requests) if bench.s5cmd_rm_requests else None,
    }
    bench.results["incremental requests"] = bench.request_table(incremental_counts, incremental, dataset_objects)
