"""Reading episode sheets from Google Sheets with a service account.

One `GoogleSheetSource` per run holds one gspread HTTP client (one token, one connection pool) and is
safe to share between threads. Each `read` makes two Sheets API calls (spreadsheet metadata, then the
values of its first worksheet as formatted text), through:

* a semaphore, so at most `concurrency` sheets load at once whatever the caller's thread pool;
* a sliding-window rate limit (requests per minute), so a season of 20+ episodes stays under the
  per-user quota (60 read requests per minute);
* connect/read timeouts (gspread has none by default);
* bounded retries with exponential back-off and jitter on 408/429/5xx, timeouts and connection errors
  (tenacity; gspread's own `BackOffHTTPClient` is not used: in gspread 6.2 it can recurse without bound).

Access is read-only (`spreadsheets.readonly` scope). Failures raise `SheetError` with a message that
names the sheet and, where sharing is the likely fix, the service account's email. A missing or invalid
key file raises `ConfigError`. The key file's contents never appear in a message or log.

Settings (environment, all optional): `TUTTLE_GOOGLE_TIMEOUT` (read timeout, s), `TUTTLE_GOOGLE_ATTEMPTS`,
`TUTTLE_GOOGLE_CONCURRENCY`, `TUTTLE_GOOGLE_REQUESTS_PER_MINUTE`; `TUTTLE_GOOGLE_API_URL` is for tests only
(points the client at a fake Sheets API).
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import requests
import tenacity
from google.auth import exceptions as google_auth_errors
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account
from gspread.exceptions import APIError
from gspread.http_client import HTTPClient
from gspread.utils import absolute_range_name

from ..core.frame_table import FRAME_COLUMN, RARITY_COLUMNS, normalize_header
from ..core.sheets import is_google_location, table_from_rows
from ..core.text import quote_header
from ..errors import ConfigError, SheetContentError, SheetError
from ..settings import Settings, env_number

log = logging.getLogger(__name__)

#: read-only access to spreadsheets is all the job needs
SCOPES = ("https://www.googleapis.com/auth/spreadsheets.readonly",)
SHEETS_API_URL = "https://sheets.googleapis.com"
CREDENTIALS_VARIABLE = "GOOGLE_DRIVE_CREDENTIALS_FILE"

_KEY_IN_URL = re.compile(r"/spreadsheets/(?:u/[0-9]+/)?d/([A-Za-z0-9_-]{20,})")
_KEY_IN_QUERY = re.compile(r"[?&]key=([A-Za-z0-9_-]{20,})")
_PUBLISHED_LINK = re.compile(r"/spreadsheets/(?:u/[0-9]+/)?d/e/")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]{25,}$")
_REQUIRED_KEY_FIELDS = ("client_email", "private_key", "token_uri")
_QUOTA_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}


# --------------------------------------------------------------------------------------- locations
def spreadsheet_key(location: str) -> str:
    """The spreadsheet id in a share link, URL or bare key; SheetError naming the location if there is none."""
    problem = location_problem(location)
    if problem:
        raise SheetError(f"{location.strip()}: {problem}")
    location = location.strip()
    match = _KEY_IN_URL.search(location) or _KEY_IN_QUERY.search(location)
    return match.group(1) if match else location


def location_problem(location: str) -> str | None:
    """Why `location` cannot name a Google spreadsheet (None if it can): a sentence without the location."""
    location = location.strip()
    if _BARE_KEY.match(location):
        return None
    if not is_google_location(location):
        return "not a Google Sheets link (expected https://docs.google.com/spreadsheets/d/<id>/...)"
    if _PUBLISHED_LINK.search(location):
        return (
            "a 'Publish to web' link, which the Sheets API cannot open; use the sheet's share link (Share → Copy link)"
        )
    if _KEY_IN_URL.search(location) or _KEY_IN_QUERY.search(location):
        return None
    if "/spreadsheets" not in urlparse(location).path:
        return "a Google Docs link but not to a spreadsheet"
    return "a Google Sheets link without a spreadsheet id (expected .../spreadsheets/d/<id>/...)"


def is_sheet_key(location: str) -> bool:
    """True for a bare spreadsheet id (the part after /d/ in a sheet's URL)."""
    return bool(_BARE_KEY.match(location.strip()))


# ----------------------------------------------------------------------------------------- headers
def header_problems(columns: Sequence[str]) -> list[str]:
    """What is wrong with a sheet's header row for the sync: no FRAME NUMBER, or none of the rarity columns.

    Names match as in the sync (`frame_table.normalize_header`): trimmed, any case, ’ read as '.
    """
    columns = [str(c) for c in columns]
    present = {normalize_header(c) for c in columns}
    problems = []
    if normalize_header(FRAME_COLUMN) not in present:
        shown = quote_header(columns) if columns else "empty"
        problems.append(f"the header has no '{FRAME_COLUMN}' column (header: {shown})")
    if not any(normalize_header(h) in present for h in RARITY_COLUMNS):
        problems.append("the header has none of the rarity columns " + ", ".join(f"'{h}'" for h in RARITY_COLUMNS))
    return problems


# ----------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class GoogleOptions:
    """Timeouts, retries and pacing of the Sheets client. `from_env` reads the TUTTLE_GOOGLE_* variables."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    attempts: int = 6
    backoff_multiplier: float = 1.0
    backoff_max: float = 32.0
    backoff_jitter: float = 1.0
    concurrency: int = 3
    requests_per_minute: int = 50
    #: the rate limit's window in seconds (a minute; shorter only in tests)
    rate_window: float = 60.0
    api_base_url: str = SHEETS_API_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GoogleOptions:
        """Read TUTTLE_GOOGLE_TIMEOUT/_ATTEMPTS/_CONCURRENCY/_REQUESTS_PER_MINUTE/_API_URL; ConfigError if bad."""
        read_timeout = env_number(env, "TUTTLE_GOOGLE_TIMEOUT", cls.read_timeout, float, 1)
        api_url = env.get("TUTTLE_GOOGLE_API_URL", "").strip().rstrip("/") or cls.api_base_url
        if urlparse(api_url).scheme not in ("http", "https"):
            raise ConfigError(f"TUTTLE_GOOGLE_API_URL must be an http(s) URL, got '{api_url}'")
        return cls(
            connect_timeout=min(cls.connect_timeout, read_timeout),
            read_timeout=read_timeout,
            attempts=env_number(env, "TUTTLE_GOOGLE_ATTEMPTS", cls.attempts, int, 1),
            concurrency=env_number(env, "TUTTLE_GOOGLE_CONCURRENCY", cls.concurrency, int, 1),
            requests_per_minute=env_number(env, "TUTTLE_GOOGLE_REQUESTS_PER_MINUTE", cls.requests_per_minute, int, 1),
            api_base_url=api_url,
        )


# ------------------------------------------------------------------------------------- credentials
class _FakeApiCredentials(service_account.Credentials):
    """Credentials for a fake Sheets API (tests): no regional-access-boundary lookup.

    google-auth (2.40+) looks up the account's allowed locations at a fixed Google host in the
    background; with a fake API on 127.0.0.1 that call must not leave the machine.
    """

    def _is_regional_access_boundary_lookup_required(self) -> bool:
        return False


def load_credentials(path: Path | None, *, fake_api: bool = False) -> service_account.Credentials:
    """Read-only service-account credentials from the key file; ConfigError (one sentence) if unusable.

    `fake_api` (tests only) makes credentials that talk to nothing but the key's `token_uri`.
    """
    if path is None:
        raise ConfigError(
            f"{CREDENTIALS_VARIABLE} is not set; put the path of the service account's JSON key file in .env"
        )
    where = f"{CREDENTIALS_VARIABLE} ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; download the service account's JSON key there") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not the service account's JSON key file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(f"{where}: cannot read the key file ({reason})") from None
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"{where}: not a JSON key file (download the key again as JSON)") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{where}: not a service-account JSON key file")
    kind = info.get("type")
    if kind != "service_account":
        raise ConfigError(
            f"{where}: a key of type '{kind}', not a service-account key; "
            "create a JSON key for a service account (IAM → Service accounts → Keys)"
        )
    missing = [name for name in _REQUIRED_KEY_FIELDS if not str(info.get(name) or "").strip()]
    if missing:
        raise ConfigError(f"{where}: the key file lacks {', '.join(missing)}; download the key again")
    try:
        kind_of_credentials = _FakeApiCredentials if fake_api else service_account.Credentials
        return kind_of_credentials.from_service_account_info(info, scopes=list(SCOPES))
    except Exception:  # noqa: BLE001 - any parse failure; its text may quote the key, so it is not shown
        raise ConfigError(f"{where}: the private_key in the key file cannot be read; download the key again") from None


# ------------------------------------------------------------------------------------------ pacing
class RateLimiter:
    """At most `per_minute` acquisitions in any 60-second window; blocks (thread-safely) until allowed."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        window: float = 60.0,
    ) -> None:
        self.per_minute = per_minute
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._starts: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a free slot in the window; return the seconds waited."""
        waited = 0.0
        with self._lock:  # waiters queue on the lock, so slots are handed out in order
            while True:
                now = self._clock()
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                if len(self._starts) < self.per_minute:
                    self._starts.append(now)
                    return waited
                pause = self.window - (now - self._starts[0])
                self._sleep(pause)
                waited += pause


# -------------------------------------------------------------------------------------- http layer
def _status(exc: BaseException) -> int | None:
    if isinstance(exc, APIError):
        return exc.response.status_code
    return None


def _error_reasons(exc: APIError) -> set[str]:
    reasons = {str(e.get("reason", "")) for e in exc.error.get("errors", []) if isinstance(e, dict)}
    reasons |= {str(d.get("reason", "")) for d in exc.error.get("details", []) if isinstance(d, dict)}
    return reasons - {""}


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: 408/429/5xx, quota 403s, timeouts, connection and token-server errors."""
    if isinstance(exc, APIError):
        status = exc.response.status_code
        if status in (408, 429) or status >= 500:
            return True
        return status == 403 and bool(_error_reasons(exc) & _QUOTA_REASONS)
    if isinstance(exc, google_auth_errors.RefreshError):
        return bool(getattr(exc, "retryable", False))
    return isinstance(exc, (requests.Timeout, requests.ConnectionError, google_auth_errors.TransportError))


def _retry_after(exc: BaseException) -> float:
    if isinstance(exc, APIError):
        try:
            return max(0.0, float(exc.response.headers.get("Retry-After", "")))
        except ValueError:
            return 0.0
    return 0.0


class _SheetsHTTPClient(HTTPClient):
    """gspread's HTTP client with timeouts, rate limit, retries, one shared token and an API base-URL seam."""

    def __init__(self, credentials: service_account.Credentials, options: GoogleOptions) -> None:
        super().__init__(credentials, AuthorizedSession(credentials))
        self.auth = credentials
        self.options = options
        self.set_timeout((options.connect_timeout, options.read_timeout))
        self._limiter = RateLimiter(options.requests_per_minute, window=options.rate_window)
        self._token_lock = threading.Lock()
        self._token_request = Request()
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=options.backoff_multiplier, max=options.backoff_max, jitter=options.backoff_jitter
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = min(_retry_after(exc), 60.0) if exc else 0.0
        return max(self._backoff(state), retry_after)

    def _log_retry(self, state: tenacity.RetryCallState, sheet: str) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "Google Sheets, spreadsheet %s: attempt %d of %d failed (%s); retrying in %.1fs",
            sheet,
            state.attempt_number,
            self.options.attempts,
            describe_failure(exc) if exc else "?",
            wait,
        )

    def _refresh_token(self) -> None:
        """Get a token once for all threads (AuthorizedSession alone would let each thread fetch one)."""
        with self._token_lock:
            if not self.auth.valid:
                self.auth.refresh(_TimedRequest(self._token_request, self.timeout))

    def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> requests.Response:
        """One API call: rewritten to the configured base URL, paced, timed out, retried when transient."""
        if endpoint.startswith(SHEETS_API_URL) and self.options.api_base_url != SHEETS_API_URL:
            endpoint = self.options.api_base_url + endpoint[len(SHEETS_API_URL) :]
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.options.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(is_transient),
            before_sleep=functools.partial(self._log_retry, sheet=_spreadsheet_of(endpoint)),
        )

        def attempt() -> requests.Response:
            self._refresh_token()
            waited = self._limiter.acquire()
            if waited:
                log.info(
                    "Google Sheets: waited %.1fs to stay under %d requests/minute", waited, self._limiter.per_minute
                )
            return super(_SheetsHTTPClient, self).request(method, endpoint, *args, **kwargs)

        return retrying(attempt)


def _spreadsheet_of(endpoint: str) -> str:
    """The spreadsheet id in an API URL (for log lines)."""
    return endpoint.partition("/spreadsheets/")[2].split("/")[0].split(":")[0] or "?"


class _TimedRequest:
    """google-auth transport request with the client's timeout (its default is 120 s)."""

    def __init__(self, request: Request, timeout: Any) -> None:
        self._request = request
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return self._request(*args, **kwargs)


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free description of a failed call."""
    if isinstance(exc, APIError):
        status = exc.response.status_code
        message = str(exc.error.get("message") or "").strip()
        if exc.error.get("code") == -1:  # not a JSON error body (a proxy's HTML page, ...)
            message = exc.response.reason or ""
        return f"HTTP {status}" + (f" {message[:200]}" if message else "")
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    if isinstance(exc, google_auth_errors.RefreshError):
        return "token request failed: " + str(exc.args[0] if exc.args else exc)[:200]
    if isinstance(exc, google_auth_errors.TransportError):
        return "token request failed (network)"
    return type(exc).__name__


# ------------------------------------------------------------------------------------------ source
class GoogleSheetSource:
    """Reads the first worksheet of a Google spreadsheet (share link, URL or key) as a table of strings."""

    name = "google-sheets"

    def __init__(self, credentials: service_account.Credentials, options: GoogleOptions | None = None) -> None:
        """One HTTP client (one token, one connection pool) for the life of the source.

        `options.api_base_url` replaces the Sheets API host (tests: a fake on 127.0.0.1; build the
        credentials with `load_credentials(..., fake_api=True)` then).
        """
        self.options = options or GoogleOptions()
        self.service_account_email: str = credentials.service_account_email
        self._http = _SheetsHTTPClient(credentials, self.options)
        self._slots = threading.BoundedSemaphore(self.options.concurrency)

    @classmethod
    def from_settings(
        cls, settings: Settings, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> GoogleSheetSource:
        """Build from `Settings.google_credentials_file` and the TUTTLE_GOOGLE_* variables; ConfigError if unusable.

        `overrides` replace single `GoogleOptions` fields (e.g. tiny back-off waits in tests).
        """
        options = GoogleOptions.from_env(os.environ if env is None else env)
        if overrides:
            options = replace(options, **overrides)
        fake_api = options.api_base_url != SHEETS_API_URL
        return cls(load_credentials(settings.google_credentials_file, fake_api=fake_api), options)

    def can_read(self, location: str) -> bool:
        """Google Sheets links (any docs.google.com URL, to report non-sheet links clearly) and bare keys."""
        return is_google_location(location) or is_sheet_key(location)

    def read(self, location: str, *, title: str = "", episode_id: str = "") -> pd.DataFrame:
        """The first worksheet, header row as columns, "" for blanks, trailing blank rows dropped.

        `title`/`episode_id` (from the manifest) only make error messages clearer. The DataFrame's
        `attrs` hold the spreadsheet's real `sheet_title`, `worksheet_title`, `spreadsheet_id` and the
        first worksheet's `worksheet_gid` (for links to its cells).
        """
        location = location.strip()
        key = spreadsheet_key(location)
        where = _where(location, title)
        with self._slots:
            started = time.monotonic()
            try:
                meta = self._http.fetch_sheet_metadata(
                    key, params={"includeGridData": "false", "fields": "properties.title,sheets.properties"}
                )
                sheets = sorted(
                    (s.get("properties", {}) for s in meta.get("sheets", [])), key=lambda p: p.get("index", 0)
                )
                if not sheets:
                    raise SheetContentError(f"{where}: the spreadsheet has no worksheet")
                worksheet = str(sheets[0].get("title", ""))
                response = self._http.values_get(
                    key,
                    absolute_range_name(worksheet),
                    params={"valueRenderOption": "FORMATTED_VALUE", "majorDimension": "ROWS"},
                )
            except tenacity.RetryError as exc:
                attempt = exc.last_attempt
                raise SheetError(self._gave_up(where, attempt.exception(), attempt.attempt_number, started)) from None
            except SheetError:
                raise
            except Exception as exc:  # noqa: BLE001 - every other failure becomes this episode's SheetError
                log.debug("%s: request failed", where, exc_info=True)
                raise SheetError(self._refused(where, exc)) from None
        rows: list[list[Any]] = [list(r) for r in response.get("values", [])]
        while rows and not any(str(cell).strip() for cell in rows[-1]):
            rows.pop()
        table = table_from_rows(rows, where)
        table.attrs["sheet_title"] = str(meta.get("properties", {}).get("title", ""))
        table.attrs["worksheet_title"] = worksheet
        table.attrs["spreadsheet_id"] = key
        if isinstance(sheets[0].get("sheetId"), int):  # the gid of links to its cells
            table.attrs["worksheet_gid"] = sheets[0]["sheetId"]
        log.debug("%s: read %d rows from worksheet '%s'", where, len(table), worksheet)
        return table

    # ------------------------------------------------------------------------------ error messages
    def _share_hint(self) -> str:
        return f"share the sheet with the service account {self.service_account_email} (Share → add as Viewer)"

    def _refused(self, where: str, exc: BaseException) -> str:
        status = _status(exc)
        detail = describe_failure(exc)
        if status == 403 and isinstance(exc, APIError):
            text = str(exc.error.get("message", ""))
            if "SERVICE_DISABLED" in _error_reasons(exc) or "has not been used" in text or "is disabled" in text:
                return (
                    f"{where}: the Google Sheets API is not enabled in the service account's Google Cloud "
                    f"project; enable it (APIs & Services → Library → Google Sheets API) ({detail})"
                )
            return f"{where}: no access (403): {self._share_hint()}"
        if status == 404:
            return f"{where}: not found (404): check the link in the manifest; if it is right, {self._share_hint()}"
        if status == 400 and isinstance(exc, APIError) and "not supported for this document" in str(exc.error):
            return (
                f"{where}: the file is not a Google Sheet (an uploaded Excel file?); open it and use "
                f"File → Save as Google Sheets, then put the new link in the manifest ({detail})"
            )
        if isinstance(exc, google_auth_errors.RefreshError):
            return (
                f"{where}: Google refused the service-account key of {self.service_account_email} ({detail}); "
                f"check that the key in {CREDENTIALS_VARIABLE} is current and not deleted or disabled"
            )
        return f"{where}: Google Sheets refused the request ({detail})"

    def _gave_up(self, where: str, exc: BaseException | None, attempts: int, started: float) -> str:
        elapsed = time.monotonic() - started
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.0f}s"
        status = _status(exc) if exc else None
        if status == 429 or status == 403:
            return (
                f"{where}: Google Sheets quota exhausted ({tries}); run again later, or lower "
                "TUTTLE_GOOGLE_CONCURRENCY / TUTTLE_GOOGLE_REQUESTS_PER_MINUTE"
            )
        if isinstance(exc, requests.Timeout):
            return (
                f"{where}: Google Sheets did not answer within {self.options.read_timeout:g}s ({tries}); "
                "run again later or raise TUTTLE_GOOGLE_TIMEOUT"
            )
        failure = describe_failure(exc) if exc else "no answer"
        return f"{where}: Google Sheets kept failing ({failure}; {tries}); run again later"


def _where(location: str, title: str) -> str:
    title = title.strip()
    return f"Google sheet '{title}' ({location})" if title else f"Google sheet {location}"
