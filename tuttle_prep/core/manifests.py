"""Season manifests: parsing and validation (pure; reading the files is the caller's job).

A manifest is a JSON list of episodes. Problems are collected, not raised: one bad episode or file
must not stop the good episodes of other files, but every problem is reported with file and key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .sheets import sheet_location_problem

MANIFEST_SUFFIX = "-episodes.json"
#: names that look like a manifest (checked for files that are *not* read, to say why)
NEAR_MANIFEST = re.compile(r"episodes?\.json$", re.IGNORECASE)
REQUIRED_KEYS = ("season_code", "episode_code")
LOCATION_KEYS = ("google_spreadsheet_share_link", "google_spreadsheet_url")
_SEASON = re.compile(r"^S[0-9]{2}$")
_EPISODE = re.compile(r"^E[0-9]{2}$")


@dataclass(frozen=True)
class Episode:
    """One episode of a season manifest."""

    season_code: str
    episode_code: str
    sheet_location: str
    title: str = ""
    manifest: str = ""

    @property
    def episode_id(self) -> str:
        """`S01E01`."""
        return self.season_code + self.episode_code


@dataclass
class ManifestSet:
    """Every episode read from a set of manifest files, and every problem found in them."""

    episodes: list[Episode] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    #: files that could not be used at all (their episodes are unknown, so orphans can't be judged)
    broken_files: list[str] = field(default_factory=list)

    @property
    def episode_ids(self) -> set[str]:
        return {e.episode_id for e in self.episodes}


def select_manifest_keys(keys: Iterable[str], prefix: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The `*-episodes.json` keys directly under `prefix` (sorted), and (key, why) for each look-alike left out.

    A copy in a subfolder (`<prefix>2022-backup/S01-episodes.json`) is never read: it would otherwise
    compete with the live file of the same name.
    """
    selected: list[str] = []
    ignored: list[tuple[str, str]] = []
    for key in sorted(keys):
        rest = key[len(prefix) :] if key.startswith(prefix) else key
        name = rest.rsplit("/", 1)[-1]
        if not NEAR_MANIFEST.search(name):
            continue
        if "/" in rest:
            ignored.append((key, "in a subfolder of the manifests prefix; only files directly under it are read"))
        elif not name.endswith(MANIFEST_SUFFIX):
            ignored.append((key, f"the name does not end in '{MANIFEST_SUFFIX}'"))
        else:
            selected.append(key)
    return selected, ignored


def parse_manifest(
    data: bytes | str, name: str, path_exists: Callable[[str], bool] | None = None
) -> tuple[list[Episode], list[str]]:
    """Parse one manifest file; return its usable episodes and a message per problem (file and key).

    `path_exists` checks that a local sheet path exists (see `sheets.sheet_location_problem`)."""
    try:
        items = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        return [], [f"{name}: not valid JSON{where}: {getattr(exc, 'msg', exc)}"]
    if not isinstance(items, list):
        return [], [f"{name}: expected a JSON list of episodes, found a {type(items).__name__}"]
    episodes: list[Episode] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        where = f"{name}: episode #{index + 1}"
        if not isinstance(item, dict):
            errors.append(f"{where}: expected an object, found a {type(item).__name__}")
            continue
        missing = [key for key in REQUIRED_KEYS if not str(item.get(key) or "").strip()]
        location_key = next((k for k in LOCATION_KEYS if str(item.get(k) or "").strip()), None)
        if location_key is None:
            missing.append(" or ".join(LOCATION_KEYS))
        if missing:
            errors.append(f"{where}: missing key {', '.join(repr(m) for m in missing)}")
            continue
        season = str(item["season_code"]).strip().upper()
        code = str(item["episode_code"]).strip().upper()
        where = f"{name}: episode {season}{code}"
        if not _SEASON.match(season):
            errors.append(f"{where}: season_code '{item['season_code']}' is not like 'S01'")
            continue
        if not _EPISODE.match(code):
            errors.append(f"{where}: episode_code '{item['episode_code']}' is not like 'E01'")
            continue
        location = str(item[location_key]).strip()
        problem = sheet_location_problem(location, path_exists)
        if problem:
            errors.append(f"{where}: {location_key} '{location}' is {problem}")
            continue
        title = str(item.get("google_spreadsheet_title") or "").strip()
        episodes.append(Episode(season, code, location, title, name))
    return episodes, errors


def collect_episodes(
    files: Iterable[tuple[str, bytes | str]], path_exists: Callable[[str], bool] | None = None
) -> ManifestSet:
    """Parse several manifest files; an episode_id seen in an earlier file (or twice) is reported and dropped.

    The commands pass `os.path.exists` as `path_exists`, so a local sheet path that does not exist is an error."""
    result = ManifestSet()
    seen: dict[str, str] = {}
    for name, data in files:
        result.files.append(name)
        episodes, errors = parse_manifest(data, name, path_exists)
        result.errors.extend(errors)
        if errors and not episodes:
            result.broken_files.append(name)
        for episode in episodes:
            first = seen.get(episode.episode_id)
            if first is not None:
                result.errors.append(
                    f"{name}: episode {episode.episode_id} repeats an episode already in {first}; the first one is used"
                )
                continue
            seen[episode.episode_id] = name
            result.episodes.append(episode)
    return result


def filter_episodes(
    episodes: Iterable[Episode], seasons: Iterable[str] = (), episode_ids: Iterable[str] = ()
) -> list[Episode]:
    """Keep episodes of the given seasons or ids (no filter given = all)."""
    seasons = {s.strip().upper() for s in seasons}
    episode_ids = {e.strip().upper() for e in episode_ids}
    if not seasons and not episode_ids:
        return list(episodes)
    return [e for e in episodes if e.season_code in seasons or e.episode_id in episode_ids]
