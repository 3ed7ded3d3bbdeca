#!/usr/bin/env python3
"""Entry point cron calls: `python data_preparation.py sync`. See `--help` and README.md."""

from tuttle_prep.cli import main

if __name__ == "__main__":
    main()
