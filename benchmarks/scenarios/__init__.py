"""One module per benchmark scenario; `bench_sync.py --only NAME` runs one. Each has NAME, SUMMARY and `run`."""
