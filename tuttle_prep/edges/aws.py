"""AWS clients, built one way for every service.

boto3 reads credentials, region and `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`, …) from the
environment itself, so the same code runs against AWS, moto server or any S3-compatible store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.utils import parse_timestamp

from ..errors import ConfigError

DEFAULT_REGION = "us-east-1"
DEFAULT_RETRIES = 5


_ISO_UTC = re.compile(r"[0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9](?:\.[0-9]{1,6})?Z\Z")
#: the tzinfo botocore gives a 'Z' time on this host (dateutil says tzlocal() where local time is UTC, else tzutc())
_UTC_AS_BOTOCORE_SAYS = parse_timestamp("2000-01-01T00:00:00Z").tzinfo


def fast_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, with a fast path for S3's ISO 8601 UTC times; same values, same tzinfo.

    botocore parses every LastModified with dateutil (~30 µs): most of the CPU time of a large listing.
    """
    if isinstance(value, str) and _ISO_UTC.match(value):
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=_UTC_AS_BOTOCORE_SAYS)
    return parse_timestamp(value)


def check_environment(env: Mapping[str, str] | None = None) -> None:
    """ConfigError naming the AWS_* setting if one botocore reads is unusable, before any client is built.

    Each would otherwise surface as a botocore traceback: AWS_MAX_ATTEMPTS not a whole number >= 1, an access
    key id without its secret key (or the other way round), an AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_<SERVICE>)
    that is no http(s) URL. AWS_PROFILE is checked where botocore reads it (`make_client`).
    """
    env = os.environ if env is None else env
    attempts = env.get("AWS_MAX_ATTEMPTS", "").strip()
    if attempts and not (attempts.isascii() and attempts.isdigit() and int(attempts) >= 1):
        raise ConfigError(f"AWS_MAX_ATTEMPTS must be a whole number of tries of at least 1, got '{attempts}'")
    key_id = env.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if key_id and not secret:
        raise ConfigError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both, or neither")
    if secret and not key_id:
        raise ConfigError("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both, or neither")
    for name in sorted(n for n in env if n == "AWS_ENDPOINT_URL" or n.startswith("AWS_ENDPOINT_URL_")):
        value = env[name].strip()
        if value and not _is_endpoint_url(value):
            raise ConfigError(f"{name} must be an http:// or https:// URL (like http://127.0.0.1:9000), got '{value}'")


def _is_endpoint_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


def _profile_error(exc: ProfileNotFound) -> ConfigError:
    profile = os.environ.get("AWS_PROFILE", "").strip() or str(exc.kwargs.get("profile", ""))
    return ConfigError(
        f"AWS_PROFILE '{profile}' is not a profile of the AWS config files "
        "(AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE or ~/.aws/config, ~/.aws/credentials)"
    )


def new_session() -> boto3.session.Session:
    """A fresh boto3 session (tests replace this to attach botocore event hooks); ConfigError for an unusable
    AWS_* setting (`check_environment`, AWS_PROFILE)."""
    check_environment()
    try:
        return boto3.session.Session()
    except ProfileNotFound as exc:
        raise _profile_error(exc) from None


def make_client(
    service: str,
    *,
    max_pool: int = 10,
    max_attempts: int | None = None,
    connect_timeout: float = 10,
    read_timeout: float = 60,
    session: boto3.session.Session | None = None,
) -> Any:
    """A client with botocore's standard retry mode and a connection pool sized for `max_pool` threads.

    `max_attempts` is botocore's: retries after the first try. Without it, AWS_MAX_ATTEMPTS (total tries, as
    botocore reads it) decides when set, else DEFAULT_RETRIES.
    """
    check_environment()
    session = session or new_session()
    botocore_session = getattr(session, "_session", None)  # boto3 keeps it private; the parsers are its component
    if botocore_session is not None:
        botocore_session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=fast_timestamp)
    try:
        region = session.region_name or os.environ.get("AWS_REGION") or DEFAULT_REGION
    except ProfileNotFound as exc:
        raise _profile_error(exc) from None
    retries: dict[str, Any] = {"mode": "standard"}
    if max_attempts is not None or not os.environ.get("AWS_MAX_ATTEMPTS", "").strip():
        # an explicit retries count in the Config would silently override AWS_MAX_ATTEMPTS
        retries["max_attempts"] = DEFAULT_RETRIES if max_attempts is None else max_attempts
    config = Config(
        retries=retries,
        max_pool_connections=max(10, max_pool),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="tuttle-prep",
    )
    try:
        return session.client(service, region_name=region, config=config)
    except ProfileNotFound as exc:
        raise _profile_error(exc) from None
    except PartialCredentialsError as exc:  # e.g. a profile with a key id and no secret
        raise ConfigError(f"incomplete AWS credentials: {describe(exc)}") from None
    except ValueError as exc:  # botocore's "Invalid endpoint: ..." (from a config file's endpoint_url)
        raise ConfigError(f"the AWS endpoint is not usable: {exc}") from None


def error_code(exc: BaseException) -> str:
    """The S3/AWS error code of a botocore exception ('NoSuchKey', 'SlowDown', '404', …)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or "ClientError"
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    """A one-line description of a botocore error, without request ids or stack traces."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        message = err.get("Message") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{err.get('Code', 'error')}: {message}".rstrip(": ")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_bucket(client: Any, bucket: str, prefix: str) -> None:
    """Fail early with one sentence if credentials, region or bucket are wrong (ConfigError).

    The check lists one key under `prefix` (a prefix the job lists anyway): a HeadBucket, like a listing
    without a prefix, needs an s3:ListBucket the deploy policy denies.
    """
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except (NoCredentialsError, PartialCredentialsError):
        raise ConfigError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "or run on an EC2 host with an instance role"
        ) from None
    except ClientError as exc:
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket") or status == 404:
            raise ConfigError(f"bucket '{bucket}' does not exist (check TUTTLE_BUCKET)") from None
        if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed") or status == 301:
            raise ConfigError(
                f"bucket '{bucket}' is in another region than {client.meta.region_name} (set AWS_REGION)"
            ) from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            raise ConfigError(
                f"access to bucket '{bucket}' denied ({code}): check the AWS credentials and IAM policy"
            ) from None
        raise ConfigError(f"cannot reach bucket '{bucket}': {describe(exc)}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot reach S3 for bucket '{bucket}': {describe(exc)}") from None
