"""The command line: parse, wire, print. Exit codes: 0 clean, 1 errors or refused, 2 usage/config error."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
from dotenv import load_dotenv

from .cli_common import episode_option, fail_config, season_option
from .cloudwatch import log_group_from_env, observed_run
from .errors import ConfigError, RunStopped
from .job import DeleteLimit, SyncOptions, build_context, run_sync
from .report import RunReport
from .settings import Settings

log = logging.getLogger("tuttle_prep")


def stop_on_signal(signum: int, frame: object) -> None:
    """The SIGTERM handler: unwind like Ctrl-C would, so the run lock is released and the run is recorded as
    failed with exit code 128 + signal (what the process returns); copies under way finish, no delete starts."""
    raise RunStopped(signum)


def setup_logging(verbose: int) -> None:
    """Readable lines on stderr; botocore and urllib3 kept quiet."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_tuttle", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
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
def main(env_file: Path | None, verbose: int, quiet: bool) -> None:
    """Keep the Tuttle Twins rarity datasets in S3 in sync with the episode sheets.

    Reads the season manifests in S3, each episode's sheet, picks each frame's most trusted rarity,
    gives every frame a stable train/validate/test dataset and brings the dataset folders in line.
    Settings come from the environment and .env (see .env.example).
    """
    if env_file is not None:
        if not env_file.is_file():
            fail_config(f"--env-file {env_file} does not exist")
        load_dotenv(env_file, override=False)
    elif Path(".env").is_file():
        load_dotenv(Path(".env"), override=False)
    setup_logging(-1 if quiet else verbose)


@main.command()
@click.option("--dry-run", is_flag=True, help="Read, list and plan; print what would change; change nothing.")
@season_option
@episode_option
@click.option(
    "--plan-out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write every decision to this CSV: action,episode_id,frame,src_key,dst_key.",
)
@click.option(
    "--workers", type=click.IntRange(1, 512), default=32, show_default=True, metavar="N", help="Parallel S3 requests."
)
@click.option(
    "--max-delete",
    metavar="N|P%",
    help="Refuse plain deletes above N files or P% of the planned episodes' dataset files "
    "[default: refuse above 10% when more than 100].",
)
@click.option("--force", is_flag=True, help="Apply the plain deletes even above --max-delete.")
@click.option("--allow-empty", is_flag=True, help="Sync an episode whose sheet has no classified frames (empties it).")
@click.option("--prune-orphans", is_flag=True, help="Delete dataset files of episodes that are in no manifest.")
def sync(
    dry_run: bool,
    seasons: tuple[str, ...],
    episodes: tuple[str, ...],
    plan_out: Path | None,
    workers: int,
    max_delete: str | None,
    force: bool,
    allow_empty: bool,
    prune_orphans: bool,
) -> None:
    """Bring the dataset folders in line with the sheets.

    Copies run in parallel on the server side; deletes run last, in batches of 1,000, and only when
    every copy succeeded. Exit status: 0 clean, 1 finished with errors (skipped episodes, rejected
    rows, missing sources, failed operations, refused deletes), 2 usage or configuration error.
    """
    try:
        limit = DeleteLimit.parse(max_delete)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-delete") from None
    options = SyncOptions(
        dry_run=dry_run,
        seasons=seasons,
        episodes=episodes,
        plan_out=plan_out,
        workers=workers,
        max_delete=limit,
        force=force,
        allow_empty=allow_empty,
        prune_orphans=prune_orphans,
    )
    report = RunReport(dry_run=dry_run)
    # invalid settings are reported inside: a real run's exit 2 must reach the logs and RunFailed too
    with observed_run(report, log_group_from_env(os.environ), publish_metrics=not dry_run):
        try:
            settings = Settings.from_env()
            report.seed_fingerprint = settings.seed_fingerprint
            run_sync(settings, options, build_context(settings, options, report.run_id), report)
        except ConfigError as exc:
            report.config_error = str(exc)
        exit_code = print_report(report)
    sys.exit(exit_code)


def print_report(report: RunReport) -> int:
    """Print the table, the problems and the outcome; return the exit code."""
    import time

    report.finished = report.finished or time.time()
    if report.config_error:
        click.echo(f"configuration error: {report.config_error}", err=True)
        return report.exit_code
    click.echo(report.table())
    for message in report.warnings:
        log.warning(message)
    for message in report.errors:
        log.error(message)
    if report.refused:
        log.error(report.refused)
    if report.seed_fingerprint:
        click.echo(f"split seed fingerprint {report.seed_fingerprint} (sha256 of TUTTLE_SPLIT_SEED)")
    click.echo(report.outcome_line())
    return report.exit_code


@main.command()
@click.option("--keep", is_flag=True, help="Keep the embedded S3 running until Ctrl-C to look around.")
def demo(keep: bool) -> None:
    """Run the whole job on an embedded S3 (moto server on 127.0.0.1): no accounts, no network.

    Uploads a small synthetic season (real jpg frames, CSV sheets, a manifest), runs `sync`, edits a
    few sheet rows, runs `sync` again to show the incremental plan.
    """
    from .demo import run_demo

    sys.exit(run_demo(keep=keep))


from .cli_alarm import alarm  # noqa: E402

main.add_command(alarm)

from .cli_data import pull_command, report_command  # noqa: E402

main.add_command(report_command)
main.add_command(pull_command)

from .cli_manifests import manifests  # noqa: E402

main.add_command(manifests)
