"""Checking, publishing and listing season manifests (`manifests validate | push | list`).

* validate: every `*-episodes.json` of a local folder: JSON, required keys, codes, duplicates across
  files, sheet link forms; optionally (`check_sheets`) open every sheet and check its header row.
* push: validate, then upload to `s3://<bucket>/<TUTTLE_MANIFESTS_PREFIX><file name>` only the files
  whose bytes differ from what is in S3; nothing is uploaded if any file has an error.
* list: what is in S3: each manifest file with its season, episodes and sheet titles.

Problems are collected, not raised: errors (exit 1) and warnings (reported, exit 0).
Configuration problems (no bucket, no credentials, no key file) raise `ConfigError` (exit 2).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .errors import ConfigError, InventoryError, SheetError
from .frame_table import build_frame_table
from .google_sheets import GoogleSheetSource, header_problems, is_sheet_key, location_problem, spreadsheet_key
from .manifests import LOCATION_KEYS, MANIFEST_SUFFIX, Episode, collect_episodes
from .settings import Settings
from .sheets import CsvFileSource, CsvS3Source, SheetReader, SheetSource, is_google_location, location_kind

KNOWN_KEYS = ("season_code", "episode_code", "google_spreadsheet_title", *LOCATION_KEYS)
_NEAR_MANIFEST = re.compile(r"episodes?\.json$", re.IGNORECASE)
_SEASON_FILE = re.compile(rf"^(S\d{{2}}){re.escape(MANIFEST_SUFFIX)}$")
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
        elif _NEAR_MANIFEST.search(path.name):
            ignored.append(f"{path.name}: ignored, the name does not end in '{MANIFEST_SUFFIX}'")
    return files, ignored


def validate_files(files: Sequence[tuple[str, bytes | str]]) -> Findings:
    """Check manifest files (name, content): everything `collect_episodes` checks, plus link forms and names."""
    manifests = collect_episodes(files)
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
        season_of_file = _SEASON_FILE.match(name)
        for index, item in enumerate(items):
            if isinstance(item, dict):
                _check_item(found, name, index, item, season_of_file.group(1) if season_of_file else None)
    _check_shared_sheets(found)
    return found


def _check_item(found: Findings, name: str, index: int, item: dict[str, Any], file_season: str | None) -> None:
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
        elif location_kind(value) is None and location_key != chosen:  # the chosen one is checked on parsing
            found.errors.append(f"{where}: {location_key} '{value}' is not a Google Sheets link, s3:// URL or path")
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
    sources: list[SheetSource] = [CsvFileSource()]
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


def check_sheets(found: Findings, reader: SheetReader, optional_columns: Sequence[str] = ()) -> None:
    """Open every episode's sheet (a few at a time) and check its header; add errors/warnings to `found`.

    `optional_columns` are the rarity columns a sheet may lack (TUTTLE_SHEET_OPTIONAL_COLUMNS), as in sync."""

    def check(episode: Episode) -> tuple[Episode, pd.DataFrame | SheetError]:
        try:
            return episode, _read(reader, episode)
        except SheetError as exc:
            return episode, exc

    with ThreadPoolExecutor(max_workers=SHEET_THREADS, thread_name_prefix="check-sheet") as pool:
        for episode, outcome in pool.map(check, found.episodes):
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
    found = validate_files(files)
    found.warnings[:0] = ignored
    if not files:
        found.errors.append(f"no manifest files (*{MANIFEST_SUFFIX}) in {directory}")
    if check_sheets_too and found.episodes:
        settings = settings or Settings.from_env()
        check_sheets(found, sheet_reader(settings, found.episodes), settings.sheet_optional_columns)
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
    #: manifests in S3 with no local file (left alone)
    only_in_s3: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False

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


def push(
    directory: Path,
    settings: Settings,
    *,
    dry_run: bool = False,
    check_sheets_too: bool = False,
    client: Any = None,
) -> PushResult:
    """Validate the folder; if it has no errors, upload the files that differ from S3 (all or nothing on errors)."""
    findings, files = validate_directory(directory, settings=settings, check_sheets_too=check_sheets_too)
    result = PushResult(findings=findings, dry_run=dry_run)
    if not findings.ok:
        return result
    client = client or s3_client()
    aws.check_bucket(client, settings.bucket)
    prefix = settings.manifests_prefix
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
    local = {name for name, _ in files}
    remote = [key.rsplit("/", 1)[-1] for key, _ in _list_manifests(client, settings)]
    result.only_in_s3 = [name for name in remote if name not in local]
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


def _list_manifests(client: Any, settings: Settings) -> list[tuple[str, datetime | None]]:
    """(key, last modified) of every `*-episodes.json` under the manifests prefix; InventoryError on failure."""
    found: list[tuple[str, datetime | None]] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.bucket, Prefix=settings.manifests_prefix
        ):
            for obj in page.get("Contents", ()):
                if obj["Key"].endswith(MANIFEST_SUFFIX):
                    found.append((obj["Key"], obj.get("LastModified")))
    except (ClientError, BotoCoreError) as exc:
        raise InventoryError(
            f"listing s3://{settings.bucket}/{settings.manifests_prefix} failed: {aws.describe(exc)}"
        ) from None
    return sorted(found)


def list_remote(settings: Settings, *, client: Any = None) -> list[RemoteManifest]:
    """Every manifest in S3 with its episodes; episodes repeated across files are reported as errors."""
    client = client or s3_client()
    aws.check_bucket(client, settings.bucket)
    manifests: list[RemoteManifest] = []
    contents: list[tuple[str, bytes]] = []
    for key, modified in _list_manifests(client, settings):
        manifest = RemoteManifest(key=key, last_modified=modified)
        manifests.append(manifest)
        try:
            contents.append((manifest.name, client.get_object(Bucket=settings.bucket, Key=key)["Body"].read()))
        except (ClientError, BotoCoreError) as exc:
            manifest.errors.append(f"{manifest.name}: cannot read ({aws.describe(exc)})")
    collected = collect_episodes(contents)
    by_name = {m.name: m for m in manifests}
    for episode in collected.episodes:
        by_name[episode.manifest].episodes.append(episode)
    for message in collected.errors:
        name = message.split(":", 1)[0]
        (by_name.get(name) or manifests[0]).errors.append(message)
    return manifests
