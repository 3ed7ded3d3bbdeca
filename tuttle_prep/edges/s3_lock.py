"""The run lock: one S3 object that at most one sync holds at a time, on any number of hosts.

Taking the lock is a conditional write (`If-None-Match: *`), so of two runs starting together exactly
one wins. The object names its holder (host, pid, run id, start time). A lock is stale, and may be
taken over, when it is older than `TUTTLE_LOCK_STALE_SECONDS` or when its holder is a process of this
host that no longer exists (a run killed with SIGKILL). A takeover is itself conditional (`If-Match`
on the stale lock's ETag), so two runs cannot both take over the same stale lock. Releasing deletes
the object only if it is still ours (`If-Match` on our ETag).

While a run holds the lock, a thread renews it every quarter of TUTTLE_LOCK_STALE_SECONDS (a conditional
write on its ETag that records the time), so a long run is not taken for a dead one; a renewal that finds
the lock taken over stops renewing. `still_ours` is asked right before the delete phase: a run that lost
its lock deletes nothing. A conditional write whose answer was lost is retried by botocore and then fails
with 412 against the run's own object: a lock naming this run's id is this run's.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.clock import Clock
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
    #: when the holder last renewed the lock (None: never); staleness counts from here
    renewed: float | None = None

    @classmethod
    def for_this_process(cls, run_id: str | None, now: float) -> LockHolder:
        """This process as a holder that took the lock at `now` (seconds since the epoch)."""
        return cls(socket.gethostname(), os.getpid(), run_id or uuid.uuid4().hex[:12], now)

    @classmethod
    def parse(cls, body: bytes) -> LockHolder | None:
        """The holder written in a lock object, or None if the object is not one of ours."""
        try:
            data = json.loads(body)
            renewed = data.get("renewed")
            return cls(
                str(data["host"]),
                int(data["pid"]),
                str(data["run_id"]),
                float(data["started"]),
                None if renewed is None else float(renewed),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def to_json(self) -> bytes:
        started_utc = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return json.dumps({**asdict(self), "started_utc": started_utc}, indent=2).encode()

    @property
    def last_seen(self) -> float:
        """The holder's last sign of life: its last renewal, else its start."""
        return self.renewed if self.renewed is not None else self.started

    def same_run(self, other: LockHolder | None) -> bool:
        return other is not None and (other.host, other.pid, other.run_id) == (self.host, self.pid, self.run_id)

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
        clock: Clock = time.time,
        renew_seconds: float | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.stale_seconds = stale_seconds
        self.clock = clock
        self.renew_seconds = stale_seconds / 4 if renew_seconds is None else renew_seconds
        self.holder = LockHolder.for_this_process(run_id, clock())
        self._etag: str | None = None
        #: why the lock is no longer ours (taken over while this run worked), naming the new holder
        self.lost: str | None = None
        self._state = threading.Lock()  # the renewal thread and the run both write the ETag
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def __enter__(self) -> S3Lock:
        self.acquire()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_until_stopped, name="lock-renewal", daemon=True)
        self._renewer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
            self._renewer = None
        self.release()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.renew_seconds):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Record that this run is alive (a write conditional on our ETag); False once the lock is not ours.

        A failed request is logged and retried at the next renewal: the lock is not known to be lost.
        """
        with self._state:
            if self._etag is None or self.lost:
                return False
            holder = LockHolder(
                self.holder.host, self.holder.pid, self.holder.run_id, self.holder.started, self.clock()
            )
            try:
                written = self._put(holder, IfMatch=self._etag)
            except (LockError, ConfigError) as exc:
                log.warning("could not renew the run lock %s (%s); trying again later", self.url, exc)
                return True
            if written:
                self.holder = holder
                return True
            return self._mark_lost()

    def still_ours(self) -> str | None:
        """None if this run still holds the lock, else a message naming who holds it now (read from S3)."""
        with self._state:
            if self.lost is None:
                try:
                    current = self._read()
                except LockError as exc:
                    return f"{exc}: cannot tell whether this run still holds it"
                if current is not None and current[0] == self._etag:
                    return None
                if self._mark_lost():
                    return None
        return self.lost

    def _mark_lost(self) -> bool:
        """After a conditional write failed: adopt the lock if it names this run (a write whose answer was lost),
        else record who holds it now. True if the lock turned out to be ours."""
        try:
            current = self._read()
        except LockError:
            current = None
        if current is not None and self.holder.same_run(current[1]):
            self._etag = current[0]
            return True
        who = current[1].describe(self.clock()) if current is not None and current[1] else "nobody (it was deleted)"
        self.lost = f"the run lock {self.url} was taken over while this run worked; it is now held by {who}"
        log.error(self.lost)
        return False

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; LockHeld naming the holder if another run has it."""
        holder = LockHolder(self.holder.host, self.holder.pid, self.holder.run_id, self.clock())
        if self._put(holder, IfNoneMatch="*"):
            self.holder = holder
            return
        current = self._read()
        if current is not None and self.holder.same_run(current[1]):
            # our own write went through but its answer was lost: botocore's retry then met our lock (412)
            self._etag = current[0]
            self.holder = current[1] or holder
            return
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
        with self._state:
            etag, self._etag = self._etag, None
        if etag is None:
            return
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
        age = self.clock() - other.last_seen
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
