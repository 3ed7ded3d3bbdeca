#!/usr/bin/env python3
"""Entry point cron calls: `python data_preparation.py sync`. See `--help` and README.md."""

import os
import signal
import sys

# Arrow's default allocator (mimalloc) keeps the pages it freed: with the system one a million-frame plan peaks
# ~100 MB lower and takes no more CPU (benchmarks/bench_plan.py). Read when pyarrow is first imported, below.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from tuttle_prep.cli import main  # noqa: E402


def _stop(signum: int, frame: object) -> None:
    # SIGTERM (cron's timeout, systemd, kill) unwinds like Ctrl-C would, so the run lock is released and
    # the failed run is logged and counted; copies already under way finish, no delete starts.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(main())
