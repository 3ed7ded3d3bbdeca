"""The S3 data plane in Rust (obstore): listings as Arrow tables and server-side copies, many in flight.

obstore gets the configuration boto3 resolved — the credentials (through `SessionCredentials`, so profiles,
SSO and the instance role work and refresh), the region, the endpoint (`AWS_ENDPOINT_URL`; plain http is
allowed for moto server and MinIO) and the retry budget (`AWS_MAX_ATTEMPTS`) — so both clients reach the same
bucket the same way. obstore retries 5xx answers (SlowDown included), errors in a 200 answer to a copy,
dropped connections and timeouts, with exponential back-off.

Async work runs on an event loop in a thread of its own (`run_async`) while the calling thread waits: a
signal handler that raises (SIGTERM's SystemExit) runs in the caller at once; the work then takes no new
item, lets the requests in flight finish (the drain: signals held, see `stopping`), and the exception goes
on. Nothing runs in another process.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import obstore
import pyarrow as pa
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import InvalidPathError
from obstore.store import S3Store as ObjectStore

from ..stopping import signals_held

T = TypeVar("T")
log = logging.getLogger(__name__)

#: errors of one request, reported by key (a 404, a 5xx after the retries, a timeout, a refused signature, ...)
REQUEST_ERRORS: tuple[type[BaseException], ...] = (ObstoreError, OSError)
#: the columns kept of a listing
LIST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.uint64()),
        ("e_tag", pa.string()),
        ("last_modified", pa.timestamp("us", tz="UTC")),
    ]
)
#: how long a stopped run waits for the requests in flight before it lets them go
DRAIN_SECONDS = 15.0
#: the pause at interpreter exit after async work, for processes that embed the job (pytest) only: obstore's
#: tokio threads finish the tail of each call (they drop Python references under the GIL) a moment after its
#: result arrived, and one still doing so while the interpreter finalizes aborts the process. The process
#: entry point (`cli.run`) never gets here: it flushes and leaves with os._exit, so finalization never begins.
EXIT_SETTLE_SECONDS = 0.1

_S3_CODE = re.compile(r"<Code>([^<]*)</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")
_async_used = threading.Event()


@atexit.register
def _settle_before_exit() -> None:
    if _async_used.is_set():
        time.sleep(EXIT_SETTLE_SECONDS)


class SessionCredentials:
    """obstore's credential provider, backed by a boto3 session's credentials (which botocore refreshes)."""

    def __init__(self, session: Any) -> None:
        self._credentials = session.get_credentials()
        if self._credentials is None:
            raise ValueError("the boto3 session found no AWS credentials")

    def __call__(self) -> dict[str, Any]:
        frozen = self._credentials.get_frozen_credentials()
        # refreshable credentials (SSO, an assumed role, the instance role) expire: obstore asks again shortly
        # before, and botocore has refreshed them by then (it does so 15 minutes ahead)
        expiry = getattr(self._credentials, "_expiry_time", None)
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": expiry.astimezone(UTC) if isinstance(expiry, datetime) else None,
        }


def retries_from(env: Mapping[str, str], default: int) -> int:
    """Retries after the first try, as `aws.make_client` gives boto3: AWS_MAX_ATTEMPTS (total tries) when set,
    else `default`."""
    try:
        attempts = int(env.get("AWS_MAX_ATTEMPTS", "").strip() or 0)
    except ValueError:
        return default
    return max(0, attempts - 1) if attempts else default


def open_object_store(
    bucket: str,
    session: Any,
    s3_client: Any,
    *,
    workers: int,
    retries: int,
    connect_timeout: float = 10,
    timeout: float = 60,
) -> ObjectStore:
    """An obstore store for `bucket` on the endpoint and region `s3_client` (boto3) uses, with `session`'s
    credentials."""
    endpoint = s3_client.meta.endpoint_url
    parts = urlsplit(endpoint)
    # always the endpoint boto3 resolved (obstore would otherwise read AWS_ENDPOINT* itself)
    config: dict[str, Any] = {"region": s3_client.meta.region_name, "endpoint": endpoint}
    if (parts.hostname or "").endswith(".amazonaws.com") and "." not in bucket:
        # AWS: virtual-hosted, as boto3 addresses it (a dotted bucket name would break the TLS wildcard)
        config["endpoint"] = f"{parts.scheme}://{bucket}.{parts.netloc}"
        config["virtual_hosted_style_request"] = True
    else:  # a dotted bucket name on AWS, moto server, MinIO, any S3-compatible endpoint: path style
        config["virtual_hosted_style_request"] = False
    client_options: dict[str, Any] = {
        "allow_http": endpoint.startswith("http://"),
        "connect_timeout": f"{connect_timeout:g}s",
        "timeout": f"{timeout:g}s",
        "pool_max_idle_per_host": str(max(1, workers)),
        "user_agent": "tuttle-prep",
    }
    return ObjectStore(
        bucket,
        config=config,
        client_options=client_options,
        retry_config={"max_retries": retries},
        credential_provider=SessionCredentials(session),
    )


class DataPlane:
    """Copies and listings of one bucket through obstore (tests substitute an in-memory one)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def copy(self, src: str, dst: str) -> None:
        """Server-side copy `src` to `dst` (CopyObject); REQUEST_ERRORS after the retries."""
        await obstore.copy_async(self.store, src, dst)

    async def list_folder(self, folder: str) -> tuple[Any, list[str]]:
        """The objects directly in `folder` (an Arrow table of path, size, e_tag, ...) and its common prefixes
        (a '/' listing: every key with a '/' after the folder shows there, a key ending in '/' included)."""
        listed = await obstore.list_with_delimiter_async(self.store, folder.rstrip("/"), return_arrow=True)
        return listed["objects"], list(listed["common_prefixes"])


def describe(exc: BaseException) -> str:
    """One line for an obstore error: S3's `Code: Message` when the answer carried them."""
    text = str(exc)
    code = _S3_CODE.search(text)
    if code:
        message = _S3_MESSAGE.search(text)
        return f"{code.group(1)}: {message.group(1)}" if message else code.group(1)
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


class NestedKeys(Exception):
    """A folder holds keys with a '/' after the folder: a sub-folder, or a key ending in '/'. obstore names a key
    without its trailing '/' (`<frame>.jpg/` is listed as `<frame>.jpg`), so only S3's own names are true."""


def unnameable(error: BaseException | None) -> bool:
    """True for a folder obstore cannot list exactly: a key it cannot name (an empty, `.` or `..` segment, a
    control character: InvalidPathError) or a key with a '/' after the folder (NestedKeys)."""
    return isinstance(error, InvalidPathError | NestedKeys)


# ---- running async work from synchronous code ------------------------------------------------------------


def run_async(work: Callable[[threading.Event], Awaitable[T]]) -> T:
    """Run `work(stop)` on a fresh event loop in a thread; return its result or raise its error.

    If the calling thread gets an exception meanwhile (SIGTERM's RunStopped, Ctrl-C), `stop` is set — the work
    takes no new item — and the requests in flight get up to DRAIN_SECONDS to finish; then that exception
    propagates.

    The wait is on an Event the loop thread sets when `asyncio.run` has returned, never on `Thread.join`: on
    CPython 3.11 a join interrupted by a handler's exception marks the thread stopped while it still runs, so
    a second join returns at once and the drain would be skipped. The drain waits with signals held, so a
    second signal cannot cut it short either.
    """
    stop = threading.Event()
    finished = threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = asyncio.run(work(stop))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = exc
        finally:
            finished.set()

    thread = threading.Thread(target=target, name="s3-data-plane", daemon=True)
    _async_used.set()
    thread.start()
    try:
        while not finished.wait(0.2):  # short waits: a signal's handler runs in this thread between them
            pass
    except BaseException:
        stop.set()
        with signals_held():
            drained = finished.wait(DRAIN_SECONDS)
        if not drained:
            log.warning("stopping: S3 requests still in flight after %gs were let go", DRAIN_SECONDS)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


async def bounded(items: Iterable[T], call: Callable[[T], Awaitable[Any]], limit: int, stop: threading.Event) -> None:
    """Await `call(item)` for every item, at most `limit` at once; no new item once `stop` is set."""
    source = iter(items)

    async def worker() -> None:
        for item in source:
            if stop.is_set():
                return
            await call(item)

    await asyncio.gather(*(worker() for _ in range(max(1, limit))))


# ---- listing and copying ---------------------------------------------------------------------------------


async def _list_folder(
    plane: DataPlane, folder: str, schema: pa.Schema, on_batch: Callable[[int], Any] | None
) -> pa.Table:
    # a '/' listing, not a recursive one: a recursive listing names `<frame>.jpg/` as `<frame>.jpg`, which no
    # listed column tells apart; a '/' listing shows it (and any sub-folder) as a common prefix instead
    objects, prefixes = await plane.list_folder(folder)
    if prefixes:
        raise NestedKeys(f"{folder} holds keys with a '/' after it (first: {prefixes[0]!r})")
    imported = pa.table(objects)
    # a copy of the kept columns: the imported table's buffers (all its columns) live as long as any does
    kept = [pa.concat_arrays(imported.column(f.name).chunks or [pa.array([], f.type)]).cast(f.type) for f in schema]
    if on_batch is not None:
        on_batch(imported.num_rows)
    return pa.Table.from_arrays(kept, schema=schema)


def list_folders(
    plane: DataPlane,
    folders: list[str],
    concurrency: int,
    on_batch: Callable[[int], Any] | None = None,
    columns: Iterable[str] = LIST_SCHEMA.names,
) -> dict[str, pa.Table | BaseException]:
    """Every object directly in each folder as an Arrow table (the `columns` of LIST_SCHEMA), several folders at
    once; a folder whose listing failed maps to its error (REQUEST_ERRORS), one holding a key with a '/' after the
    folder to NestedKeys (list it by boto3), and the others still complete."""
    schema = pa.schema([LIST_SCHEMA.field(name) for name in columns])

    async def work(stop: threading.Event) -> dict[str, pa.Table | BaseException]:
        results: dict[str, pa.Table | BaseException] = {}

        async def one(folder: str) -> None:
            try:
                results[folder] = await _list_folder(plane, folder, schema, on_batch)
            except (*REQUEST_ERRORS, NestedKeys) as exc:
                results[folder] = exc

        await bounded(folders, one, concurrency, stop)
        return results

    return run_async(work)


def copy_objects(
    plane: DataPlane,
    jobs: list[tuple[str, str]],
    in_flight: int,
    on_done: Callable[[int, BaseException | None], Any],
) -> None:
    """Server-side copy of each (src, dst) job, `in_flight` requests at once; `on_done(index, None or the
    error)` is called (on the loop's thread) as each job ends."""

    async def work(stop: threading.Event) -> None:
        async def one(index: int) -> None:
            src, dst = jobs[index]
            try:
                await plane.copy(src, dst)
            except REQUEST_ERRORS as exc:
                on_done(index, exc)
            else:
                on_done(index, None)

        await bounded(range(len(jobs)), one, in_flight, stop)

    run_async(work)
