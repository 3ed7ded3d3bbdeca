"""incremental: 5 % of the sheet rows change (60 % get another rarity -> moves, 20 % lose their rarity ->
deletes, 20 % get one -> copies); the whole sync is timed against a full reload with s5cmd (`rm` of every
dataset object + `run` of every copy), and against s5cmd doing only the same copies and deletes after one
`ls` of the datasets (measured first; the bucket is then put back as it was, untimed). Also records that
sync's S3 requests against the minimum."""

from __future__ import annotations

from bench_common import CHANGED_SHARE, S3Bench

NAME = "incremental"
SUMMARY = "a sync after 5 % of the rows changed vs a full reload with s5cmd; its requests vs the minimum"


def run(bench: S3Bench) -> None:
    """Fill bench.results["incremental"] and ["incremental requests"]."""
    s5_copy, s5_delete = bench.s5cmd_copy(), bench.s5cmd_rm()
    bench.first_sync()
    bench.write_sheets(edited=True)
    changes = bench.plan_csv("incremental")
    s5_same = bench.s5cmd_same_changes(changes)
    bench.undo_changes(changes)
    folders = bench.folder_counts()
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
        "s5cmd_same_changes_s": s5_same,
        "vs_same_changes": incremental_s / s5_same,
        "s5cmd_rm_requests": dict(bench.s5cmd_rm_requests) if bench.s5cmd_rm_requests else None,
    }
    bench.results["incremental requests"] = bench.request_table(incremental_counts, incremental, folders)
