"""The run lock: one S3 object that at most one sync holds at a time, on any number of hosts.

Taking the lock is a conditional write (`If-None-Match: *`), so of two runs starting together exactly
one wins. The object names its holder (host, pid, run id, start time). A lock is stale, and may be
taken over, when it is older than `TUTTLE_LOCK_STALE_SECONDS` or when its holder is a process of this
host that no longer exists (a run killed with SIGKILL). A takeover is itself conditional (`If-Match`
on the stale lock's ETag), so two runs cannot both take over the same stale lock. Releasing deletes
the object only if it is still ours (`If-Match` on our ETag).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import ConfigError, LockError, LockHeld
from .aws import describe, error_code

log = logging.getLogger(__name__)

_TAKEN = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_DENIED = ("AccessDenied", "403")


@dataclass(frozen=True)
class LockHolder:
    """Who holds the lock, as written in the lock object."""

    host: str
    pid: int
    run_id: str
    started: float

    @classmethod
    def for_this_process(cls, run_id: str | None = None) -> LockHolder:
        return cls(socket.gethostname(), os.getpid(), run_id or uuid.uuid4().hex[:12], time.time())

    @classmethod
    def parse(cls, body: bytes) -> LockHolder | None:
        """The holder written in a lock object, or None if the object is not one of ours."""
        try:
            data = json.loads(body)
            return cls(str(data["host"]), int(data["pid"]), str(data["run_id"]), float(data["started"]))
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> bytes:
        started_utc = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return json.dumps({**asdict(self), "started_utc": started_utc}, indent=2).encode()

    def describe(self, now: float) -> str:
        """'run 3f2a… (pid 4242 on ip-10-0-0-7, started 2024-05-01 02:00 UTC, 12 min ago)'."""
        started = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"run {self.run_id} (pid {self.pid} on {self.host}, started {started}, {_ago(now - self.started)})"


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "in the future by this host's clock"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def process_exists(pid: int) -> bool:
    """True if a process with this pid exists on this host (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class S3Lock:
    """A context manager holding the run lock at s3://bucket/key; LockHeld if another run holds it."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        stale_seconds: float,
        run_id: str | None = None,
        clock: Any = time.time,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.stale_seconds = stale_seconds
        self.clock = clock
        self.holder = LockHolder.for_this_process(run_id)
        self._etag: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def __enter__(self) -> S3Lock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; LockHeld naming the holder if another run has it."""
        holder = LockHolder(self.holder.host, self.holder.pid, self.holder.run_id, self.clock())
        if self._put(holder, IfNoneMatch="*"):
            self.holder = holder
            return
        current = self._read()
        if current is None:  # released between our write and our read: one more try
            if self._put(holder, IfNoneMatch="*"):
                self.holder = holder
                return
            current = self._read()
            if current is None:
                raise LockHeld(f"the run lock {self.url} keeps changing hands; another sync is starting, try later")
        etag, other = current
        reason = self._stale_reason(other)
        if reason is None:
            raise LockHeld(self._held_message(other))
        if not self._put(holder, IfMatch=etag):
            taken = self._read()
            raise LockHeld(self._held_message(taken[1] if taken else None))
        log.warning("took over the run lock %s: %s", self.url, reason)
        self.holder = holder

    def peek(self) -> tuple[LockHolder, str | None] | None:
        """Who holds the lock now, and why it is stale (None if live), without taking it; None if it is free.

        LockError if the lock object cannot be read.
        """
        current = self._read()
        if current is None:
            return None
        _, holder = current
        if holder is None:  # _read always names a holder; kept for the type checker
            return None
        return holder, self._stale_reason(holder)

    def release(self) -> None:
        """Delete the lock object if it is still ours; never raises (a lock left behind goes stale)."""
        if self._etag is None:
            return
        etag, self._etag = self._etag, None
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
        except ClientError as exc:
            if error_code(exc) in _TAKEN:
                log.warning("the run lock %s was taken over by another run while this one ran; left it", self.url)
            elif error_code(exc) not in ("NoSuchKey", "404"):
                log.warning("could not release the run lock %s (%s); it goes stale later", self.url, describe(exc))
        except BotoCoreError as exc:
            log.warning("could not release the run lock %s (%s); it goes stale later", self.url, describe(exc))

    # ---- helpers -------------------------------------------------------------------------------

    def _put(self, holder: LockHolder, **condition: str) -> bool:
        """Write the lock object under `condition`; False if the condition failed (someone else has it)."""
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=holder.to_json(), ContentType="application/json", **condition
            )
        except ClientError as exc:
            code = error_code(exc)
            if code in _TAKEN:
                return False
            if code in _DENIED:
                raise ConfigError(
                    f"cannot write the run lock {self.url} (access denied): the IAM policy must allow "
                    "s3:PutObject, s3:GetObject and s3:DeleteObject on it (or set TUTTLE_LOCK_KEY)"
                ) from None
            raise LockError(f"cannot take the run lock {self.url}: {describe(exc)}; nothing was changed") from None
        except BotoCoreError as exc:
            raise LockError(f"cannot take the run lock {self.url}: {describe(exc)}; nothing was changed") from None
        self._etag = response["ETag"]
        return True

    def _read(self) -> tuple[str, LockHolder | None] | None:
        """(ETag, holder) of the current lock object; None if there is none."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
            body = response["Body"].read()
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise LockError(f"cannot read the run lock {self.url}: {describe(exc)}; nothing was changed") from None
        except BotoCoreError as exc:
            raise LockError(f"cannot read the run lock {self.url}: {describe(exc)}; nothing was changed") from None
        holder = LockHolder.parse(body)
        if holder is None:
            modified = response.get("LastModified")
            started = modified.timestamp() if modified is not None else self.clock()
            holder = LockHolder("unknown host", 0, "unknown (the lock object is not readable)", started)
        return response["ETag"], holder

    def _stale_reason(self, other: LockHolder | None) -> str | None:
        """Why the lock of `other` may be taken over, or None if it is live."""
        if other is None:
            return None
        age = self.clock() - other.started
        if age > self.stale_seconds:
            return f"{other.describe(self.clock())} is older than TUTTLE_LOCK_STALE_SECONDS={self.stale_seconds:g}"
        if other.host == self.holder.host and other.pid > 0 and not process_exists(other.pid):
            return f"{other.describe(self.clock())} no longer runs on this host"
        return None

    def _held_message(self, other: LockHolder | None) -> str:
        who = other.describe(self.clock()) if other is not None else "another run"
        return (
            f"another sync holds the run lock {self.url}: {who}; nothing was changed. If that run is dead, "
            f"delete the lock object or wait until it is older than TUTTLE_LOCK_STALE_SECONDS={self.stale_seconds:g}"
        )
