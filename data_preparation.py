#!/usr/bin/env python3
"""Entry point cron calls: `python data_preparation.py sync`. See `--help` and README.md."""

import signal
import sys

from tuttle_prep.cli import main, stop_on_signal

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop_on_signal)
    sys.exit(main())
