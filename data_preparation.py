#!/usr/bin/env python3
"""Entry point cron calls: `python data_preparation.py sync`. See `--help` and README.md."""

import signal
import sys

from tuttle_prep.cli import main


def _stop(signum: int, frame: object) -> None:
    # SIGTERM (cron's timeout, systemd, kill) unwinds like Ctrl-C would, so the run lock is released and
    # the failed run is logged and counted; copies already under way finish, no delete starts.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    sys.exit(main())
