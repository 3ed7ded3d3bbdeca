"""rerun: a second sync with nothing changed; it must write nothing to the datasets."""

from __future__ import annotations

from bench_common import WRITES_DATASETS, WRITES_OTHER, S3Bench

NAME = "rerun"
SUMMARY = "an unchanged rerun: seconds, and its writes (0 to the datasets)"


def run(bench: S3Bench) -> None:
    """Fill bench.results["unchanged rerun"]."""
    bench.first_sync()
    with bench.requests() as rerun_counts:
        _, rerun_s, _ = bench.sync()
    bench.results["unchanged rerun"] = {
        "seconds": rerun_s,
        "dataset writes": rerun_counts[WRITES_DATASETS],
        "other writes": rerun_counts[WRITES_OTHER],
        "requests": dict(sorted(rerun_counts.items())),
    }
