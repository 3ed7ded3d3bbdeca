"""apply: the first sync (N copies) against `s5cmd run` of exactly the copy commands of our dry-run plan: the
ratio is s5cmd's time over the whole sync's (sheets, listings, plan, copies, labels index); `apply_plan`'s own
copies/s beside it. Also records the first sync's S3 requests against the minimum."""

from __future__ import annotations

from bench_common import S3Bench

NAME = "apply"
SUMMARY = "apply N copies: ours (a first sync) vs s5cmd run; the first sync's requests vs the minimum"


def run(bench: S3Bench) -> None:
    """Fill bench.results["apply"] (and "first sync requests", through bench.first_sync)."""
    dataset_objects = bench.dataset_objects
    s5_copy = bench.s5cmd_copy()
    _, first_s, first_apply = bench.first_sync()
    assert first_apply is not None  # a first sync into empty datasets applies its copies
    bench.results["apply"] = {
        "copies": dataset_objects,
        "ours_s": first_apply,
        "s5cmd_s": s5_copy,
        "ours_per_s": dataset_objects / first_apply,
        "s5cmd_per_s": dataset_objects / s5_copy,
        "throughput_ratio": s5_copy / first_apply,
        "our_whole_sync_s": first_s,
        "speedup": s5_copy / first_s,
        "s5cmd_requests": dict(bench.s5cmd_copy_requests) if bench.s5cmd_copy_requests else None,
    }
