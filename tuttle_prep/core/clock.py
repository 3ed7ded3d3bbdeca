"""The clock type every time-dependent piece is handed: the process entry point passes the system clock,
tests pass their own, so no result depends on the day a test happens to run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: seconds since the epoch (UTC), like `time.time`
Clock = Callable[[], float]


def utc(seconds: float) -> datetime:
    """`seconds` since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def fixed_clock(when: datetime) -> Clock:
    """A clock that always says `when` (an aware datetime)."""
    seconds = when.timestamp()
    return lambda: seconds
