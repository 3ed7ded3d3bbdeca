"""Pieces the command modules share: settings or exit 2, the bucket and key layout, the --season/--episode options.

Kept apart from cli.py, which imports the command modules: they must not import cli.py back.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..core.clock import Clock
from ..core.names import EXIT_CONFIG
from ..core.text import escape_control
from ..errors import ConfigError
from ..settings import Settings

if TYPE_CHECKING:  # imported by the functions that use them: the CLI's help and `status` need neither
    from ..core.plan import KeyLayout
    from ..edges.s3_bucket import S3Bucket

_SEASON = re.compile(r"^S[0-9]{2}$", re.I)
_EPISODE = re.compile(r"^S[0-9]{2}E[0-9]{2}$", re.I)


@dataclass
class GlobalOptions:
    """The global options (-v, -q, --env-file), given before the command or after it."""

    verbose: int = 0
    quiet: bool = False
    env_file: Path | None = None
    applied: bool = False


def global_options(ctx: click.Context | None = None) -> GlobalOptions:
    """The invocation's global options (kept in the root context; defaults outside a click context)."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return GlobalOptions()
    meta = ctx.find_root().meta
    options = meta.get("tuttle_prep.globals")
    if options is None:
        options = meta["tuttle_prep.globals"] = GlobalOptions()
    return options


def quiet() -> bool:
    """`-q`: stdout has only the command's final line (and stderr only errors)."""
    return global_options().quiet


def echo_detail(text: str) -> None:
    """Print `text` on stdout unless -q was given (the tables and lists before a command's final line)."""
    if not quiet():
        click.echo(text)


@dataclass(frozen=True)
class Invocation:
    """What the process hands every command (click's context object): the clock. The entry point passes the
    system clock; tests pass their own, so nothing a command records depends on the day it runs."""

    clock: Clock = time.time


def invocation_clock() -> Clock:
    """The clock of the command being run (the system clock outside a click context)."""
    ctx = click.get_current_context(silent=True)
    invocation = ctx.find_object(Invocation) if ctx is not None else None
    return invocation.clock if invocation is not None else time.time


def _json_requested() -> bool:
    """True when the command being run was given `--format json`."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.params.get("output_format") == "json"


def echo_json_error(sentence: str, exit_code: int = EXIT_CONFIG) -> None:
    """With `--format json`: {"error": sentence, "exit_code"} on stdout (the sentence itself goes to stderr)."""
    if _json_requested():
        click.echo(json.dumps({"error": sentence, "exit_code": exit_code}, indent=2))


def _fail(sentence: str) -> NoReturn:
    """`sentence` on stderr (and, with `--format json`, as {"error", "exit_code"} on stdout), exit 2."""
    click.echo(escape_control(sentence), err=True)
    echo_json_error(sentence)
    sys.exit(EXIT_CONFIG)


def fail_config(message: str) -> NoReturn:
    """One sentence on stderr (with `--format json` also a JSON object on stdout), exit 2."""
    _fail(f"configuration error: {message}")


def fail_usage(message: str) -> NoReturn:
    """A usage error (a selector that matches nothing, ...): one sentence on stderr, exit 2 (JSON as above)."""
    _fail(f"usage error: {message}")
#: the checkout's folder (where data_preparation.py is); None for an installed package
_REPO = Path(__file__).resolve().parents[2]
REPO_FOLDER: Path | None = _REPO if (_REPO / "data_preparation.py").is_file() else None


def find_env_file(environ: dict[str, str], cwd: Path) -> Path | None:
    """The settings file to read when `--env-file` is not given, independent of the folder a command runs in.

    In order: `TUTTLE_ENV_FILE` (it must exist: exit 2 otherwise), `./.env` of `cwd`, then `.env` in the
    checkout's folder (beside data_preparation.py), so `status` from `$HOME` reads the host's settings.
    """
    named = environ.get("TUTTLE_ENV_FILE", "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            fail_config(f"TUTTLE_ENV_FILE={named} does not exist")
        return path
    for folder in (cwd, REPO_FOLDER):
        if folder is not None and (folder / ".env").is_file():
            return folder / ".env"
    return None


def load_settings() -> Settings:
    """Settings from the environment, or exit 2 with one sentence."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail_config(str(exc))


def open_bucket(settings: Settings, workers: int) -> S3Bucket:
    """A client sized to `workers`, after checking the bucket (exit 2 with one sentence if it is unusable)."""
    from ..edges import aws
    from ..edges.s3_bucket import S3Bucket

    session = aws.new_session()
    client = aws.make_client("s3", max_pool=workers, session=session)
    try:
        aws.check_bucket(client, settings.bucket, settings.manifests_prefix)
    except ConfigError as exc:
        fail_config(str(exc))
    return S3Bucket(client, settings.bucket, workers, session=session)


def key_layout(settings: Settings) -> KeyLayout:
    """Where the settings put the source frames and the dataset folders."""
    from ..core.plan import KeyLayout

    return KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))


def make_folder(path: Path, option: str) -> None:
    """Create a local folder an option names, or exit 2 naming the option."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail_config(f"cannot create {option} {path}: {exc.strerror or exc}")


def _codes(pattern: re.Pattern[str], example: str) -> Callable[..., tuple[str, ...]]:
    def check(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if not pattern.match(value.strip()):
                raise click.BadParameter(f"'{value}' is not like {example}")
        return tuple(v.strip().upper() for v in values)

    return check


#: what every `--format` offers: lines for people (the default) or one JSON object for machines
FORMATS = ("text", "json")


def format_option(help: str) -> Any:
    """`--format text|json` into `output_format` (default text); `help` says what each gives for the command."""
    return click.option(
        "--format", "output_format", type=click.Choice(FORMATS), default="text", show_default=True, help=help
    )


def season_option(command: Any) -> Any:
    """`--season S01` (repeatable), validated and upper-cased into `seasons`."""
    return click.option(
        "--season",
        "seasons",
        multiple=True,
        metavar="S01",
        callback=_codes(_SEASON, "S01"),
        help="Only this season (repeatable).",
    )(command)


def episode_option(command: Any) -> Any:
    """`--episode S01E01` (repeatable), validated and upper-cased into `episodes`."""
    return click.option(
        "--episode",
        "episodes",
        multiple=True,
        metavar="S01E01",
        callback=_codes(_EPISODE, "S01E01"),
        help="Only this episode (repeatable).",
    )(command)


def _leak_seconds(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        seconds = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a list of seconds like 1,5,30") from None
    if not seconds or any(not 0 <= s <= 86_400 for s in seconds):
        raise click.BadParameter(f"'{value}' must name seconds between 0 and 86400, like 1,5,30")
    return tuple(sorted(set(seconds)))


def leak_seconds_option(command: Any) -> Any:
    """`--leak-seconds 1,5,30`: the leakage thresholds, parsed into `leak_seconds`."""
    return click.option(
        "--leak-seconds",
        "leak_seconds",
        default="1,5,30",
        show_default=True,
        metavar="S,S,...",
        callback=_leak_seconds,
        help="Leakage thresholds: the share of validate/test frames with a train frame of the same episode "
        "within each of these many seconds.",
    )(command)
