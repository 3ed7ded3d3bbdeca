"""The pure core: tables in, change sets out. No I/O, no AWS, Google or click (import-linter keeps it so)."""
