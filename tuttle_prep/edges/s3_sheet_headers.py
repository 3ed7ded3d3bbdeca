"""The rarity columns each episode's sheet had in earlier runs, so a sheet that lost one is noticed.

`<ML prefix>sheet_headers.json` maps episode ids to the rarity columns (canonical names) its sheet had when
last read: `{"S01E01": ["JONNY's RECLASSIFICATION", "SUPERVISED CLASSIFICATION", ...]}`. A real run rewrites
it only when it changes (one GET per run, usually no PUT); a dry run only reads it. A sheet that no longer has
a column an earlier run saw is skipped (`commands.sync.load_frames`), unless TUTTLE_SHEET_OPTIONAL_COLUMNS names it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .aws import describe, error_code

if TYPE_CHECKING:
    from .s3_bucket import S3Bucket

HEADERS_NAME = "sheet_headers.json"
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


def headers_key(ml_prefix: str) -> str:
    """`tuttle_twins/ML/sheet_headers.json`."""
    return f"{ml_prefix}{HEADERS_NAME}"


def parse_seen_headers(data: bytes) -> dict[str, list[str]]:
    """The memory's content; ValueError if it is not {episode_id: [column, ...]}."""
    seen = json.loads(data)
    if not isinstance(seen, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(c, str) for c in v) for k, v in seen.items()
    ):
        raise ValueError("not an object of episode ids to lists of column names")
    return seen


def read_seen_headers(store: S3Bucket, key: str) -> tuple[dict[str, list[str]] | None, str | None]:
    """(memory, None); ({}, None) if there is none yet; (None, why) if it cannot be read or parsed."""
    where = f"s3://{store.bucket}/{key}"
    try:
        data = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            return {}, None
        return None, f"{where}: cannot read ({describe(exc)})"
    except BotoCoreError as exc:
        return None, f"{where}: cannot read ({describe(exc)})"
    try:
        return parse_seen_headers(data), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"{where}: {exc}"


def write_seen_headers(store: S3Bucket, key: str, seen: dict[str, list[str]]) -> None:
    """Put the memory (sorted, so equal memories are equal bytes); botocore errors propagate."""
    body = json.dumps({k: sorted(v) for k, v in sorted(seen.items())}, indent=1).encode()
    store.client.put_object(Bucket=store.bucket, Key=key, Body=body, ContentType="application/json")
