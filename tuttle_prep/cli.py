"""The command line: the click group and its global options; each command lives in `tuttle_prep.commands`.

Exit codes: 0 the job did all it could (data findings, if any, are printed); 1 a job failure (or, with
`sync --strict`, a data finding); 2 usage or configuration error.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click
from dotenv import load_dotenv

from .commands.alarm import alarm
from .commands.common import Invocation, fail_config
from .commands.demo import demo
from .commands.manifests import manifests
from .commands.pull import pull
from .commands.report import report
from .commands.split_preview import split
from .commands.status import status
from .commands.sync import sync
from .commands.versions import versions
from .core.text import escape_control
from .errors import RunStopped


class EscapingFormatter(logging.Formatter):
    """A formatter that escapes the control characters of each message: one record, one line (a traceback,
    formatted apart, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_control(record.message)
        return super().formatMessage(record)


def setup_logging(verbose: int) -> None:
    """Readable lines on stderr; botocore and urllib3 kept quiet."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_tuttle", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handler._tuttle = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    else:
        # a second run in one process (tests, embedding) must log to the stderr of its own time
        handler.setStream(sys.stderr)  # type: ignore[attr-defined]
    root.setLevel(logging.WARNING)
    logging.getLogger("tuttle_prep").setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read settings from this file instead of ./.env (variables already set in the environment win).",
)
@click.option("-v", "--verbose", count=True, help="More log detail (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@click.version_option(package_name=None, version=__import__("tuttle_prep").__version__, prog_name="tuttle-prep")
@click.pass_context
def main(ctx: click.Context, env_file: Path | None, verbose: int, quiet: bool) -> None:
    """Keep the Tuttle Twins rarity datasets in S3 in sync with the episode sheets.

    Reads the season manifests in S3, each episode's sheet, picks each frame's most trusted rarity,
    gives every frame a stable train/validate/test dataset and brings the dataset folders in line.
    Settings come from the environment and .env (see .env.example).
    """
    if not isinstance(ctx.obj, Invocation):  # a caller (a test) may hand its own clock
        ctx.obj = Invocation()
    if env_file is not None:
        if not env_file.is_file():
            fail_config(f"--env-file {env_file} does not exist")
        load_dotenv(env_file, override=False)
    elif Path(".env").is_file():
        load_dotenv(Path(".env"), override=False)
    setup_logging(-1 if quiet else verbose)


main.add_command(sync)
main.add_command(report)
main.add_command(pull)
main.add_command(split)
main.add_command(manifests)
main.add_command(alarm)
main.add_command(versions)
main.add_command(demo)
main.add_command(status)


def stop_on_signal(signum: int, frame: object) -> None:
    """The SIGTERM handler: unwind like Ctrl-C would, so the run lock is released and the run is recorded as
    failed with exit code 128 + signal (what the process returns); copies under way finish, no delete starts."""
    raise RunStopped(signum)


def run() -> None:
    """The process entry point: `python data_preparation.py` and the `tuttle-prep` console script.

    Installs the SIGTERM handler (only a process's own entry point may), then runs the click group.
    """
    signal.signal(signal.SIGTERM, stop_on_signal)
    sys.exit(main())
