"""The last runs as the person on call reads them: one row per run summary (pure; `status` prints it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

HISTORY_COLUMNS = (
    "started (UTC)",
    "host",
    "kind",
    "exit",
    "copied",
    "moved",
    "deleted",
    "job failures",
    "data findings",
    "duration",
)


@dataclass(frozen=True)
class RunRecord:
    """One run as its log stream tells it; `summary` is None for a run that never wrote one (killed, running)."""

    stream: str
    started: float
    summary: Mapping[str, Any] | None = None

    @property
    def host(self) -> str:
        if self.summary and self.summary.get("host"):
            return str(self.summary["host"])
        return self.stream.split("/", 1)[0]  # streams are named <host>/<start time>/<run id>


def record_from_stream(stream: str, created_ms: int, summary: Mapping[str, Any] | None) -> RunRecord:
    """A RunRecord from a stream's name, creation time and run summary (if it has one)."""
    started = float(summary["started"]) if summary and summary.get("started") is not None else created_ms / 1000
    return RunRecord(stream=stream, started=started, summary=summary)


def _row(record: RunRecord) -> list[str]:
    started = datetime.fromtimestamp(record.started, UTC).strftime("%Y-%m-%d %H:%M:%S")
    s = record.summary
    if s is None:
        return [started, record.host, "no summary (killed, or still running)", *([""] * 7)]
    kind = "dry run" if s.get("dry_run") else "sync"
    if s.get("strict"):
        kind += " --strict"
    job_failures = s.get("job_failures", s.get("errors", 0))
    data_findings = s.get("data_findings", "")
    return [
        started,
        record.host,
        kind,
        str(s.get("exit_code", "?")),
        f"{s.get('copied', 0):,}",
        f"{s.get('moved', 0):,}",
        f"{s.get('deleted', 0):,}",
        f"{job_failures:,}" if isinstance(job_failures, int) else str(job_failures),
        f"{data_findings:,}" if isinstance(data_findings, int) else str(data_findings),
        f"{float(s.get('duration_seconds', 0)):.1f}s",
    ]


def history_table(records: Sequence[RunRecord]) -> str:
    """The runs, newest first, as an aligned text table (the first failure message under a failed run)."""
    records = sorted(records, key=lambda r: r.started, reverse=True)
    rows = [_row(r) for r in records]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HISTORY_COLUMNS)]
    numeric = {3, 4, 5, 6, 7, 8, 9}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [line(HISTORY_COLUMNS), line(["-" * w for w in widths])]
    for record, row in zip(records, rows, strict=True):
        if row[2].startswith("no summary"):  # one wide cell: no columns to align
            lines.append(f"{row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}")
            continue
        lines.append(line(row).rstrip())
        messages = (record.summary or {}).get("job_failure_messages") or []
        if messages:
            first = str(messages[0])
            lines.append(f"{'':{widths[0]}}  job failure: {first[:160]}{'…' if len(first) > 160 else ''}")
    return "\n".join(lines)
