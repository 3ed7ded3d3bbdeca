"""The run report: what a run found and did, the tables it prints, and the exit code it earns."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .frame_table import REJECTION_COLUMNS

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_CONFIG = 2

COUNT_COLUMNS = ["keep", "copy", "move", "delete", "missing", "rejected"]


@dataclass
class RunReport:
    """Collects a run's counts, problems and outcome; `exit_code` is derived from them."""

    dry_run: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    finished: float | None = None
    #: per episode: COUNT_COLUMNS (plus 'status')
    counts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COUNT_COLUMNS))
    rejections: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECTION_COLUMNS))
    #: things that make the run exit 1
    errors: list[str] = field(default_factory=list)
    #: things worth reading that do not fail the run (orphans, unexpected keys)
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    refused: str | None = None
    config_error: str | None = None
    applied: bool = False
    copied: int = 0
    moved: int = 0
    deleted: int = 0
    failed: int = 0
    deletes_held_back: int = 0
    orphans: int = 0
    unexpected: int = 0
    #: the dataset version this run wrote, if any
    version: str | None = None
    #: the latest version, when the datasets still match it (so none was written)
    version_unchanged: str | None = None
    #: versions deleted by the retention (TUTTLE_VERSIONS_KEEP)
    versions_deleted: list[str] = field(default_factory=list)
    #: the exit code the process returns when the run was stopped before it finished (SIGTERM: 143)
    stopped_with: int | None = None
    #: first 8 hex digits of the SHA-256 of TUTTLE_SPLIT_SEED (None until the settings are read)
    seed_fingerprint: str | None = None
    #: how frames are split besides the seed: "stratify=rarity, group seconds=0" (None until the settings are read)
    split_mode: str | None = None

    def error(self, message: str) -> None:
        self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def skip(self, episode_id: str, reason: str) -> None:
        """The episode is not planned this run; its dataset files are left as they are."""
        self.skipped[episode_id] = reason

    @property
    def missing_sources(self) -> int:
        return int(self.counts["missing"].sum()) if len(self.counts) else 0

    @property
    def rejected_rows(self) -> int:
        return len(self.rejections)

    @property
    def exit_code(self) -> int:
        """0 clean; 1 finished with errors, skipped episodes, failures or a refused guard; 2 config error;
        the process's own exit code when the run was stopped (128 + signal)."""
        if self.stopped_with is not None:
            return self.stopped_with
        if self.config_error:
            return EXIT_CONFIG
        if self.errors or self.skipped or self.refused or self.failed or self.rejected_rows or self.missing_sources:
            return EXIT_ERRORS
        return EXIT_OK

    def total(self, column: str) -> int:
        return int(self.counts[column].sum()) if column in self.counts and len(self.counts) else 0

    def table(self) -> str:
        """The per-episode table with a totals line, as printed after a run."""
        counts = self.counts.reindex(columns=COUNT_COLUMNS, fill_value=0)
        lines = []
        header = f"{'episode':<10}" + "".join(f"{c:>10}" for c in COUNT_COLUMNS) + "  status"
        lines.append(header)
        lines.append("-" * len(header))
        for episode_id, row in counts.iterrows():
            status = self.skipped.get(str(episode_id), "ok")
            lines.append(f"{episode_id:<10}" + "".join(f"{int(row[c]):>10,}" for c in COUNT_COLUMNS) + f"  {status}")
        for episode_id in sorted(set(self.skipped) - set(counts.index)):
            lines.append(
                f"{episode_id:<10}"
                + "".join(f"{'-':>10}" for _ in COUNT_COLUMNS)
                + f"  skipped: {self.skipped[episode_id]}"
            )
        lines.append("-" * len(header))
        lines.append(f"{'total':<10}" + "".join(f"{self.total(c):>10,}" for c in COUNT_COLUMNS))
        return "\n".join(lines)

    def outcome_line(self) -> str:
        """One line: what was done (after a real run) or what would be done (dry run)."""
        if self.config_error:
            return f"configuration error: {self.config_error}"
        if self.dry_run:
            deletes = "refuse the deletes" if self.refused else f"delete {self.total('delete'):,}"
            return (
                f"dry run: would copy {self.total('copy'):,}, move {self.total('move'):,}, "
                f"{deletes}; nothing was changed"
            )
        if not self.applied:
            return "nothing was applied"
        line = f"done: copied {self.copied:,}, moved {self.moved:,}, deleted {self.deleted:,}; failed {self.failed:,}"
        if self.deletes_held_back:
            line += f"; {self.deletes_held_back:,} deletes held back"
        if self.version:
            line += f"; dataset version {self.version} written"
        elif self.version_unchanged:
            line += f"; datasets unchanged since version {self.version_unchanged}"
        return line

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record of the run (for logs and metrics)."""
        finished = self.finished or time.time()
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "episodes": sorted(str(e) for e in self.counts.index),
            "skipped": dict(self.skipped),
            "counts": {c: self.total(c) for c in COUNT_COLUMNS},
            "copied": self.copied,
            "moved": self.moved,
            "deleted": self.deleted,
            "failed": self.failed,
            "deletes_held_back": self.deletes_held_back,
            "missing_sources": self.missing_sources,
            "rejected_rows": self.rejected_rows,
            "orphans": self.orphans,
            "unexpected_keys": self.unexpected,
            "version": self.version,
            "versions_deleted": list(self.versions_deleted),
            "split_seed_fingerprint": self.seed_fingerprint,
            "split_mode": self.split_mode,
            "refused": self.refused,
            "errors": len(self.errors),
            "duration_seconds": round(finished - self.started, 3),
            "config_error": self.config_error,
            "exit_code": self.exit_code,
        }
