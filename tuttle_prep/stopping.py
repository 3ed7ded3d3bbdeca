"""How a run is stopped by a signal (SIGTERM from cron's timeout or systemd, SIGINT from Ctrl-C, SIGHUP when the
terminal or ssh session of a run started by hand closes; a SIGHUP that `nohup` ignores stays ignored).

The handler raises `RunStopped` in the main thread, so the run unwinds through its `finally` blocks (the lock
is released, the summary records 128 + signal). At most ONE `RunStopped` is raised per run: a signal that
arrives while one is already unwinding, while a drain is under way (`signals_held`) or after the outcome was
recorded (`record_outcome`) is remembered, never raised, so no exit path is interrupted a second time (no
traceback, no second outcome). The process entry point (`cli.run`) exits with the recorded outcome.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from .errors import RunStopped

#: the signals the process entry point hands to `stop_on_signal`
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class _State:
    #: the signal whose RunStopped was raised (None: none yet)
    raised: int | None = None
    #: > 0 while a drain holds signals back
    holding: int = 0
    #: the first signal received while it could not be raised
    pending: int | None = None
    #: the exit code the run's summary recorded (None: not recorded yet)
    outcome: int | None = None


_state = _State()


def begin_run() -> None:
    """A new run in this process (tests run several): forget the previous run's signals and outcome."""
    global _state
    _state = _State()


def install() -> None:
    """Hand SIGTERM, SIGINT and SIGHUP to `stop_on_signal` (only a process's own entry point may). A signal the
    process was started ignoring SIGHUP (`nohup`) stays ignored."""
    for signum in STOP_SIGNALS:
        if signum != signal.SIGHUP or signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, stop_on_signal)


def stop_on_signal(signum: int, frame: FrameType | None) -> None:
    """The SIGTERM/SIGINT handler: raise RunStopped (exit code 128 + signal) once; afterwards only remember."""
    if _state.raised is not None or _state.holding or _state.outcome is not None:
        if _state.pending is None:
            _state.pending = signum
        return
    _state.raised = signum
    raise RunStopped(signum)


@contextmanager
def signals_held() -> Iterator[None]:
    """While inside, a stop signal is remembered instead of raised; on a normal exit it is raised then (if
    no stop was raised before). For waits that must not be cut short, e.g. the drain of the copies in flight."""
    _state.holding += 1
    try:
        yield
    finally:
        _state.holding -= 1
    if not _state.holding and _state.pending is not None and _state.raised is None and _state.outcome is None:
        _state.raised = _state.pending
        raise RunStopped(_state.pending)


def hold_for_exit() -> None:
    """From here on no stop signal is raised: the run is writing its outcome (a signal is only remembered)."""
    _state.holding += 1


def record_outcome(code: int) -> None:
    """The run's summary recorded `code`: the process exits with it, whatever signal comes later."""
    _state.outcome = code


def recorded_outcome() -> int | None:
    """The exit code the run's summary recorded, or None."""
    return _state.outcome


def late_signal() -> int | None:
    """A stop signal that arrived after a stop was raised or the outcome was decided (it changed nothing)."""
    return _state.pending


def stopped_by() -> int | None:
    """The signal whose RunStopped was raised, or None."""
    return _state.raised
