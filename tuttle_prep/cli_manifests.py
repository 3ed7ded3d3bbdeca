"""`data_preparation.py manifests validate | push | list`: check, publish and show the season manifests.

Exit status: 0 clean (warnings allowed), 1 problems found, 2 usage or configuration error.
Registered on the main group by `cli.py` (`main.add_command(manifests)`), which loads `.env` first.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import manifest_tools
from .errors import ConfigError, TuttlePrepError
from .report import EXIT_CONFIG, EXIT_ERRORS, EXIT_OK
from .settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DIR = Path("manifests")

_directory = click.argument(
    "directory",
    required=False,
    default=DEFAULT_DIR,
    metavar="[DIR]",
    type=click.Path(file_okay=False, path_type=Path),
)
_check_sheets = click.option(
    "--check-sheets",
    is_flag=True,
    help="Also open every episode's sheet and check its header row (Google links need GOOGLE_DRIVE_CREDENTIALS_FILE).",
)


def _exit_codes(command: F) -> F:
    """ConfigError -> one sentence on stderr, exit 2; other expected errors -> one sentence, exit 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"configuration error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except TuttlePrepError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERRORS)

    return wrapper  # type: ignore[return-value]


def _print_findings(findings: manifest_tools.Findings) -> None:
    for line in findings.sheets:
        click.echo(f"  sheet  {line}")
    for message in findings.warnings:
        click.echo(f"warning: {message}")
    for message in findings.errors:
        click.echo(f"ERROR: {message}")


def _summary(findings: manifest_tools.Findings) -> str:
    files = len(findings.files)
    episodes = len(findings.episodes)
    text = f"{files} manifest file{'s' * (files != 1)}, {episodes} episode{'s' * (episodes != 1)}"
    if findings.errors:
        return f"{text}: {len(findings.errors)} error(s), {len(findings.warnings)} warning(s)"
    return f"{text}: OK" + (f" ({len(findings.warnings)} warning(s))" if findings.warnings else "")


@click.group("manifests", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def manifests() -> None:
    """Check, publish and list the season manifests (the *-episodes.json files).

    A manifest is a JSON list of episodes: season_code, episode_code, google_spreadsheet_title and the
    sheet's google_spreadsheet_share_link (or google_spreadsheet_url). Keep them in the repo's
    manifests/ folder, validate, then push: the nightly sync reads them from S3.
    """


@manifests.command("validate", short_help="Check the local manifest files: JSON, keys, duplicates, sheet links.")
@_directory
@_check_sheets
@_exit_codes
def validate(directory: Path, check_sheets: bool) -> None:
    """Check the manifest files in DIR (default: manifests/).

    Checks that each file is a JSON list, that every episode has its keys, that season and episode
    codes look like S01 and E01, that no episode is listed twice (across all files) and that sheet
    links are share links of Google spreadsheets, s3:// or file:// URLs, or local paths of CSV exports
    (a local path must exist or end in .csv: a bare word like TODO, or a Google link without https://,
    is an error). With --check-sheets also opens every sheet and checks its header (FRAME NUMBER and a
    rarity column, none named twice) and that its title matches the manifest.
    """
    settings = Settings.from_env() if check_sheets else None
    findings, _ = manifest_tools.validate_directory(directory, settings=settings, check_sheets_too=check_sheets)
    _print_findings(findings)
    click.echo(_summary(findings))
    sys.exit(EXIT_OK if findings.ok else EXIT_ERRORS)


@manifests.command("push", short_help="Validate the manifests live after the push, then upload the changed files.")
@_directory
@_check_sheets
@click.option("--dry-run", is_flag=True, help="Show which files would be uploaded (and deleted); change nothing.")
@click.option(
    "--delete-missing",
    is_flag=True,
    help="Also delete the manifests in S3 that have no file in DIR (e.g. the old name of a renamed file).",
)
@_exit_codes
def push(directory: Path, check_sheets: bool, dry_run: bool, delete_missing: bool) -> None:
    """Validate DIR (default: manifests/) with what stays in S3, then upload the files that changed.

    Files go to s3://TUTTLE_BUCKET/TUTTLE_MANIFESTS_PREFIX<file name>. What is checked is the set the
    sync will read after the push: the files of DIR plus the manifests already in S3 that have no file
    in DIR (unless --delete-missing deletes them). An episode in two files (a manifest renamed locally
    whose old name is still in S3) is an error naming both files. If there is any error, nothing is
    uploaded or deleted. A file whose content is already in S3 is not uploaded again. Without
    --delete-missing, manifests in S3 without a local file are listed and left alone; with it they are
    deleted after every upload succeeded. Files in subfolders of the prefix are never read by the sync,
    never checked and never deleted.
    """
    settings = Settings.from_env()
    result = manifest_tools.push(
        directory, settings, dry_run=dry_run, check_sheets_too=check_sheets, delete_missing=delete_missing
    )
    _print_findings(result.findings)
    if not result.findings.ok:
        click.echo(_summary(result.findings))
        if result.only_in_s3 and not delete_missing:
            click.echo(
                "these manifests stay live in S3 after the push: "
                + ", ".join(f"s3://{settings.bucket}/{key}" for key in result.only_in_s3)
                + "; if a file was renamed in DIR, push with --delete-missing to delete the old name"
            )
        click.echo("nothing uploaded: fix the errors above first")
        sys.exit(EXIT_ERRORS)
    target = f"s3://{settings.bucket}/{settings.manifests_prefix}"
    verb = "would upload" if dry_run else "uploaded"
    for name in result.uploaded:
        click.echo(f"{verb}  {name} -> {settings.manifests_prefix}{name}")
    for name in result.unchanged:
        click.echo(f"unchanged  {name}")
    for key in result.only_in_s3:
        if key in result.deleted:
            click.echo(f"{'would delete' if dry_run else 'deleted'} (only in S3)  {key}")
        elif not delete_missing:
            click.echo(f"only in S3 (left alone; --delete-missing deletes it)  {key}")
    for key, why in result.ignored:
        click.echo(f"ignored  {key}: {why}")
    for message in result.errors:
        click.echo(f"ERROR: {message}")
    deleted = f", {len(result.deleted)} {'would delete' if dry_run else 'deleted'}" if delete_missing else ""
    click.echo(
        f"{target}: {len(result.uploaded)} {verb}, {len(result.unchanged)} unchanged{deleted}"
        + (f", {len(result.errors)} failed" if result.errors else "")
    )
    sys.exit(EXIT_OK if result.ok else EXIT_ERRORS)


@manifests.command("list", short_help="Show the manifests in S3: seasons, episodes, sheet titles.")
@_exit_codes
def list_manifests() -> None:
    """Show the manifests in S3: each file's season, episodes and sheet titles.

    Only the *-episodes.json files directly under TUTTLE_MANIFESTS_PREFIX are read (as by the sync);
    look-alike files (in subfolders, or with another name) are listed as ignored.
    """
    settings = Settings.from_env()
    listing = manifest_tools.list_remote(settings)
    remote = listing.manifests
    target = f"s3://{settings.bucket}/{settings.manifests_prefix}"
    for key, why in listing.ignored:
        click.echo(f"ignored  {key}: {why}")
    if not remote:
        click.echo(f"{target}: no manifest files (*{manifest_tools.MANIFEST_SUFFIX})")
        sys.exit(EXIT_ERRORS)
    click.echo(target)
    problems = 0
    for manifest in remote:
        seasons = ", ".join(sorted({e.season_code for e in manifest.episodes})) or "?"
        when = f", updated {manifest.last_modified:%Y-%m-%d %H:%M %Z}".rstrip() if manifest.last_modified else ""
        count = len(manifest.episodes)
        click.echo(f"{manifest.key}  season {seasons}: {count} episode{'s' * (count != 1)}{when}")
        for episode in manifest.episodes:
            click.echo(f"  {episode.episode_id}  {episode.title or '(no google_spreadsheet_title)'}")
        for message in manifest.errors:
            click.echo(f"  ERROR: {message}")
        problems += len(manifest.errors)
    episodes = sum(len(m.episodes) for m in remote)
    click.echo(f"{len(remote)} manifest files, {episodes} episodes" + (f", {problems} error(s)" if problems else ""))
    sys.exit(EXIT_ERRORS if problems else EXIT_OK)
