"""tuttle-prep: keep the Tuttle Twins rarity datasets in S3 in sync with the episode sheets."""

import os

# Arrow's default allocator (mimalloc) keeps the pages it freed: on the system one a million-frame plan peaks
# ~100 MB lower at no more CPU (benchmarks/bench_plan.py). Read when pyarrow is first imported, which the
# modules of this package do after this line.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "1.0.0"
