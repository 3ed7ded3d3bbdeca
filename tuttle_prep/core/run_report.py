"""The run report: what a run found and did, the tables it prints, and the exit code it earns.

Two kinds of findings are kept apart (see `findings`): job failures (`error`, a refused guard, failed
operations, a configuration error) fail the run; data findings (rejected rows, skipped sheets, missing
source frames, orphans) are reported and fail the run only under `--strict`.
"""

from __future__ import annotations

import platform
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .clock import Clock
from .findings import (
    MISSING_SOURCE,
    ORPHANS,
    REJECTED_ROW,
    SHEET_SKIPPED,
    UNDECODABLE_COLUMNS,
    UNDECODABLE_SOURCE,
    SheetRef,
    describe_counts,
    findings_hash,
    findings_table,
)
from .frame_table import REJECTION_COLUMNS
from .names import EXIT_CONFIG, EXIT_ERRORS, EXIT_OK  # noqa: F401 - defined there (light), re-exported here
from .text import escape_control

#: `row`: the frame's sheet row (0 where it is not known)
MISSING_COLUMNS = ["episode_id", "frame", "src_key", "row"]

COUNT_COLUMNS = ["keep", "copy", "move", "refresh", "delete", "missing", "rejected"]


@dataclass
class RunReport:
    """Collects a run's counts, problems and outcome; `exit_code` is derived from them."""

    dry_run: bool = False
    host: str = field(default_factory=lambda: platform.node() or "unknown-host")
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: the clock the command was handed (the system clock from the entry point; tests pass their own)
    clock: Clock = field(default=time.time, repr=False, compare=False)
    #: when the run started by `clock` (0: read from `clock` on creation); the dataset version id's time
    started: float = 0.0
    finished: float | None = None
    #: per episode: COUNT_COLUMNS (plus 'status')
    counts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COUNT_COLUMNS))
    rejections: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECTION_COLUMNS))
    #: job failures: the job could not do part of its work (exit 1, RunFailed)
    errors: list[str] = field(default_factory=list)
    #: data findings as messages, for the log (the full list is `data_findings()`)
    findings: list[str] = field(default_factory=list)
    #: things worth reading that are neither (unexpected keys under the ML prefix)
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    #: content hashes: source frames fetched and hashed this run, and listed frames already hashed
    content_hashed: int = 0
    content_reused: int = 0
    #: source frames that are no picture (UNDECODABLE_COLUMNS): data findings
    undecodable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNDECODABLE_COLUMNS))
    #: episodes skipped for what their sheet says (a data finding), with the reason (the sentence stderr has)
    skipped_for_data: dict[str, str] = field(default_factory=dict)
    #: the header cell of a data skip, where one is at fault: episode -> (column name, column letter or "")
    skipped_columns: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: wanted frames without a source frame (MISSING_COLUMNS)
    missing: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MISSING_COLUMNS))
    #: dataset files of episodes in no manifest, by episode
    orphan_files: dict[str, int] = field(default_factory=dict)
    #: where each episode's sheet is (for links in the digest)
    sheets: dict[str, SheetRef] = field(default_factory=dict)
    #: `sync --strict`: data findings fail the run too
    strict: bool = False
    #: the run got as far as a plan (its data findings are complete for the planned episodes)
    planned: bool = False
    #: what became of the data digest ("sent", "unchanged", ...), for the run summary
    digest: str | None = None
    _findings: tuple[tuple, pd.DataFrame, str] | None = field(default=None, repr=False, compare=False)
    refused: str | None = None
    #: the refresh guard's refusal (too many dataset objects differ from their sources), if it refused
    refresh_refused: str | None = None
    config_error: str | None = None
    applied: bool = False
    copied: int = 0
    moved: int = 0
    #: dataset objects copied over from their sources (re-rendered, overwritten by hand, another image size)
    refreshed: int = 0
    #: refreshes not applied (the refresh guard refused them)
    refreshes_held_back: int = 0
    deleted: int = 0
    failed: int = 0
    deletes_held_back: int = 0
    orphans: int = 0
    unexpected: int = 0
    #: the dataset version this run wrote, if any
    version: str | None = None
    #: that version is marked partial (the run failed; `latest` skips it)
    version_partial: bool = False
    #: the latest version, when the datasets still match it (so none was written)
    version_unchanged: str | None = None
    #: the latest dataset version the ML listing contradicts (listing_check), when that stopped the run
    listing_stop: str | None = None
    #: versions deleted by the retention (TUTTLE_VERSIONS_KEEP)
    versions_deleted: list[str] = field(default_factory=list)
    #: the exit code the process returns when the run was stopped before it finished (SIGTERM: 143)
    stopped_with: int | None = None
    #: first 8 hex digits of the SHA-256 of TUTTLE_SPLIT_SEED (None until the settings are read)
    seed_fingerprint: str | None = None
    #: how frames are split besides the seed: "stratify=rarity, group seconds=0" (None until the settings are read)
    split_mode: str | None = None
    #: a usage error found once the manifests were read (a --season/--episode that matches nothing): exit 2,
    #: neither a job failure nor a run whose metrics count
    usage_error: str | None = None
    #: where the run's metrics go ("CloudWatch namespace TuttlePrep in us-east-1") or why they do not
    metrics: str | None = None
    #: the program's version (tuttle_prep.__version__), for the summary
    program_version: str | None = None

    def __post_init__(self) -> None:
        if not self.started:
            self.started = self.clock()

    def error(self, message: str) -> None:
        """A job failure: the job could not do part of its work (control characters escaped, as in every message)."""
        self.errors.append(escape_control(message))

    def finding(self, message: str) -> None:
        """A data finding worth a log line (the structured lists hold the details); control characters escaped."""
        self.findings.append(escape_control(message))

    def warn(self, message: str) -> None:
        """Worth reading, neither a failure nor a data finding; control characters escaped."""
        self.warnings.append(escape_control(message))

    def skip(
        self, episode_id: str, reason: str, *, data: bool = False, detail: str = "", column: str = "", letter: str = ""
    ) -> None:
        """The episode is not planned this run; its dataset files are left as they are.

        `reason` is the short status ('sheet not usable'). `data`: skipped for what its sheet says (a data finding),
        not because the job failed to read it; its finding says `detail` (the whole reason, as stderr has it) and
        names the header cell at fault (`column`, `letter`) when there is one.
        """
        self.skipped[episode_id] = reason
        if data:
            self.skipped_for_data[episode_id] = escape_control(detail or reason)
            if column:
                self.skipped_columns[episode_id] = (column, letter)

    @property
    def missing_sources(self) -> int:
        return len(self.missing)

    @property
    def rejected_rows(self) -> int:
        return len(self.rejections)

    @property
    def job_failures(self) -> int:
        """Job failures: errors, a refused delete or refresh guard, a configuration error."""
        refusals = bool(self.refused) + bool(self.refresh_refused)
        return len(self.errors) + refusals + bool(self.config_error) + bool(self.failed and not self.errors)

    @property
    def job_failed(self) -> bool:
        return self.job_failures > 0

    def data_findings(self) -> pd.DataFrame:
        """Every data finding of the run, one row each (`findings.FINDING_COLUMNS`); built once per state."""
        key = (
            id(self.rejections),
            len(self.rejections),
            id(self.missing),
            len(self.missing),
            id(self.undecodable),
            len(self.undecodable),
            tuple(sorted(self.skipped_for_data.items())),
            tuple(sorted(self.skipped_columns.items())),
            tuple(sorted(self.orphan_files.items())),
            tuple(sorted(self.sheets)),
        )
        if self._findings is None or self._findings[0] != key:
            table = findings_table(
                self.rejections,
                self.missing,
                self.skipped_for_data,
                self.orphan_files,
                self.sheets,
                self.undecodable,
                skipped_columns=self.skipped_columns,
            )
            self._findings = (key, table, findings_hash(table))
        return self._findings[1]

    def data_findings_sha256(self) -> str:
        """The hash of `data_findings()` (`findings.findings_hash`): what the digest compares run to run."""
        self.data_findings()
        assert self._findings is not None
        return self._findings[2]

    def data_finding_counts(self) -> dict[str, int]:
        """Data findings by kind."""
        return {
            SHEET_SKIPPED: len(self.skipped_for_data),
            REJECTED_ROW: self.rejected_rows,
            MISSING_SOURCE: self.missing_sources,
            UNDECODABLE_SOURCE: len(self.undecodable),
            ORPHANS: len(self.orphan_files),
        }

    @property
    def data_finding_count(self) -> int:
        return sum(self.data_finding_counts().values())

    @property
    def exit_code(self) -> int:
        """The process's own exit code when the run was stopped (128 + signal); 2 configuration error;
        1 a job failure (or a data finding under --strict); 0 otherwise (data findings are printed)."""
        if self.stopped_with is not None:
            return self.stopped_with
        if self.config_error or self.usage_error:
            return EXIT_CONFIG
        if self.job_failed or (self.strict and self.data_finding_count):
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
            status = self.episode_status(str(episode_id), int(row["missing"]) + int(row["rejected"]))
            lines.append(f"{episode_id:<10}" + "".join(f"{int(row[c]):>10,}" for c in COUNT_COLUMNS) + f"  {status}")
        for episode_id in sorted(set(self.skipped) - set(counts.index)):
            lines.append(
                f"{episode_id:<10}"
                + "".join(f"{'-':>10}" for _ in COUNT_COLUMNS)
                + f"  {self.episode_status(episode_id)}"
            )
        lines.append("-" * len(header))
        lines.append(f"{'total':<10}" + "".join(f"{self.total(c):>10,}" for c in COUNT_COLUMNS))
        lines.append(f"job failures: {self.job_failures:,}")
        data = f"data findings: {self.data_finding_count:,}"
        if self.data_finding_count:
            data += f" ({describe_counts(self.data_finding_counts())}); they "
            data += "fail the run (--strict)" if self.strict else "do not fail the run (--strict would)"
        lines.append(data)
        return "\n".join(lines)

    def episode_status(self, episode_id: str, data_findings: int = 0) -> str:
        """'ok', 'data findings', 'skipped (data): …' or 'skipped (job failure): …' for the table and the log."""
        if episode_id in self.skipped_for_data:
            return f"skipped (data): {self.skipped[episode_id]}"
        if episode_id in self.skipped:
            return f"skipped (job failure): {self.skipped[episode_id]}"
        return "data findings" if data_findings else "ok"

    def outcome_line(self) -> str:
        """One line: what was done (after a real run) or what would be done (dry run)."""
        if self.config_error:
            return f"configuration error: {self.config_error}"
        if self.usage_error:
            return f"usage error: {self.usage_error}; nothing was changed"
        if self.dry_run:
            deletes = "refuse the deletes" if self.refused else f"delete {self.total('delete'):,}"
            refreshes = ""
            if self.refresh_refused:
                refreshes = "refuse the refreshes, "
            elif self.total("refresh"):
                refreshes = f"refresh {self.total('refresh'):,}, "
            line = f"dry run: would copy {self.total('copy'):,}, move {self.total('move'):,}, {refreshes}{deletes}"
            if self.listing_stop:
                line = f"dry run: would stop: the listing contradicts dataset version {self.listing_stop}"
            return f"{line}; nothing was changed"
        if self.listing_stop:
            return f"stopped: the listing contradicts dataset version {self.listing_stop}; nothing was applied"
        if not self.applied:
            return "nothing was applied"
        # the refreshes are named when there were any to do
        refreshed = f"refreshed {self.refreshed:,}, " if self.refreshed or self.total("refresh") else ""
        line = f"done: copied {self.copied:,}, moved {self.moved:,}, {refreshed}deleted {self.deleted:,}"
        line += f"; failed {self.failed:,}"
        if self.deletes_held_back:
            line += f"; {self.deletes_held_back:,} deletes held back"
        if self.refreshes_held_back:
            line += f"; {self.refreshes_held_back:,} refreshes held back"
        if self.version:
            line += f"; dataset version {self.version} written" + (" (partial)" if self.version_partial else "")
        elif self.version_unchanged and not (self.copied or self.moved or self.refreshed or self.deleted):
            line += f"; datasets unchanged since version {self.version_unchanged}"
        elif self.version_unchanged:  # objects were written or deleted, yet the outcome is the version's
            line += f"; the datasets' outcome matches version {self.version_unchanged}, so no version was written"
        return line

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record of the run (for logs and metrics)."""
        finished = self.finished or self.clock()
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "episodes": sorted(str(e) for e in self.counts.index),
            "skipped": dict(self.skipped),
            "counts": {c: self.total(c) for c in COUNT_COLUMNS},
            "copied": self.copied,
            "moved": self.moved,
            "refreshed": self.refreshed,
            "refreshes_held_back": self.refreshes_held_back,
            "deleted": self.deleted,
            "failed": self.failed,
            "deletes_held_back": self.deletes_held_back,
            "missing_sources": self.missing_sources,
            "rejected_rows": self.rejected_rows,
            "orphans": self.orphans,
            "unexpected_keys": self.unexpected,
            "version": self.version,
            "version_partial": self.version_partial,
            "listing_stop": self.listing_stop,
            "versions_deleted": list(self.versions_deleted),
            "split_seed_fingerprint": self.seed_fingerprint,
            "split_mode": self.split_mode,
            "refused": self.refused,
            "refresh_refused": self.refresh_refused,
            "errors": len(self.errors),
            "job_failures": self.job_failures,
            "job_failed": self.job_failed,
            "job_failure_messages": [
                *([self.config_error] if self.config_error else []),
                *self.errors[:10],
                *([self.refused] if self.refused else []),
                *([self.refresh_refused] if self.refresh_refused else []),
            ],
            "data_findings": self.data_finding_count,
            "data_findings_sha256": self.data_findings_sha256() if self.planned else None,
            "skipped_for_data": dict(self.skipped_for_data),
            "strict": self.strict,
            "digest": self.digest,
            "host": self.host,
            "started": self.started,
            "duration_seconds": round(finished - self.started, 3),
            "config_error": self.config_error,
            "usage_error": self.usage_error,
            "metrics": self.metrics,
            "program_version": self.program_version,
            "exit_code": self.exit_code,
        }
