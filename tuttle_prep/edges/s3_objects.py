"""Single S3 objects: CSV sheet exports and season manifests read whole, dataset and source files downloaded."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from ..core.manifests import select_manifest_keys
from ..core.versions import normalize_etag
from ..errors import SheetError
from .aws import describe
from .s3_bucket import S3Bucket
from .s3_listing import list_page_keys

#: a download lands in `<name>.part` and is renamed when complete
PART_SUFFIX = ".part"
_CHUNK = 1 << 20


def fetch_object(client: Any, bucket: str, key: str) -> bytes:
    """Read one object; SheetError naming the URL if it can't (used for CSV sheet exports)."""
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise SheetError(f"s3://{bucket}/{key}: cannot read ({describe(exc)})") from None


def read_manifests(
    store: S3Bucket, prefix: str, ignored: list[str] | None = None
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Every `*-episodes.json` directly under `prefix` as (s3://bucket/key, bytes), plus an error per unreadable
    file. `ignored`, if given, receives a message (by full key) per look-alike file that is not read."""
    keys, _ = list_page_keys(store, prefix)
    selected, left_out = select_manifest_keys(keys, prefix)
    if ignored is not None:
        ignored.extend(f"s3://{store.bucket}/{key}: ignored, {why}" for key, why in left_out)
    files, errors = [], []
    for key in selected:
        where = f"s3://{store.bucket}/{key}"
        try:
            files.append((where, store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()))
        except (ClientError, BotoCoreError) as exc:
            errors.append(f"{where}: cannot read the manifest ({describe(exc)})")
    return files, errors


class SourceChanged(Exception):
    """The object's ETag is not the one a dataset version recorded, and no older object version has it (the
    bucket keeps none, or not that one); nothing was written. `why`: why no older version was looked up."""

    def __init__(self, key: str, recorded: str, current: str, why: str = "") -> None:
        super().__init__(f"{key}: ETag {current}, the version recorded {recorded}")
        self.recorded = recorded
        self.current = current
        self.why = why


def download_object(store: S3Bucket, key: str, path: Path) -> int:
    """Stream `key` to `path` through `<path>.part` (renamed when complete); return the bytes written."""
    return _write_body(store.client.get_object(Bucket=store.bucket, Key=key)["Body"], path)


@dataclass
class SourceDownloaded:
    """A source frame written to its local path: bytes written, the MD5 of what was written, the object's ETag
    now if it differs from the recorded one (taken anyway), the S3 object version it came from if not the
    current one."""

    written: int
    md5: str
    changed: str | None
    version_id: str | None = None


def find_object_version(store: S3Bucket, key: str, etags: set[str]) -> tuple[str | None, str]:
    """The newest S3 object version of `key` whose ETag is one of `etags` (ListObjectVersions on that key), and
    why there is none: "" (the bucket keeps no such version), or the error of the listing (no
    s3:ListBucketVersions, say). Only versions of exactly `key` count; delete markers have no ETag."""
    wanted = {e.lower() for e in etags if e}
    found: list[tuple[Any, str]] = []
    try:
        pages = store.client.get_paginator("list_object_versions").paginate(Bucket=store.bucket, Prefix=key)
        for page in pages:
            for version in page.get("Versions", ()):
                if version.get("Key") != key or not version.get("VersionId") or version.get("VersionId") == "null":
                    continue
                if (normalize_etag(version.get("ETag")) or "").lower() in wanted:
                    found.append((version.get("LastModified"), version["VersionId"]))
    except (ClientError, BotoCoreError) as exc:
        return None, f"its object versions could not be listed ({describe(exc)})"
    if not found:
        return None, ""
    found.sort(key=lambda item: (item[0] is not None, item[0]), reverse=True)
    return found[0][1], ""


def download_source(
    store: S3Bucket,
    key: str,
    path: Path,
    etag: str,
    accept_changed: bool,
    also: tuple[str, ...] = (),
    older_versions: bool = True,
) -> SourceDownloaded:
    """Download a source frame whose bytes a dataset version recorded as `etag` (or as one of `also`: ETags the
    same bytes may carry). When the object's ETag now differs and `older_versions`, the object version that has
    the recorded ETag is downloaded instead (a bucket that keeps object versions: GetObject VersionId=).
    Otherwise SourceChanged, and nothing written, unless `accept_changed` (today's picture is taken)."""
    accepted = {etag.lower(), *(e.lower() for e in also if e)}
    response = store.client.get_object(Bucket=store.bucket, Key=key)
    current = normalize_etag(response.get("ETag")) or ""
    version_id: str | None = None
    why = ""
    if current.lower() not in accepted and older_versions:
        version_id, why = find_object_version(store, key, accepted)
        if version_id is not None:
            response["Body"].close()
            response = store.client.get_object(Bucket=store.bucket, Key=key, VersionId=version_id)
            current = normalize_etag(response.get("ETag")) or ""
            if current.lower() not in accepted:  # the listing and the object disagree: trust neither
                response["Body"].close()
                raise SourceChanged(key, etag, current, "its object version changed under the job")
    changed = current if current.lower() not in accepted else None
    if changed is not None and not accept_changed:
        response["Body"].close()
        raise SourceChanged(key, etag, current, why)
    digest = hashlib.md5(usedforsecurity=False)
    written = _write_body(response["Body"], path, digest)
    return SourceDownloaded(written, digest.hexdigest(), changed, version_id)


def open_part(path: Path) -> BinaryIO:
    """A new, empty `<path>.part` open for writing. Whatever was there under that name (a leftover, or a link
    to a file elsewhere) is removed first, and the file is created afresh without following a link, so the
    bytes land under DEST and nowhere else."""
    part = path.with_name(path.name + PART_SUFFIX)
    part.unlink(missing_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    return os.fdopen(fd, "wb")


def _write_body(body: Any, path: Path, digest: Any = None) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + PART_SUFFIX)
    written = 0
    try:
        with open_part(path) as out:
            for chunk in body.iter_chunks(_CHUNK):
                out.write(chunk)
                written += len(chunk)
                if digest is not None:
                    digest.update(chunk)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return written
