#!/usr/bin/env python3
"""Entry point cron calls: `python data_preparation.py sync`. See `--help` and README.md.

The same as the `tuttle-prep` console script `pip install .` gives (both run `tuttle_prep.cli.run`).
"""

import os
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

        run()  # it always leaves by os._exit; a stop here came before its own handling began
    except RunStopped as stopped:
        name = signal.Signals(stopped.signum).name
        sys.stderr.write(f"stopped by {name}: before the run started, nothing was done (exit code {stopped.code})\n")
        sys.stderr.flush()
        # not sys.exit: the interpreter restores each signal's default action while it finalizes, so a second
        # SIGTERM then would kill the process (-15) after this line said 143
        os._exit(stopped.code)
