"""The command line: the click group and its global options; each command lives in `tuttle_prep.commands`.

Exit codes: 0 the job did all it could (data findings, if any, are printed); 1 a job failure (or, with
`sync --strict`, a data finding); 2 usage or configuration error; 128 + signal when stopped by a signal
(143 SIGTERM, 130 Ctrl-C, 129 SIGHUP), with one line on stderr saying so.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from dotenv import load_dotenv

from . import __version__, stopping
from .commands.common import Invocation, fail_config, find_env_file, global_options
from .core.text import escape_control
from .errors import ConfigError, RunStopped
from .stopping import stop_on_signal  # noqa: F401 - the handler, where it always was (tests install it)

#: the exit code of a job failure (and of a bug's traceback)
EXIT_JOB_FAILED = 1


class EscapingFormatter(logging.Formatter):
    """A formatter that escapes the control characters of each message: one record, one line (a traceback,
    formatted apart, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape_control(record.message)
        return super().formatMessage(record)


def setup_logging(verbose: int) -> None:
    """Readable lines on stderr; botocore and urllib3 kept quiet. `verbose`: -1 quiet (errors only), 0 INFO,
    1 or more DEBUG."""
    level = logging.DEBUG if verbose >= 1 else logging.INFO if verbose >= 0 else logging.ERROR
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


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Collect a global option, given before the command or after it, into the root context's GlobalOptions."""
    options = global_options(ctx)
    if param.name == "verbose":
        options.verbose += int(value or 0)
    elif param.name == "quiet":
        options.quiet = options.quiet or bool(value)
    elif param.name == "env_file" and value is not None:
        options.env_file = value
    return value


def _global_params() -> list[click.Option]:
    return [
        click.Option(
            ["--env-file"],
            type=click.Path(dir_okay=False, path_type=Path),
            callback=_remember,
            expose_value=False,
            help="Read settings from this file instead of ./.env (variables already set in the environment win).",
        ),
        click.Option(
            ["-v", "--verbose"], count=True, callback=_remember, expose_value=False, help="Debug log detail."
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            callback=_remember,
            expose_value=False,
            help="Errors only on stderr, and only the final line on stdout.",
        ),
    ]


def apply_global_options(ctx: click.Context) -> None:
    """Once per invocation, before the command runs: read the env file (--env-file, else ./.env) and set up the
    log levels from -v/-q, wherever on the command line they were given."""
    options = global_options(ctx)
    if options.applied:
        return
    options.applied = True
    if options.env_file is not None:
        if not options.env_file.is_file():
            fail_config(f"--env-file {options.env_file} does not exist")
        load_dotenv(options.env_file, override=False)
    elif (found := find_env_file(dict(os.environ), Path.cwd())) is not None:
        load_dotenv(found, override=False)
    setup_logging(-1 if options.quiet else options.verbose)


def _with_global_options(command: click.Command) -> None:
    """Give `command` (and every command under it) the global options, applied before its callback."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_global_options(sub)
        return
    command.params.extend(_global_params())
    callback = command.callback
    if callback is None:
        return

    @functools.wraps(callback)
    def run_with_globals(*args: Any, **kwargs: Any) -> Any:
        apply_global_options(click.get_current_context())
        return callback(*args, **kwargs)

    command.callback = run_with_globals


class TuttleGroup(click.Group):
    """The top group: a ConfigError that escapes a command (an unusable AWS_* setting found as a client is built)
    is one sentence on stderr and exit 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail_config(str(exc))


#: each command: the module that defines it, its name there, and the first paragraph of its help (what the
#: command list of `--help` shows). A command's module is imported only when that command runs or shows its
#: own help, so `--help` imports no pandas, pyarrow, boto3 or obstore (tests/test_startup.py checks the
#: summaries against the commands' own help).
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "alarm": (
        "tuttle_prep.commands.alarm",
        "alarm",
        "SMS alerts when a run fails or does not run (SNS topic + CloudWatch alarms on the run metrics), "
        "and the data digest emailed to the sheet owners.",
    ),
    "config": (
        "tuttle_prep.commands.config",
        "config",
        "The settings the commands use (from the environment and .env / --env-file).",
    ),
    "demo": (
        "tuttle_prep.commands.demo",
        "demo",
        "Run the whole job on an embedded S3 (moto server on 127.0.0.1): no accounts, no network.",
    ),
    "manifests": (
        "tuttle_prep.commands.manifests",
        "manifests",
        "Check, publish and list the season manifests (the *-episodes.json files).",
    ),
    "pull": (
        "tuttle_prep.commands.pull",
        "pull",
        "Download datasets to a local folder: only files missing locally or of another size.",
    ),
    "report": (
        "tuttle_prep.commands.report",
        "report",
        "Count the dataset files per dataset and rarity against the target split.",
    ),
    "split": ("tuttle_prep.commands.split_preview", "split", "Try split settings on the sheets before changing .env."),
    "status": (
        "tuttle_prep.commands.status",
        "status",
        "Show the last runs (time, host, exit code, copied/moved/deleted, job failures, data findings, duration) "
        "from their run summaries in CloudWatch Logs, the run lock's holder, and the alarms.",
    ),
    "sync": ("tuttle_prep.commands.sync", "sync", "Bring the dataset folders in line with the sheets."),
    "versions": (
        "tuttle_prep.commands.versions",
        "versions",
        "Dataset versions: what the datasets held after each sync that changed them.",
    ),
}


class LazyGroup(TuttleGroup):
    """A click group whose commands (`LAZY_COMMANDS`) are imported the first time they are asked for; commands
    added with `add_command` work as in any group. Each gets the global options as it is imported."""

    def __init__(self, *args: object, lazy: dict[str, tuple[str, str, str]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, sorted, without importing any command."""
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command named `cmd_name`, its module imported now if it was not yet."""
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute, _ = self.lazy[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            _with_global_options(command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """click's, with "Did you mean 'sync'?" drawn from every command's name, not only the imported ones."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`: the summaries of `LAZY_COMMANDS` for commands not imported yet."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=self.lazy[name][2])
            if not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_remember,
    expose_value=False,
    help="Read settings from this file (default: $TUTTLE_ENV_FILE, else ./.env, else .env beside "
    "data_preparation.py; variables already set in the environment win).",
)
@click.option(
    "-v", "--verbose", count=True, callback=_remember, expose_value=False, help="Debug log detail (default: INFO)."
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    callback=_remember,
    expose_value=False,
    help="Errors only on stderr, and only the final line on stdout. Global options may also follow the command.",
)
@click.version_option(package_name=None, version=__version__, prog_name="tuttle-prep")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Keep the Tuttle Twins rarity datasets in S3 in sync with the episode sheets.

    Reads the season manifests in S3, each episode's sheet, picks each frame's most trusted rarity,
    gives every frame a stable train/validate/test dataset and brings the dataset folders in line.
    Settings come from the environment and .env (see .env.example).
    """
    if not isinstance(ctx.obj, Invocation):  # a caller (a test) may hand its own clock
        ctx.obj = Invocation()




def completion_names(argv0: str) -> dict[str, str]:
    """Click's program name and shell-completion variable: `_TUTTLE_PREP_COMPLETE` for the `tuttle-prep`
    console script (click's own default), `_DATA_PREPARATION_COMPLETE` for `data_preparation.py` (click would
    make `_DATA_PREPARATION.PY_COMPLETE` of it, which no shell can set)."""
    name = Path(argv0).name
    if name.endswith(".py"):
        return {"prog_name": name, "complete_var": f"_{name[:-3]}_COMPLETE".replace("-", "_").upper()}
    return {}


class _ClosedStdout:
    """sys.stdout of the process, for a reader that may go away (`sync | head -1`): the first write or flush that
    fails with a broken pipe is remembered and later output is dropped, so the command runs to its end and exits
    as its summary records (not 1 by click's own EPIPE handling, not a job failure in the summary)."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        """Write `text`, or drop it once the reader is gone."""
        if not self.broken:
            try:
                return self._stream.write(text)  # type: ignore[attr-defined]
            except BrokenPipeError:
                self.broken = True
        return len(text)

    def flush(self) -> None:
        """Flush, unless the reader is gone."""
        if not self.broken:
            try:
                self._stream.flush()  # type: ignore[attr-defined]
            except BrokenPipeError:
                self.broken = True

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def run() -> None:
    """The process entry point: `python data_preparation.py` and the `tuttle-prep` console script.

    Installs the SIGTERM and SIGINT handlers (only a process's own entry point may), runs the click group and
    leaves with the code the run recorded, after one line on stderr if a signal stopped it.
    """
    stopping.begin_run()
    stopping.install()
    stdout = sys.stdout = _ClosedStdout(sys.stdout)  # type: ignore[assignment]
    code = EXIT_JOB_FAILED
    try:
        try:
            main(**completion_names(sys.argv[0]))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_JOB_FAILED)
        finally:
            stopping.hold_for_exit()  # no signal raises after this: the exit path runs whole
    except RunStopped as exc:  # the one stop arrived as main() ended, before the hold
        stopping.hold_for_exit()
        code = int(exc.code)  # type: ignore[arg-type]
    except BaseException:  # noqa: BLE001 - a bug: its traceback, exit 1
        stopping.hold_for_exit()
        traceback.print_exc()
        code = EXIT_JOB_FAILED
    recorded = stopping.recorded_outcome()
    if recorded is not None:  # the run's summary said this: the process returns the same
        code = recorded
    line = _how_it_ended(code)
    with contextlib.suppress(Exception):
        stdout.flush()
    if line is None and stdout.broken:
        line = f"stdout was closed (broken pipe): the rest of the output was not shown (exit code {code})"
    _exit(code, line)


def _how_it_ended(code: int) -> str | None:
    signum = stopping.stopped_by()
    if signum is not None and code == 128 + signum:
        name = signal.Signals(signum).name
        return (
            f"stopped by {name}: the command ended before it finished; requests under way were let finish, "
            f"nothing new started, the run lock (if taken) was released (exit code {code})"
        )
    late = stopping.late_signal()
    if late is not None:
        return f"{signal.Signals(late).name} arrived as the run was ending and changed nothing (exit code {code})"
    return None


def _exit(code: int, line: str | None) -> None:
    """Print `line` on stderr, flush every stream and log handler, then end the process with `code`.

    `os._exit` rather than `sys.exit`: the interpreter never starts finalizing, so nothing is torn down while
    another thread still runs — obstore's tokio threads drop Python references under the GIL a moment after a
    call returned, and one doing so during finalization aborts the process (SIGABRT/SIGSEGV after the run had
    recorded its code). With `_exit(2)` the kernel ends every thread at once and no Python code or object is
    touched after this point, so that is certain, not a pause that is usually long enough. What finalization
    would have done that matters is done here by hand: stdout, stderr and the log handlers are flushed (the
    run lock and the CloudWatch stream were closed by the run's own `finally` blocks before this).
    """
    with contextlib.suppress(Exception):  # a closed stream must not change the exit code
        if line is not None:
            sys.stderr.write(line + "\n")
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
