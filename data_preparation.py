#!/usr/bin/env python3
"""Entry point cron calls: `python data_preparation.py sync`. See `--help` and README.md.

The same as the `tuttle-prep` console script `pip install .` gives (both run `tuttle_prep.cli.run`).
"""

import signal
import sys

from tuttle_prep import stopping
from tuttle_prep.errors import RunStopped

if __name__ == "__main__":
    # the handlers first (light modules): a SIGTERM while the libraries load (about 2 s) still ends the process
    # as 143 with its one line, not by the signal's default action
    stopping.install()
    try:
        from tuttle_prep.cli import run
    except RunStopped as stopped:  # no thread runs yet: a plain exit is safe
        name = signal.Signals(stopped.signum).name
        sys.stderr.write(f"stopped by {name}: before the run started, nothing was done (exit code {stopped.code})\n")
        sys.exit(stopped.code)
    run()
