"""Exceptions shared across the package.

Each carries a message written for the person reading the log: it names the file, row, column
or setting at fault, and never a secret.
"""


class TuttlePrepError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(TuttlePrepError):
    """A setting, option or credential is missing or invalid (exit code 2)."""


class ManifestError(TuttlePrepError):
    """A season manifest cannot be used (bad JSON, missing key, duplicate episode)."""


class SheetError(TuttlePrepError):
    """An episode sheet cannot be read or has no usable header.

    `column` names the header cell at fault (the sheet's own spelling, or a column the sheet lacks) and
    `letter` its column letter when the sheet has it, so a finding can point the sheet owner at the cell.
    """

    def __init__(self, message: str, *, column: str = "", letter: str = "") -> None:
        super().__init__(message)
        self.column = column
        self.letter = letter


class SheetContentError(SheetError):
    """A sheet was read, but what it says cannot be used (no header row, no FRAME NUMBER column):
    a data finding for the sheet's owners, not a job failure."""


class LocalSheetRefused(SheetError):
    """A manifest names a local sheet outside TUTTLE_LOCAL_SHEETS_DIR (or the setting is unset): the file is never
    opened; the episode is skipped as a sheet not read (a job failure: a manifest pointing at a host file needs an
    operator)."""


class InventoryError(TuttlePrepError):
    """An S3 listing failed, so nothing may be planned from it."""


class LockError(TuttlePrepError):
    """The run lock cannot be taken or read, so nothing may be changed (exit code 1)."""


class LockHeld(LockError):
    """Another run holds the run lock; the message names it."""


class RunStopped(SystemExit):
    """The run was stopped by a signal (SIGTERM: cron's timeout, systemd, kill); the exit code is 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
