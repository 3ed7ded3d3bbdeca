"""Settings read from the environment (and `.env`), validated once at start-up.

Every variable is documented in `.env.example`. A bad value raises `ConfigError` naming the variable.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.names import (
    DEFAULT_DISTANCE,
    DEFAULT_STRATIFY,
    DEFAULT_TRAIN_DATASET,
    RARITY_COLUMNS,
    STRATIFY_CHOICES,
    normalize_header,
)
from .errors import ConfigError

DEFAULT_SPLIT = "train=0.7,validate=0.2,test=0.1"
DEFAULT_SEED = "tuttle-twins-2022"
IMG_SIZES = ("high_res", "mid_res", "low_res", "thumbnails")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: a version id or a prefix of one (at least the date): 20261201, 20261201T0230, 20261201T023005Z-4f1c9a02b7e1
_VERSION_PIN = re.compile(r"^[0-9]{8}(T[0-9]{0,6}(Z(-[A-Za-z0-9]*)?)?)?$")


def parse_split(text: str, variable: str = "TUTTLE_SPLIT") -> dict[str, float]:
    """Parse `train=0.7,validate=0.2,test=0.1` into an ordered {dataset: share} dict summing to 1."""
    shares: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not _FOLDER_NAME.match(name):
            raise ConfigError(f"{variable}: '{part}' is not of the form name=share (e.g. train=0.7)")
        try:
            share = float(value)
        except ValueError:
            raise ConfigError(f"{variable}: share '{value.strip()}' of '{name}' is not a number") from None
        if not 0 <= share <= 1:
            raise ConfigError(f"{variable}: share of '{name}' must be between 0 and 1, got {share}")
        if name in shares:
            raise ConfigError(f"{variable}: dataset '{name}' is named twice")
        shares[name] = share
    if not shares:
        raise ConfigError(f"{variable}: no datasets given (expected e.g. {DEFAULT_SPLIT})")
    total = sum(shares.values())
    if abs(total - 1) > 1e-6:
        raise ConfigError(f"{variable}: shares must add up to 1, they add up to {total:g}")
    return shares


def _train_dataset(text: str, split: Mapping[str, float]) -> str:
    """TUTTLE_TRAIN_DATASET (default `train`), which must be a dataset of TUTTLE_SPLIT."""
    name = text.strip()
    if not name:
        if DEFAULT_TRAIN_DATASET in split:
            return DEFAULT_TRAIN_DATASET
        raise ConfigError(
            f"TUTTLE_SPLIT has no dataset named '{DEFAULT_TRAIN_DATASET}' ({', '.join(split)}): set "
            "TUTTLE_TRAIN_DATASET to the one the classifier trains on (leakage is measured against it)"
        )
    if name not in split:
        raise ConfigError(
            f"TUTTLE_TRAIN_DATASET '{name}' is not a dataset of TUTTLE_SPLIT ({', '.join(split)}); name the one "
            "the classifier trains on"
        )
    return name


def parse_optional_columns(text: str, variable: str = "TUTTLE_SHEET_OPTIONAL_COLUMNS") -> tuple[str, ...]:
    """`SUPERVISED CLASSIFICATION, JONNY's RECLASSIFICATION` -> those rarity headers; ConfigError for another name."""
    by_normal = {normalize_header(c): c for c in RARITY_COLUMNS}
    columns = []
    for part in text.split(","):
        if not part.strip():
            continue
        column = by_normal.get(normalize_header(part))
        if column is None:
            names = ", ".join(f"'{c}'" for c in RARITY_COLUMNS)
            raise ConfigError(f"{variable}: '{part.strip()}' is not a rarity column ({names})")
        columns.append(column)
    return tuple(dict.fromkeys(columns))


def _prefix(value: str, variable: str) -> str:
    value = value.strip().lstrip("/")
    if not value:
        raise ConfigError(f"{variable} must not be empty")
    return value if value.endswith("/") else value + "/"


def env_number(env: Mapping[str, str], variable: str, default: Any, kind: type = int, minimum: float = 0) -> Any:
    """`kind(env[variable])` if set, else `default`; ConfigError naming the variable if not a number >= minimum."""
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        word = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{variable} must be {word}, got '{raw}'") from None
    if value < minimum:
        raise ConfigError(f"{variable} must be at least {minimum:g}, got {raw}")
    return value


def _pinned(text: str) -> tuple[str, ...]:
    """TUTTLE_VERSIONS_PINNED: comma-separated version ids (or prefixes of ids), `.parquet` allowed."""
    pins = []
    for part in text.split(","):
        pin = part.strip().removesuffix(".parquet")
        if not pin:
            continue
        if not _VERSION_PIN.match(pin):
            raise ConfigError(
                f"TUTTLE_VERSIONS_PINNED: '{part.strip()}' is not a version id like 20261201T023005Z-4f1c9a02b7e1"
            )
        pins.append(pin)
    return tuple(pins)


def _local_sheets_dir(text: str) -> Path | None:
    """TUTTLE_LOCAL_SHEETS_DIR resolved (symlinks, `..`); None if unset; ConfigError if it is not a folder."""
    text = text.strip()
    if not text:
        return None
    try:
        folder = Path(text).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise ConfigError(f"TUTTLE_LOCAL_SHEETS_DIR: '{text}' does not exist") from None
    if not folder.is_dir():
        raise ConfigError(f"TUTTLE_LOCAL_SHEETS_DIR: '{text}' is not a folder")
    if folder == Path(folder.anchor):
        raise ConfigError(f"TUTTLE_LOCAL_SHEETS_DIR: '{text}' is the root of the file system; name the sheets' folder")
    return folder


def local_sheets_dir_from_env(env: Mapping[str, str] | None = None) -> Path | None:
    """TUTTLE_LOCAL_SHEETS_DIR alone (for `manifests validate`, which needs no other setting)."""
    env = os.environ if env is None else env
    return _local_sheets_dir(env.get("TUTTLE_LOCAL_SHEETS_DIR", ""))


def _distance(env: Mapping[str, str]) -> int:
    distance = env_number(env, "TUTTLE_CONTENT_DISTANCE", DEFAULT_DISTANCE)
    if distance > 16:
        raise ConfigError(f"TUTTLE_CONTENT_DISTANCE must be at most 16 (of 64 bits), got {distance}")
    return distance
DEFAULT_METRICS_NAMESPACE = "TuttlePrep"
METRICS_CHOICES = ("auto", "on", "off")
_NAMESPACE = re.compile(r"^[A-Za-z0-9._/#: -]{1,255}$")


@dataclass(frozen=True)
class MetricsTarget:
    """Where a real sync publishes its CloudWatch metrics: `namespace` (None: nowhere) and why, in words."""

    namespace: str | None
    reason: str


def metrics_from_env(env: Mapping[str, str] | None = None) -> MetricsTarget:
    """TUTTLE_METRICS (`auto` default: publish only when TUTTLE_LOG_GROUP is set, i.e. on the host that ships
    its logs; `on`; `off`) and TUTTLE_METRICS_NAMESPACE (default TuttlePrep), read on their own like
    TUTTLE_LOG_GROUP; ConfigError naming the variable for a bad value."""
    env = os.environ if env is None else env
    raw_mode = env.get("TUTTLE_METRICS", "").strip()
    mode = raw_mode.lower() or "auto"
    if mode not in METRICS_CHOICES:
        raise ConfigError(f"TUTTLE_METRICS must be one of {', '.join(METRICS_CHOICES)}; got '{raw_mode}'")
    namespace = env.get("TUTTLE_METRICS_NAMESPACE", "").strip() or DEFAULT_METRICS_NAMESPACE
    if not _NAMESPACE.match(namespace) or namespace.startswith("AWS/"):
        raise ConfigError(
            "TUTTLE_METRICS_NAMESPACE must be 1-255 letters, digits or . - _ / # : and not start with AWS/; "
            f"got '{namespace}'"
        )
    if mode == "off":
        return MetricsTarget(None, "TUTTLE_METRICS=off")
    if mode == "on":
        return MetricsTarget(namespace, "TUTTLE_METRICS=on")
    if env.get("TUTTLE_LOG_GROUP", "").strip():
        return MetricsTarget(namespace, "TUTTLE_LOG_GROUP is set; TUTTLE_METRICS=auto")
    return MetricsTarget(None, "TUTTLE_LOG_GROUP is not set and TUTTLE_METRICS=auto (TUTTLE_METRICS=on publishes)")


def _namespace_of(env: Mapping[str, str]) -> str:
    return env.get("TUTTLE_METRICS_NAMESPACE", "").strip() or DEFAULT_METRICS_NAMESPACE


def metrics_namespace(env: Mapping[str, str] | None = None) -> str:
    """The namespace the runs' metrics go to when published (the alarms watch it); ConfigError if invalid."""
    env = os.environ if env is None else env
    metrics_from_env(env)  # validates both variables
    return _namespace_of(env)


def seed_fingerprint(seed: str) -> str:
    """The first 8 hex digits of the SHA-256 of `seed` (the seed itself is never printed)."""
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class Settings:
    """Where the data lives and how it is split. Built by `Settings.from_env`."""

    bucket: str = "media.angel-nft.com"
    manifests_prefix: str = "tuttle_twins/manifests/"
    ml_prefix: str = "tuttle_twins/ML/"
    source_prefix: str = "tuttle_twins/"
    img_size: str = "thumbnails"
    split: dict[str, float] = field(default_factory=lambda: parse_split(DEFAULT_SPLIT))
    split_seed: str = DEFAULT_SEED
    split_group_seconds: int = 0
    #: `rarity`: each rarity of each episode split to within one frame; `none`: each frame drawn on its own
    split_stratify: str = DEFAULT_STRATIFY
    #: the dataset of `split` the classifier trains on: leakage is the other datasets' frames near its frames
    train_dataset: str = DEFAULT_TRAIN_DATASET
    google_credentials_file: Path | None = None
    log_group: str | None = None
    lock_key: str = "tuttle_twins/locks/data-prep.lock"
    lock_stale_seconds: int = 6 * 3600
    #: dataset versions a real sync keeps (the newest N; None keeps all) and ids/prefixes never deleted
    versions_keep: int | None = None
    versions_pinned: tuple[str, ...] = ()
    #: rarity columns an episode sheet may lack (any other missing or renamed rarity column skips the episode)
    sheet_optional_columns: tuple[str, ...] = ()
    #: the only folder (resolved) local CSV sheets named by a manifest may be read from; None: no local sheets
    local_sheets_dir: Path | None = None
    #: TUTTLE_CONTENT_HASH: `sync` keeps a perceptual hash of every listed source frame (off: skipped)
    content_hash: bool = True
    #: TUTTLE_CONTENT_DISTANCE: Hamming distance (bits of 64) at or below which two frames are near-duplicates
    content_distance: int = DEFAULT_DISTANCE
    #: TUTTLE_SPLIT_GROUP: `content` keeps each near-duplicate cluster in one dataset; "" the frame (or window)
    split_group: str = ""
    #: where a real sync publishes its metrics (TUTTLE_METRICS, TUTTLE_METRICS_NAMESPACE)
    metrics: MetricsTarget = field(default_factory=lambda: metrics_from_env({}))
    #: the namespace the metrics go to when published (and the alarms watch), whatever TUTTLE_METRICS says
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE

    @property
    def seed_fingerprint(self) -> str:
        """The first 8 hex digits of the seed's SHA-256: shown in run summaries so a change of seed is visible."""
        return seed_fingerprint(self.split_seed)

    @property
    def split_mode(self) -> str:
        """The split settings besides the seed, as run summaries show them: `stratify=rarity, group seconds=0`."""
        mode = f"stratify={self.split_stratify}, group seconds={self.split_group_seconds}"
        return f"{mode}, group=content" if self.split_group == "content" else mode

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every TUTTLE_* / GOOGLE_* variable; raise ConfigError on the first bad one."""
        env = os.environ if env is None else env
        bucket = env.get("TUTTLE_BUCKET", cls.bucket).strip()
        if not bucket:
            raise ConfigError("TUTTLE_BUCKET must not be empty")
        img_size = env.get("TUTTLE_IMG_SIZE", cls.img_size).strip()
        if img_size not in IMG_SIZES:
            raise ConfigError(f"TUTTLE_IMG_SIZE must be one of {', '.join(IMG_SIZES)}; got '{img_size}'")
        # trimmed like every other setting: a stray space from a CI variable would reshuffle half the frames
        seed = env.get("TUTTLE_SPLIT_SEED", DEFAULT_SEED).strip()
        if not seed:
            raise ConfigError("TUTTLE_SPLIT_SEED must not be empty (it fixes which frame goes to which dataset)")
        raw_stratify = env.get("TUTTLE_SPLIT_STRATIFY", "").strip()
        stratify = raw_stratify.lower() or DEFAULT_STRATIFY
        if stratify not in STRATIFY_CHOICES:
            raise ConfigError(
                f"TUTTLE_SPLIT_STRATIFY must be one of {', '.join(STRATIFY_CHOICES)}; got '{raw_stratify}'"
            )
        split = parse_split(env.get("TUTTLE_SPLIT", DEFAULT_SPLIT))
        train_dataset = _train_dataset(env.get("TUTTLE_TRAIN_DATASET", ""), split)
        creds = env.get("GOOGLE_DRIVE_CREDENTIALS_FILE", "").strip()
        raw_hash = env.get("TUTTLE_CONTENT_HASH", "").strip()
        if raw_hash.lower() not in ("", "on", "off"):
            raise ConfigError(f"TUTTLE_CONTENT_HASH must be on or off; got '{raw_hash}'")
        raw_group = env.get("TUTTLE_SPLIT_GROUP", "").strip()
        if raw_group.lower() not in ("", "content"):
            raise ConfigError(f"TUTTLE_SPLIT_GROUP must be content or empty; got '{raw_group}'")
        if raw_group and raw_hash.lower() == "off":
            raise ConfigError("TUTTLE_SPLIT_GROUP=content needs the content hashes: TUTTLE_CONTENT_HASH is off")
        log_group = env.get("TUTTLE_LOG_GROUP", "").strip()
        return cls(
            bucket=bucket,
            manifests_prefix=_prefix(
                env.get("TUTTLE_MANIFESTS_PREFIX", cls.manifests_prefix), "TUTTLE_MANIFESTS_PREFIX"
            ),
            ml_prefix=_prefix(env.get("TUTTLE_ML_PREFIX", cls.ml_prefix), "TUTTLE_ML_PREFIX"),
            source_prefix=_prefix(env.get("TUTTLE_SOURCE_PREFIX", cls.source_prefix), "TUTTLE_SOURCE_PREFIX"),
            img_size=img_size,
            split=split,
            train_dataset=train_dataset,
            split_seed=seed,
            split_group_seconds=env_number(env, "TUTTLE_SPLIT_GROUP_SECONDS", 0),
            split_stratify=stratify,
            google_credentials_file=Path(creds).expanduser() if creds else None,
            log_group=log_group or None,
            lock_key=env.get("TUTTLE_LOCK_KEY", cls.lock_key).strip().lstrip("/") or cls.lock_key,
            lock_stale_seconds=env_number(env, "TUTTLE_LOCK_STALE_SECONDS", cls.lock_stale_seconds, int, 60),
            versions_keep=env_number(env, "TUTTLE_VERSIONS_KEEP", None, int, 1),
            versions_pinned=_pinned(env.get("TUTTLE_VERSIONS_PINNED", "")),
            sheet_optional_columns=parse_optional_columns(env.get("TUTTLE_SHEET_OPTIONAL_COLUMNS", "")),
            local_sheets_dir=_local_sheets_dir(env.get("TUTTLE_LOCAL_SHEETS_DIR", "")),
            content_hash=raw_hash.lower() != "off",
            content_distance=_distance(env),
            split_group=raw_group.lower(),
            metrics=(metrics := metrics_from_env(env)),
            metrics_namespace=metrics.namespace or _namespace_of(env),
        )
