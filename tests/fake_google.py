"""A fake Google OAuth token endpoint and Sheets v4 API on 127.0.0.1, for tests.

The token endpoint verifies the service account's signed JWT with the public half of a throwaway RSA key
(as Google does) and hands out bearer tokens; the Sheets API accepts only those tokens. Each spreadsheet
can be told to fail: a fixed status (403, 404), a queue of statuses returned before success (429, 503),
or a delay before answering (to trigger read timeouts).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

SERVICE_ACCOUNT_EMAIL = "tuttle-prep@tuttle-test.iam.gserviceaccount.com"
#: the audience google-auth signs service-account JWTs for, whatever the token_uri (as Google expects)
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
PRIVATE_KEY_ID = "0123456789abcdef0123456789abcdef01234567"

_GOOGLE_ERRORS = {
    400: ("FAILED_PRECONDITION", "This operation is not supported for this document"),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: (
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user'",
    ),
    500: ("INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
}


@dataclass
class FakeSpreadsheet:
    """One spreadsheet and how it behaves."""

    title: str
    rows: list[list[str]]
    worksheets: list[str] = field(default_factory=lambda: ["Sheet1"])
    #: other worksheets' rows by title (the first worksheet's are `rows`)
    other_rows: dict[str, list[list[str]]] = field(default_factory=dict)
    #: every API request for this sheet answers with this status (403, 404, ...)
    status: int | None = None
    #: statuses answered, one per request, before the sheet answers normally
    fail_first: list[int] = field(default_factory=list)
    #: an HTML body instead of Google's JSON error (what a proxy in front of Google sends)
    html_errors: bool = False
    #: seconds to wait before answering each API request
    delay: float = 0.0


@dataclass
class Hit:
    """One request the fake API received."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int


class FakeGoogle:
    """Token endpoint (`/token`) and Sheets API (`/v4/spreadsheets/...`) on one loopback port."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        self.public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.sheets: dict[str, FakeSpreadsheet] = {}
        self.hits: list[Hit] = []
        self.claims: list[dict[str, Any]] = []
        self.tokens: set[str] = set()
        self.token_status: int | None = None  # e.g. 400 to reject every key (invalid_grant)
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-google", daemon=True
        )

    # -------------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    def start(self) -> FakeGoogle:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -------------------------------------------------------------------------------- test API
    def add_sheet(self, key: str, rows: list[list[str]], title: str = "", **behaviour: Any) -> FakeSpreadsheet:
        sheet = FakeSpreadsheet(title=title or f"Sheet {key[:8]}", rows=rows, **behaviour)
        self.sheets[key] = sheet
        return sheet

    def key_file(self, directory: Path, **changes: Any) -> Path:
        """Write a service-account JSON key whose token_uri is this server; `changes` override fields."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {
            "type": "service_account",
            "project_id": "tuttle-test",
            "private_key_id": PRIVATE_KEY_ID,
            "private_key": pem,
            "client_email": SERVICE_ACCOUNT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": self.url + "/auth",
            "token_uri": self.token_uri,
        }
        info.update(changes)
        info = {k: v for k, v in info.items() if v is not None}
        path = directory / "service-account.json"
        path.write_text(json.dumps(info), encoding="utf-8")
        return path

    def api_hits(self, key: str | None = None) -> list[Hit]:
        return [h for h in self.hits if h.path.startswith("/v4/") and (key is None or f"/{key}" in h.path)]

    # -------------------------------------------------------------------------------- handling
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default log
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                if urlparse(self.path).path != "/token":
                    self._send(404, {"error": "not_found"})
                    return
                self._send(*fake._token(parse_qs(body)))

            def do_GET(self) -> None:
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    status, payload, html = fake._api(self)
                    self._send(status, payload, html=html)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _send(self, status: int, payload: Any, html: bool = False) -> None:
                if html:
                    data, kind = b"<html><body><h1>Bad Gateway</h1></body></html>", "text/html"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json; charset=UTF-8"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (read timeout)
                    pass

        return Handler

    def _token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if self.token_status is not None:
            return self.token_status, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(form["assertion"][0], certs=self.public_pem, audience=GOOGLE_TOKEN_AUDIENCE)
        except (KeyError, ValueError) as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        token = f"fake-token-{next(self._numbers)}"
        with self._lock:
            self.claims.append(claims)
            self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def _api(self, handler: BaseHTTPRequestHandler) -> tuple[int, Any, bool]:
        parsed = urlparse(handler.path)
        query = parse_qs(parsed.query)
        parts = parsed.path.split("/")  # ['', 'v4', 'spreadsheets', key, ('values', range)]
        status, payload, html = self._answer(handler, parts, query)
        with self._lock:
            self.hits.append(Hit("GET", parsed.path, query, status))
        return status, payload, html

    def _answer(self, handler: BaseHTTPRequestHandler, parts: list[str], query: dict) -> tuple[int, Any, bool]:
        auth = handler.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if len(parts) < 4 or parts[1:3] != ["v4", "spreadsheets"]:
            return _error(404, "NOT_FOUND", "Unknown method.")
        sheet = self.sheets.get(parts[3])
        if sheet is None:
            return _error(404, *_GOOGLE_ERRORS[404])
        if sheet.delay:
            time.sleep(sheet.delay)
        with self._lock:
            failure = sheet.fail_first.pop(0) if sheet.fail_first else sheet.status
        if failure is not None:
            if sheet.html_errors:
                return failure, None, True
            return _error(failure, *_GOOGLE_ERRORS.get(failure, ("UNKNOWN", "error")))
        if len(parts) == 4:
            return 200, self._metadata(parts[3], sheet), False
        if len(parts) == 6 and parts[4] == "values":
            title = unquote(parts[5]).strip("'").replace("''", "'")
            if title not in sheet.worksheets:
                return _error(400, "INVALID_ARGUMENT", f"Unable to parse range: {unquote(parts[5])}")
            rows = sheet.rows if title == sheet.worksheets[0] else sheet.other_rows.get(title, [])
            return 200, {"range": f"'{title}'!A1:Z{len(rows)}", "majorDimension": "ROWS", "values": rows}, False
        return _error(404, "NOT_FOUND", "Unknown method.")

    @staticmethod
    def _metadata(key: str, sheet: FakeSpreadsheet) -> dict[str, Any]:
        # listed in reverse order on purpose: the first worksheet is the one with index 0
        sheets = [
            {"properties": {"sheetId": 1000 + i, "title": title, "index": i, "sheetType": "GRID"}}
            for i, title in enumerate(sheet.worksheets)
        ]
        return {"spreadsheetId": key, "properties": {"title": sheet.title, "locale": "en_US"}, "sheets": sheets[::-1]}


def _error(status: int, kind: str, message: str) -> tuple[int, Any, bool]:
    return status, {"error": {"code": status, "message": message, "status": kind}}, False


def make_private_key() -> rsa.RSAPrivateKey:
    """A throwaway 2048-bit RSA key (the size Google issues)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.lru_cache(maxsize=1)
def shared_private_key() -> rsa.RSAPrivateKey:
    """One throwaway key per test session (generating one takes a noticeable fraction of a second)."""
    return make_private_key()


@contextlib.contextmanager
def running_fake_google() -> Iterator[FakeGoogle]:
    """A started fake, stopped on exit (use from a fixture)."""
    fake = FakeGoogle(shared_private_key()).start()
    try:
        yield fake
    finally:
        fake.stop()


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def forbid_non_loopback(monkeypatch: Any) -> list[str]:
    """Make every name lookup of a host other than loopback fail; return the list of hosts that were tried.

    google-auth makes some calls from background threads and swallows their errors, so a test must
    assert the returned list is empty rather than rely on an exception.
    """
    attempts: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in _LOOPBACK:
            attempts.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"tests may only use 127.0.0.1, not {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return attempts
