"""`manifests validate | push | list`: check, publish and show the season manifests.

* validate: every `*-episodes.json` of a local folder: JSON, required keys, codes, duplicates across
  files, sheet link forms; optionally (`check_sheets`) open every sheet and check its header row.
* push: validate, then upload to `s3://<bucket>/<TUTTLE_MANIFESTS_PREFIX><file name>` only the files
  whose bytes differ from what is in S3; nothing is uploaded if any file has an error.
* list: what is in S3: each manifest file with its season, episodes and sheet titles.

Problems are collected, not raised: errors (exit 1) and warnings (reported, exit 0).
Configuration problems (no bucket, no credentials, no key file) raise `ConfigError` (exit 2).
Exit status: 0 clean (warnings allowed), 1 problems found, 2 usage or configuration error.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from ..core.frame_table import build_frame_table
from ..core.manifests import (
    LOCATION_KEYS,
    MANIFEST_SUFFIX,
    NEAR_MANIFEST,
    Episode,
    collect_episodes,
    select_manifest_keys,
)
from ..core.run_report import EXIT_ERRORS, EXIT_OK
from ..core.sheets import SheetReader, SheetSource, is_google_location, location_kind, sheet_location_problem
from ..core.text import counted, escape_control
from ..edges import aws
from ..edges.csv_sheets import CsvFileSource, CsvS3Source, local_path_exists
from ..edges.google_sheets import GoogleSheetSource, header_problems, is_sheet_key, location_problem, spreadsheet_key
from ..errors import ConfigError, InventoryError, SheetError, TuttlePrepError
from ..settings import Settings, local_sheets_dir_from_env
from .common import fail_config, format_option, quiet

KNOWN_KEYS = ("season_code", "episode_code", "google_spreadsheet_title", *LOCATION_KEYS)
_SEASON_FILE = re.compile(rf"^(S[0-9]{{2}}){re.escape(MANIFEST_SUFFIX)}\Z")
SHEET_THREADS = 8


@dataclass
class Findings:
    """What validation found: the files and episodes read, and every error and warning."""

    files: list[str] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: one line per sheet opened by check_sheets (rows, classified frames)
    sheets: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# -------------------------------------------------------------------------------------- validation
def read_directory(directory: Path) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The folder's `*-episodes.json` files as (name, bytes), and a warning per look-alike file it ignores."""
    if not directory.is_dir():
        raise ConfigError(f"manifests folder {directory} does not exist")
    files: list[tuple[str, bytes]] = []
    ignored: list[str] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        if path.name.endswith(MANIFEST_SUFFIX):
            try:
                files.append((path.name, path.read_bytes()))
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        elif NEAR_MANIFEST.search(path.name):
            ignored.append(f"{path.name}: ignored, the name does not end in '{MANIFEST_SUFFIX}'")
    return files, ignored


def validate_files(
    files: Sequence[tuple[str, bytes | str]], path_exists: Callable[[str], bool] | None = None
) -> Findings:
    """Check manifest files (name, content): everything `collect_episodes` checks, plus link forms and names.

    `path_exists` answers whether a local sheet path exists (default: `local_path_exists(None)`, which looks at
    no file); the commands pass `local_path_exists(settings.local_sheets_dir)`."""
    path_exists = path_exists or local_path_exists(None)
    manifests = collect_episodes(files, path_exists)
    found = Findings(files=list(manifests.files), episodes=list(manifests.episodes), errors=list(manifests.errors))
    for name, data in files:
        try:
            items = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # already reported by collect_episodes
        if not isinstance(items, list):
            continue
        if not items:
            found.warnings.append(f"{name}: lists no episodes")
        season_of_file = _SEASON_FILE.match(name.rsplit("/", 1)[-1])
        for index, item in enumerate(items):
            if isinstance(item, dict):
                _check_item(found, name, index, item, season_of_file.group(1) if season_of_file else None, path_exists)
    _check_shared_sheets(found)
    return found


def _check_item(
    found: Findings,
    name: str,
    index: int,
    item: dict[str, Any],
    file_season: str | None,
    path_exists: Callable[[str], bool],
) -> None:
    season = str(item.get("season_code") or "").strip().upper()
    episode_id = season + str(item.get("episode_code") or "").strip().upper()
    where = f"{name}: episode {episode_id or '#' + str(index + 1)}"
    for unknown in sorted(set(item) - set(KNOWN_KEYS)):
        found.warnings.append(f"{where}: unknown key '{unknown}' is ignored (known keys: {', '.join(KNOWN_KEYS)})")
    if file_season and season and season != file_season:
        found.warnings.append(f"{where}: season_code '{season}' in a file named for season {file_season}")
    chosen = next((k for k in LOCATION_KEYS if str(item.get(k) or "").strip()), None)
    keys: dict[str, str] = {}
    for location_key in LOCATION_KEYS:
        value = item.get(location_key)
        if value is None or not str(value).strip():
            continue
        if not isinstance(value, str):
            found.errors.append(f"{where}: {location_key} must be a text, found a {type(value).__name__}")
            continue
        value = value.strip()
        if is_sheet_key(value):
            found.warnings.append(
                f"{where}: {location_key} is a bare spreadsheet id; write the sheet's share link instead "
                "(https://docs.google.com/spreadsheets/d/<id>/edit?usp=sharing)"
            )
            keys[location_key] = value
        elif is_google_location(value):
            problem = location_problem(value)
            if problem:
                found.errors.append(f"{where}: {location_key} '{value}' is {problem}")
            else:
                keys[location_key] = spreadsheet_key(value)
        # the chosen link was checked on parsing
        elif location_key != chosen and (problem := sheet_location_problem(value, path_exists)):
            found.errors.append(f"{where}: {location_key} '{value}' is {problem}")
    if len(set(keys.values())) > 1:
        found.errors.append(
            f"{where}: {LOCATION_KEYS[0]} and {LOCATION_KEYS[1]} point at different spreadsheets "
            f"({keys[LOCATION_KEYS[0]]} and {keys[LOCATION_KEYS[1]]}); the sync uses {LOCATION_KEYS[0]}"
        )


def _google_key(location: str) -> str | None:
    """The spreadsheet id of a usable Google location (link or bare id), else None."""
    if is_sheet_key(location) or (is_google_location(location) and not location_problem(location)):
        return spreadsheet_key(location)
    return None


def _check_shared_sheets(found: Findings) -> None:
    """Two episodes on one spreadsheet is almost always a copy-and-paste slip."""
    by_key: dict[str, list[str]] = {}
    for episode in found.episodes:
        key = _google_key(episode.sheet_location)
        if key:
            by_key.setdefault(key, []).append(episode.episode_id)
    for key, episode_ids in by_key.items():
        if len(episode_ids) > 1:
            found.warnings.append(f"episodes {', '.join(episode_ids)} link the same spreadsheet ({key})")


# ------------------------------------------------------------------------------------ sheet checks
def sheet_reader(settings: Settings, episodes: Sequence[Episode], client: Any = None) -> SheetReader:
    """Sources for these episodes' sheets: Google (ConfigError without a usable key), S3 and local CSV."""
    sources: list[SheetSource] = [CsvFileSource(settings.local_sheets_dir)]
    if any(location_kind(e.sheet_location) == "s3" for e in episodes):
        client = client or s3_client()

        def fetch(bucket: str, key: str) -> bytes:
            try:
                return client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except (ClientError, BotoCoreError) as exc:
                raise SheetError(f"s3://{bucket}/{key}: cannot read ({aws.describe(exc)})") from None

        sources.append(CsvS3Source(fetch))
    if any(_google_key(e.sheet_location) or is_google_location(e.sheet_location) for e in episodes):
        sources.insert(0, GoogleSheetSource.from_settings(settings))
    return SheetReader(sources)


def check_sheets(
    found: Findings,
    reader: SheetReader,
    episodes: Sequence[Episode] | None = None,
    optional_columns: Sequence[str] = (),
) -> None:
    """Open every episode's sheet (or those of `episodes`, a few at a time) and check its header; add
    errors/warnings to `found`.

    `optional_columns` are the rarity columns a sheet may lack (TUTTLE_SHEET_OPTIONAL_COLUMNS), as in sync."""

    def check(episode: Episode) -> tuple[Episode, pd.DataFrame | SheetError]:
        try:
            return episode, _read(reader, episode)
        except SheetError as exc:
            return episode, exc

    with ThreadPoolExecutor(max_workers=SHEET_THREADS, thread_name_prefix="check-sheet") as pool:
        for episode, outcome in pool.map(check, found.episodes if episodes is None else episodes):
            where = f"{episode.manifest}: episode {episode.episode_id}"
            if isinstance(outcome, SheetError):
                found.errors.append(f"{where}: {outcome}")
                continue
            _check_table(found, episode, outcome, where, optional_columns)


def _read(reader: SheetReader, episode: Episode) -> pd.DataFrame:
    source = next((s for s in reader.sources if s.can_read(episode.sheet_location)), None)
    if source is not None and "episode_id" in inspect.signature(source.read).parameters:
        return source.read(episode.sheet_location, title=episode.title, episode_id=episode.episode_id)
    return reader.read(episode.sheet_location)


def _check_table(
    found: Findings, episode: Episode, table: pd.DataFrame, where: str, optional_columns: Sequence[str] = ()
) -> None:
    problems = header_problems(list(table.columns))
    found.errors.extend(f"{where}: {problem}" for problem in problems)
    real_title = str(table.attrs.get("sheet_title", ""))
    if real_title and episode.title and " ".join(real_title.split()) != " ".join(episode.title.split()):
        found.warnings.append(
            f"{where}: the sheet is titled '{real_title}' but google_spreadsheet_title says '{episode.title}' "
            "(is the link right?)"
        )
    if problems:
        return
    try:
        frames = build_frame_table(table, episode.episode_id, f"{episode.episode_id} sheet", optional_columns)
    except SheetError as exc:  # a header that looks like a renamed rarity column: sync would skip the episode
        found.errors.append(f"{where}: {exc}")
        return
    found.warnings.extend(f"{where}: {note}" for note in frames.notes)
    rejected = frames.rejections
    found.sheets.append(
        f"{episode.episode_id}: {len(table):,} rows, {len(frames.frames):,} classified frames, "
        f"{frames.unclassified:,} unclassified, {len(rejected):,} rejected"
    )
    if len(rejected):
        examples = "; ".join(
            f"row {r.row} {r.column}: {r.value!r} {r.reason}" for r in rejected.head(3).itertuples(index=False)
        )
        more = f" (and {len(rejected) - 3:,} more)" if len(rejected) > 3 else ""
        found.warnings.append(f"{where}: sync would reject {len(rejected):,} rows, e.g. {examples}{more}")
    if frames.frames.empty:
        found.warnings.append(f"{where}: the sheet has no classified frames (sync skips it)")


def validate_directory(
    directory: Path, *, settings: Settings | None = None, check_sheets_too: bool = False
) -> tuple[Findings, list[tuple[str, bytes]]]:
    """Validate a local folder (and, with `check_sheets_too`, every sheet); return findings and the files."""
    files, ignored = read_directory(directory)
    local_dir = settings.local_sheets_dir if settings is not None else local_sheets_dir_from_env()
    found = validate_files(files, local_path_exists(local_dir))
    found.warnings[:0] = ignored
    if not files:
        found.errors.append(f"no manifest files (*{MANIFEST_SUFFIX}) in {directory}")
    if check_sheets_too and found.episodes:
        settings = settings or Settings.from_env()
        check_sheets(found, sheet_reader(settings, found.episodes), optional_columns=settings.sheet_optional_columns)
    return found, files


# ------------------------------------------------------------------------------------------ S3 side
def s3_client() -> Any:
    """The S3 client (honours AWS_ENDPOINT_URL, like the sync)."""
    return aws.make_client("s3")


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclass
class PushResult:
    """What `push` did (or, in a dry run, would do) for each local file."""

    findings: Findings
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: full keys of manifests in S3 with no local file (left alone, or deleted with --delete-missing)
    only_in_s3: list[str] = field(default_factory=list)
    #: full keys deleted (or, in a dry run, to delete) by --delete-missing
    deleted: list[str] = field(default_factory=list)
    #: (full key, why) of look-alike files under the prefix that the sync does not read
    ignored: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False
    delete_missing: bool = False

    @property
    def ok(self) -> bool:
        return self.findings.ok and not self.errors


def _remote_matches(client: Any, bucket: str, key: str, data: bytes) -> bool | None:
    """True if the object holds exactly `data`, False if it differs, None if there is no object."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    if head.get("ContentLength") != len(data):
        return False
    if head.get("ETag", "").strip('"') == md5_hex(data):
        return True
    # same size, ETag is not a plain MD5 (multipart upload, SSE-KMS): compare the bytes (manifests are small)
    return client.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def _live_after_push(
    client: Any, settings: Settings, files: list[tuple[str, bytes]], staying: list[RemoteManifest]
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The manifests live after the push, in the order the sync reads them (by key): the local files (by their
    name) and the S3 files that stay (by s3://bucket/key); plus an error per S3 file that cannot be read."""
    live: list[tuple[str, str, bytes]] = [(name, name, data) for name, data in files]
    errors: list[str] = []
    for manifest in staying:
        where = f"s3://{settings.bucket}/{manifest.key}"
        try:
            data = client.get_object(Bucket=settings.bucket, Key=manifest.key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            errors.append(f"{where}: cannot read ({aws.describe(exc)}), so the manifests after the push are unknown")
            continue
        live.append((manifest.name, where, data))
    return [(where, data) for _, where, data in sorted(live, key=lambda item: item[0])], errors


def push(
    directory: Path,
    settings: Settings,
    *,
    dry_run: bool = False,
    check_sheets_too: bool = False,
    delete_missing: bool = False,
    client: Any = None,
) -> PushResult:
    """Validate the manifests that will be live after the push, then upload the local files that differ from S3.

    The live set is the local files plus the manifests in S3 without a local file (unless `delete_missing`
    deletes those): an episode in two of them (a file renamed locally, the old name still in S3) is an error
    naming both. Nothing is uploaded or deleted if there is any error; deletes run after every upload succeeded.
    """
    files, ignored_locally = read_directory(directory)
    client = client or s3_client()
    aws.check_bucket(client, settings.bucket, settings.manifests_prefix)
    prefix = settings.manifests_prefix
    listing = _list_manifests(client, settings)
    local = {name for name, _ in files}
    only_in_s3 = [m for m in listing.manifests if m.name not in local]
    live, read_errors = _live_after_push(client, settings, files, [] if delete_missing else only_in_s3)
    findings = validate_files(live, local_path_exists(settings.local_sheets_dir))
    findings.warnings[:0] = ignored_locally
    findings.errors[:0] = read_errors
    if not files:
        findings.errors.append(f"no manifest files (*{MANIFEST_SUFFIX}) in {directory}")
    local_episodes = [e for e in findings.episodes if e.manifest in local]
    if check_sheets_too and local_episodes:
        check_sheets(findings, sheet_reader(settings, local_episodes), local_episodes, settings.sheet_optional_columns)
    result = PushResult(
        findings=findings,
        dry_run=dry_run,
        delete_missing=delete_missing,
        only_in_s3=[m.key for m in only_in_s3],
        ignored=listing.ignored,
    )
    if not findings.ok:
        return result
    for name, data in files:
        key = prefix + name
        try:
            if _remote_matches(client, settings.bucket, key, data):
                result.unchanged.append(name)
                continue
            if not dry_run:
                client.put_object(
                    Bucket=settings.bucket,
                    Key=key,
                    Body=data,
                    ContentType="application/json",
                    ContentMD5=base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode(),
                )
            result.uploaded.append(name)
        except (ClientError, BotoCoreError) as exc:
            result.errors.append(f"s3://{settings.bucket}/{key}: upload failed ({aws.describe(exc)})")
    if delete_missing and not result.errors:
        for manifest in only_in_s3:
            try:
                if not dry_run:
                    client.delete_object(Bucket=settings.bucket, Key=manifest.key)
                result.deleted.append(manifest.key)
            except (ClientError, BotoCoreError) as exc:
                result.errors.append(f"s3://{settings.bucket}/{manifest.key}: delete failed ({aws.describe(exc)})")
    return result


@dataclass
class RemoteManifest:
    """One manifest file in S3 and what it holds."""

    key: str
    last_modified: datetime | None
    episodes: list[Episode] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass
class RemoteListing:
    """The live manifests in S3 (directly under the prefix) and the look-alikes that are not read."""

    manifests: list[RemoteManifest] = field(default_factory=list)
    #: (full key, why it is not read)
    ignored: list[tuple[str, str]] = field(default_factory=list)


def _list_manifests(client: Any, settings: Settings) -> RemoteListing:
    """The `*-episodes.json` directly under the manifests prefix (and what is left out); InventoryError on failure."""
    modified: dict[str, datetime | None] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.bucket, Prefix=settings.manifests_prefix
        ):
            for obj in page.get("Contents", ()):
                modified[obj["Key"]] = obj.get("LastModified")
    except (ClientError, BotoCoreError) as exc:
        raise InventoryError(
            f"listing s3://{settings.bucket}/{settings.manifests_prefix} failed: {aws.describe(exc)}"
        ) from None
    selected, ignored = select_manifest_keys(modified, settings.manifests_prefix)
    return RemoteListing([RemoteManifest(key, modified[key]) for key in selected], ignored)


def list_remote(settings: Settings, *, client: Any = None) -> RemoteListing:
    """Every live manifest in S3 with its episodes; episodes repeated across files are reported as errors.

    Messages name each file by its full key (s3://bucket/key)."""
    client = client or s3_client()
    aws.check_bucket(client, settings.bucket, settings.manifests_prefix)
    listing = _list_manifests(client, settings)
    contents: list[tuple[str, bytes]] = []
    by_where: dict[str, RemoteManifest] = {}
    for manifest in listing.manifests:
        where = f"s3://{settings.bucket}/{manifest.key}"
        by_where[where] = manifest
        try:
            contents.append((where, client.get_object(Bucket=settings.bucket, Key=manifest.key)["Body"].read()))
        except (ClientError, BotoCoreError) as exc:
            manifest.errors.append(f"{where}: cannot read ({aws.describe(exc)})")
    collected = collect_episodes(contents, local_path_exists(settings.local_sheets_dir))
    for episode in collected.episodes:
        by_where[episode.manifest].episodes.append(episode)
    for message in collected.errors:
        # every message starts with the file it is about
        owner = next((m for w, m in by_where.items() if message.startswith(w + ":")), listing.manifests[0])
        owner.errors.append(message)
    return listing


# ---- the click commands ------------------------------------------------------------------------

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
            fail_config(str(exc))
        except TuttlePrepError as exc:
            _echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERRORS)

    return wrapper  # type: ignore[return-value]


def _echo(text: str, err: bool = False) -> None:
    """`click.echo` of one line whose manifest, sheet or key text has its control characters escaped."""
    click.echo(escape_control(text), err=err)


def _echo_detail(text: str) -> None:
    """`_echo` unless -q was given (only the final line then)."""
    if not quiet():
        _echo(text)


def _print_findings(findings: Findings) -> None:
    for line in findings.sheets:
        _echo_detail(f"  sheet  {line}")
    for message in findings.warnings:
        _echo_detail(f"warning: {message}")
    for message in findings.errors:  # under -q on stderr: stdout keeps the final line only
        _echo(f"ERROR: {message}", err=quiet())


def _summary(findings: Findings) -> str:
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
def validate_command(directory: Path, check_sheets: bool) -> None:
    """Check the manifest files in DIR (default: manifests/).

    Checks that each file is a JSON list, that every episode has its keys, that season and episode
    codes look like S01 and E01, that no episode is listed twice (across all files) and that sheet
    links are share links of Google spreadsheets, s3:// or file:// URLs, or local paths of CSV exports
    (a local path must exist or end in .csv: a bare word like TODO, or a Google link without https://,
    is an error). With --check-sheets also opens every sheet and checks its header (FRAME NUMBER and a
    rarity column, none named twice) and that its title matches the manifest.
    """
    settings = Settings.from_env() if check_sheets else None
    findings, _ = validate_directory(directory, settings=settings, check_sheets_too=check_sheets)
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
def push_command(directory: Path, check_sheets: bool, dry_run: bool, delete_missing: bool) -> None:
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
    result = push(
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
        _echo_detail(f"{verb}  {name} -> {settings.manifests_prefix}{name}")
    for name in result.unchanged:
        _echo_detail(f"unchanged  {name}")
    for key in result.only_in_s3:
        if key in result.deleted:
            _echo_detail(f"{'would delete' if dry_run else 'deleted'} (only in S3)  {key}")
        elif not delete_missing:
            _echo_detail(f"only in S3 (left alone; --delete-missing deletes it)  {key}")
    for key, why in result.ignored:
        _echo_detail(f"ignored  {key}: {why}")
    for message in result.errors:
        _echo(f"ERROR: {message}", err=quiet())
    deleted = f", {len(result.deleted)} {'would delete' if dry_run else 'deleted'}" if delete_missing else ""
    click.echo(
        f"{target}: {len(result.uploaded)} {verb}, {len(result.unchanged)} unchanged{deleted}"
        + (f", {len(result.errors)} failed" if result.errors else "")
    )
    sys.exit(EXIT_OK if result.ok else EXIT_ERRORS)


@manifests.command("list", short_help="Show the manifests in S3: seasons, episodes, sheet titles.")
@format_option(
    "Lines for people, or one JSON object (manifests, their episodes and errors, ignored keys) for machines."
)
@_exit_codes
def list_command(output_format: str) -> None:
    """Show the manifests in S3: each file's season, episodes and sheet titles.

    Only the *-episodes.json files directly under TUTTLE_MANIFESTS_PREFIX are read (as by the sync);
    look-alike files (in subfolders, or with another name) are listed as ignored.
    """
    settings = Settings.from_env()
    listing = list_remote(settings)
    remote = listing.manifests
    target = f"s3://{settings.bucket}/{settings.manifests_prefix}"
    problems = sum(len(m.errors) for m in remote)
    if output_format == "json":
        record = {
            "prefix": target,
            "manifests": [
                {
                    "key": m.key,
                    "url": f"s3://{settings.bucket}/{m.key}",
                    "last_modified": m.last_modified.isoformat() if m.last_modified else None,
                    "seasons": sorted({e.season_code for e in m.episodes}),
                    "episodes": [
                        {"episode_id": e.episode_id, "title": e.title, "sheet": e.sheet_location} for e in m.episodes
                    ],
                    "errors": list(m.errors),
                }
                for m in remote
            ],
            "ignored": [{"key": key, "why": why} for key, why in listing.ignored],
            "errors": problems,
        }
        click.echo(json.dumps(record, indent=2))
        sys.exit(EXIT_ERRORS if problems or not remote else EXIT_OK)
    for key, why in listing.ignored:
        _echo_detail(f"ignored  {key}: {why}")
    if not remote:
        _echo(f"{target}: no manifest files (*{MANIFEST_SUFFIX})")
        sys.exit(EXIT_ERRORS)
    _echo_detail(target)
    for manifest in remote:
        seasons = ", ".join(sorted({e.season_code for e in manifest.episodes})) or "?"
        when = f", updated {manifest.last_modified:%Y-%m-%d %H:%M %Z}".rstrip() if manifest.last_modified else ""
        count = len(manifest.episodes)
        _echo_detail(f"{manifest.key}  season {seasons}: {count} episode{'s' * (count != 1)}{when}")
        for episode in manifest.episodes:
            _echo_detail(f"  {episode.episode_id}  {episode.title or '(no google_spreadsheet_title)'}")
        for message in manifest.errors:
            _echo(f"  ERROR: {message}", err=quiet())
    episodes = sum(len(m.episodes) for m in remote)
    _echo(
        f"{counted(len(remote), 'manifest file')}, {counted(episodes, 'episode')}"
        + (f", {problems} error(s)" if problems else "")
    )
    sys.exit(EXIT_ERRORS if problems else EXIT_OK)
