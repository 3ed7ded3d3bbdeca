#!/usr/bin/env python3
"""Entry point cron calls: `python data_preparation.py sync`. See `--help` and README.md.

The same as the `tuttle-prep` console script `pip install .` gives (both run `tuttle_prep.cli.run`).
"""

from tuttle_prep.cli import run

if __name__ == "__main__":
    run()
