"""The few names the light paths need: exit codes, the split's choices, the rarity columns of a sheet.

Plain Python on purpose (no pandas, pyarrow or numpy): `settings`, the CLI's `--help` and `status` import this
module and nothing heavier (issue 26: a command imports what it needs when it needs it). The modules these
names belong to (`run_report`, `split`, `frame_table`) import them from here, under the same names as before.
"""

from __future__ import annotations

#: the job did all it could; only data findings (printed) remain
EXIT_OK = 0
#: a job failure (or, under --strict, a data finding)
EXIT_ERRORS = 1
EXIT_CONFIG = 2

STRATIFY_CHOICES = ("rarity", "none")
DEFAULT_STRATIFY = "rarity"
#: the dataset leakage is measured against (TUTTLE_TRAIN_DATASET's default)
DEFAULT_TRAIN_DATASET = "train"
#: Hamming distance at or below which two frames are near-duplicates (docs/datasets.md: the measured table)
DEFAULT_DISTANCE = 6

#: rarity columns, most trusted first
RARITY_COLUMNS = ("JONNY's RECLASSIFICATION", "SUPERVISED CLASSIFICATION", "UNSUPERVISED CLASSIFICATION")


def normalize_header(name: str) -> str:
    """Header names match after trimming spaces, ignoring case, and reading ’ as '."""
    return " ".join(str(name).replace("\u2019", "'").replace("\u2018", "'").split()).casefold()
