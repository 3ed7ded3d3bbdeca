"""A fault-injecting HTTP proxy for S3 on 127.0.0.1, in front of moto server (tests only).

Every request of every client (boto3 and obstore alike) passes through it, so tests can see and fail the
requests botocore event hooks cannot. The proxy names each request's S3 operation (CopyObject, ListObjectsV2,
DeleteObjects, ...), records it (`requests`), and lets a test answer it instead of moto (`fail`):

    with S3FaultProxy(moto_endpoint) as proxy:
        proxy.fail = lambda request: slow_down(request) if request.operation == "CopyObject" else None
        ... AWS_ENDPOINT_URL=proxy.endpoint ...
        assert proxy.of("CopyObject")

`fail(request)` returns None (forward to moto) or an `Answer` (status, body, headers), e.g. from `s3_error`.
`delay` (seconds per request, by operation) slows chosen operations down, so a test can stop a run mid-copy.
`hide_prefixes(prefix)` removes the common prefixes it returns True for from moto's ListObjects(V2) answers
(a store whose '/'-delimited listing does not name some folders), for boto3's and obstore's listings alike.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit
from xml.sax.saxutils import escape

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
#: headers of one connection (and `Expect`, which the proxy answers itself), not forwarded
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_HOP_BY_HOP |= {"expect"}
_COMMON_PREFIX = re.compile(rb"<CommonPrefixes>\s*<Prefix>(.*?)</Prefix>\s*</CommonPrefixes>", re.DOTALL)


@dataclass
class Request:
    """One S3 request as the proxy saw it."""

    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    operation: str = ""
    #: the access key id the request was signed with (from the Authorization header)
    access_key: str | None = None
    #: the attempt number of this (operation, key, query) so far, 1 for the first
    attempt: int = 1

    @property
    def copy_source(self) -> str:
        """The source key of a CopyObject (without the bucket)."""
        source = unquote(self.headers.get("x-amz-copy-source", "")).lstrip("/")
        return source.split("?", 1)[0].split("/", 1)[-1]

    def delete_keys(self) -> list[str]:
        """The keys of a DeleteObjects request."""
        return [e.text or "" for e in ET.fromstring(self.body).iter() if e.tag.split("}")[-1] == "Key"]

    @property
    def params(self) -> dict[str, Any]:
        """The request as boto3 API parameters (Key, Prefix, ContinuationToken, MaxKeys, CopySource, Delete)."""
        if self.operation in ("ListObjectsV2", "ListObjects"):
            params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.query.get("prefix", "")}
            for name, field_name in (("continuation-token", "ContinuationToken"), ("delimiter", "Delimiter")):
                if name in self.query:
                    params[field_name] = self.query[name]
            if "max-keys" in self.query:
                params["MaxKeys"] = int(self.query["max-keys"])
            return params
        if self.operation == "DeleteObjects":
            return {"Bucket": self.bucket, "Delete": {"Objects": [{"Key": k} for k in self.delete_keys()]}}
        if self.operation == "CopyObject":
            source = {"Bucket": self.bucket, "Key": self.copy_source}
            return {"Bucket": self.bucket, "Key": self.key, "CopySource": source}
        return {"Bucket": self.bucket, "Key": self.key}


@dataclass
class Answer:
    """What the proxy sends instead of moto's response."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: seconds to wait before answering
    delay: float = 0.0


def s3_error(status: int, code: str, message: str = "injected fault") -> Answer:
    """An S3 error response (`<Error><Code>…`)."""
    body = f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    body = f'<?xml version="1.0" encoding="UTF-8"?>{body}'
    return Answer(status, body.encode(), {"Content-Type": "application/xml"})


def slow_down() -> Answer:
    return s3_error(503, "SlowDown", "Please reduce your request rate.")


def internal_error() -> Answer:
    return s3_error(500, "InternalError", "We encountered an internal error. Please try again.")


def delete_result(errors: dict[str, tuple[str, str]]) -> Answer:
    """A 200 DeleteObjects response listing per-key errors {key: (code, message)} (quiet mode: no Deleted)."""
    items = "".join(
        f"<Error><Key>{escape(k)}</Key><Code>{c}</Code><Message>{escape(m)}</Message></Error>"
        for k, (c, m) in errors.items()
    )
    body = f'<?xml version="1.0" encoding="UTF-8"?><DeleteResult>{items}</DeleteResult>'
    return Answer(200, body.encode(), {"Content-Type": "application/xml"})


def operation_of(method: str, key: str, query: dict[str, str], headers: dict[str, str]) -> str:
    """The S3 API operation of a path-style request."""
    if not key:
        if method == "GET":
            return "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, method)
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            return "UploadPartCopy" if "partNumber" in query else "CopyObject"
        return "UploadPart" if "partNumber" in query else "PutObject"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject", "POST": "MultipartUpload"}.get(
        method, method
    )


class S3FaultProxy:
    """Forward path-style S3 requests from 127.0.0.1:<port> to `upstream`; record them; fail the chosen ones."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.requests: list[Request] = []
        self.fail: Callable[[Request], Answer | None] | None = None
        self.delay: dict[str, float] = {}
        #: when set, ListObjectsV2 pages hold at most this many keys (many pages from a small bucket)
        self.page_size: int | None = None
        #: when set, the common prefixes (as S3 names them, decoded) it returns True for leave listing answers
        self.hide_prefixes: Callable[[str], bool] | None = None
        self._lock = threading.Lock()
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

            def log_message(self, *_: object) -> None:
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget the recorded requests and stop failing or slowing any."""
        with self._lock:
            self.requests.clear()
            self._attempts.clear()
        self.fail = None
        self.delay = {}
        self.page_size = None
        self.hide_prefixes = None

    def of(self, operation: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    def operations(self) -> list[str]:
        with self._lock:
            return [r.operation for r in self.requests]

    # ---- serving -------------------------------------------------------------------------------------

    def _read_body(self, handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = self._read_body(handler)
        target = urlsplit(handler.path)
        path = unquote(target.path)
        bucket, _, key = path.lstrip("/").partition("/")
        query = {k: v[0] for k, v in parse_qs(target.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = Request(handler.command, bucket, key, query, headers, body)
        request.operation = operation_of(handler.command, key, query, headers)
        found = _CREDENTIAL.search(headers.get("authorization", ""))
        request.access_key = found.group(1) if found else None
        identity = (request.operation, key, target.query)
        with self._lock:
            request.attempt = self._attempts[identity] = self._attempts.get(identity, 0) + 1
            self.requests.append(request)
        delay = self.delay.get(request.operation, 0.0)
        if delay:
            time.sleep(delay)
        answer = self.fail(request) if self.fail is not None else None
        if answer is None:
            status, reply_headers, reply = self._forward(handler, request, body)
            if self.hide_prefixes is not None and status == 200 and request.operation.startswith("ListObjects"):
                reply = self._without_prefixes(reply, request, self.hide_prefixes)
        else:
            if answer.delay:
                time.sleep(answer.delay)
            status, reply_headers, reply = answer.status, list(answer.headers.items()), answer.body
        try:
            handler.send_response(status)
            for name, value in reply_headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(reply)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    @staticmethod
    def _without_prefixes(reply: bytes, request: Request, hide: Callable[[str], bool]) -> bytes:
        """The listing answer without the `<CommonPrefixes>` entries `hide` names (url-encoded ones decoded)."""
        url_encoded = request.query.get("encoding-type") == "url"

        def keep_or_drop(found: re.Match[bytes]) -> bytes:
            name = ET.fromstring(b"<P>" + found.group(1) + b"</P>").text or ""
            return b"" if hide(unquote_plus(name) if url_encoded else name) else found.group(0)

        return _COMMON_PREFIX.sub(keep_or_drop, reply)

    def _forward(
        self, handler: BaseHTTPRequestHandler, request: Request, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        path = handler.path
        if self.page_size and request.operation == "ListObjectsV2" and "max-keys" not in request.query:
            path += f"&max-keys={self.page_size}"
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
                self._local.connection = connection
            try:
                connection.request(handler.command, path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")
