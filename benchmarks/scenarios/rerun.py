"""rerun: a second sync with nothing changed, against a full reload (`s5cmd rm` of every dataset object +
`s5cmd run` of every copy); it must write nothing under the ML prefix. Also records its S3 requests."""

from __future__ import annotations

from bench_common import WRITES_DATASETS, WRITES_OTHER, S3Bench

NAME = "rerun"
SUMMARY = "an unchanged rerun vs a full reload with s5cmd; its writes (0 under the ML prefix) and requests"


def run(bench: S3Bench) -> None:
    """Fill bench.results["unchanged rerun"] and ["unchanged rerun requests"]."""
    full_reload = bench.s5cmd_copy() + bench.s5cmd_rm()
    bench.first_sync()
    folders = bench.folder_counts()
    with bench.requests() as rerun_counts:
        rerun, rerun_s, _ = bench.sync()
    bench.results["unchanged rerun"] = {
        "seconds": rerun_s,
        "full_reload_s": full_reload,
        "speedup": full_reload / rerun_s,
        "dataset writes": rerun_counts[WRITES_DATASETS],
        "other writes": rerun_counts[WRITES_OTHER],
        "requests": dict(sorted(rerun_counts.items())),
    }
    bench.results["unchanged rerun requests"] = bench.request_table(rerun_counts, rerun, folders)
