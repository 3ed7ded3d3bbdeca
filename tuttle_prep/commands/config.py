"""`config show`: the settings every command would use, resolved from the environment and the env file, with
the secrets masked (the AWS secret key and session token, the Google key's contents: never printed)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from .. import __version__
from ..core.text import escape_control
from ..edges import aws
from ..errors import ConfigError
from ..settings import Settings, metrics_from_env, seed_fingerprint
from .common import fail_config, format_option, load_settings

#: printed instead of a secret's value
MASKED = "**** (set, not shown)"


def _masked(name: str) -> str:
    return MASKED if os.environ.get(name, "").strip() else "(not set)"


def _key_id(value: str) -> str:
    """`****************WXYZ`, as `aws configure list` shows an access key id."""
    return "*" * max(0, len(value) - 4) + value[-4:] if value else "(not set)"


def _endpoint(value: str) -> str:
    """The endpoint URL without any `user:password@` it carries (an S3-compatible server's credentials)."""
    if not value:
        return "(not set: AWS)"
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return value if "@" not in value else MASKED
    if "@" not in parts.netloc:
        return value
    netloc = f"****@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def resolved_settings(settings: Settings) -> dict[str, Any]:
    """Every setting the commands use, by variable name, secrets masked; paths and names shown as they are."""
    metrics = metrics_from_env()
    creds = settings.google_credentials_file
    region = os.environ.get("AWS_REGION", "").strip() or os.environ.get("AWS_DEFAULT_REGION", "").strip()
    return {
        "program_version": __version__,
        "TUTTLE_BUCKET": settings.bucket,
        "TUTTLE_MANIFESTS_PREFIX": settings.manifests_prefix,
        "TUTTLE_ML_PREFIX": settings.ml_prefix,
        "TUTTLE_SOURCE_PREFIX": settings.source_prefix,
        "TUTTLE_IMG_SIZE": settings.img_size,
        "TUTTLE_SPLIT": ",".join(f"{d}={s:g}" for d, s in settings.split.items()),
        "TUTTLE_SPLIT_SEED": f"{MASKED}; fingerprint {seed_fingerprint(settings.split_seed)}",
        "TUTTLE_SPLIT_GROUP_SECONDS": settings.split_group_seconds,
        "TUTTLE_SPLIT_STRATIFY": settings.split_stratify,
        "TUTTLE_SHEET_OPTIONAL_COLUMNS": ", ".join(settings.sheet_optional_columns) or "(none)",
        "TUTTLE_LOCAL_SHEETS_DIR": str(settings.local_sheets_dir) if settings.local_sheets_dir else "(not set)",
        "TUTTLE_LOCK_KEY": settings.lock_key,
        "TUTTLE_LOCK_STALE_SECONDS": settings.lock_stale_seconds,
        "TUTTLE_VERSIONS_KEEP": settings.versions_keep if settings.versions_keep is not None else "(all)",
        "TUTTLE_VERSIONS_PINNED": ", ".join(settings.versions_pinned) or "(none)",
        "TUTTLE_LOG_GROUP": settings.log_group or "(not set: logs on stderr only)",
        "TUTTLE_METRICS": os.environ.get("TUTTLE_METRICS", "").strip().lower() or "auto",
        "TUTTLE_METRICS_NAMESPACE": settings.metrics_namespace,
        "metrics": (
            f"a real sync publishes to CloudWatch namespace {metrics.namespace} ({metrics.reason})"
            if metrics.namespace
            else f"not published: {metrics.reason}"
        ),
        "GOOGLE_DRIVE_CREDENTIALS_FILE": (
            f"{creds} ({'exists' if creds.is_file() else 'DOES NOT EXIST'}; its contents are not shown)"
            if creds
            else "(not set: only CSV sheets can be read)"
        ),
        "AWS_REGION": region or f"(not set: {aws.DEFAULT_REGION}, or the profile's)",
        "AWS_PROFILE": os.environ.get("AWS_PROFILE", "").strip() or "(not set)",
        "AWS_ENDPOINT_URL": _endpoint(os.environ.get("AWS_ENDPOINT_URL", "").strip()),
        "AWS_ACCESS_KEY_ID": _key_id(os.environ.get("AWS_ACCESS_KEY_ID", "").strip()),
        "AWS_SECRET_ACCESS_KEY": _masked("AWS_SECRET_ACCESS_KEY"),
        "AWS_SESSION_TOKEN": _masked("AWS_SESSION_TOKEN"),
        "AWS_MAX_ATTEMPTS": os.environ.get("AWS_MAX_ATTEMPTS", "").strip() or f"(not set: {aws.DEFAULT_RETRIES + 1})",
    }


@click.group("config")
def config() -> None:
    """The settings the commands use (from the environment and .env / --env-file)."""


@config.command("show")
@format_option("One `NAME value` line per setting, or one JSON object.")
def show_command(output_format: str) -> None:
    """Print every setting as the commands resolve it (defaults filled in), with the AWS secret key, the
    session token and the split seed masked and the Google key file named, never read. Reads nothing
    remote. Exit status: 0, or 2 with one sentence if a setting is invalid."""
    settings = load_settings()
    try:
        aws.new_session()  # the AWS_* settings botocore reads, AWS_PROFILE included
        values = resolved_settings(settings)
    except ConfigError as exc:
        fail_config(str(exc))
    if output_format == "json":
        click.echo(json.dumps(values, indent=2, default=str))
        return
    width = max(len(name) for name in values)
    for name, value in values.items():
        click.echo(escape_control(f"{name:<{width}}  {value}"))
