#!/usr/bin/env python3
"""A small in-memory S3 endpoint for the benchmarks: the subset of the S3 REST API the job uses, fast.

Not a product and not a test double for behaviour (the tests use moto server): it exists so the benchmarks
measure the client, not moto's ~250 requests/s. Standard library only, so the benchmarks run from the
repository alone:

    python benchmarks/local_s3.py --port 5200 --latency-ms 20     # serves http://127.0.0.1:5200 until stopped

Served: CreateBucket, HeadBucket, ListObjectsV2 (prefix, delimiter, max-keys, continuation-token,
start-after, encoding-type=url), HeadObject, GetObject (one `Range: bytes=a-b`), PutObject (aws-chunked and
HTTP-chunked bodies, `x-amz-meta-*`, `If-None-Match: *`, `If-Match`), CopyObject (`x-amz-copy-source`),
DeleteObject (`If-Match`) and DeleteObjects. Anything else answers 501 NotImplemented, so a benchmark that
starts using a new request fails loudly instead of measuring a wrong answer.

Every request first waits `--latency-ms` (a thread per connection, so waits overlap as a region's round
trips do). Requests are counted by operation, and writes (put, copy, delete) by the first two levels of
their key (`w:tuttle_twins/ML`). Admin paths: `GET /__stats` (the counts and objects per bucket),
`POST /__reset` (clear the counts), `POST /__seed?bucket=B&size=S` (the body: one key a line; each gets S
zero bytes, in one request).
"""

from __future__ import annotations

import argparse
import bisect
import email.utils
import hashlib
import json
import re
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
_RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")


@dataclass(frozen=True)
class Stored:
    """One object: its bytes, quoted MD5 ETag, modification time, content type and user metadata."""

    body: bytes
    etag: str
    modified: float
    content_type: str
    metadata: tuple[tuple[str, str], ...] = ()


def stored(body: bytes, content_type: str = "binary/octet-stream", metadata: tuple = ()) -> Stored:
    """An object as S3 keeps it (the ETag of a single-part upload is the quoted MD5 of its bytes)."""
    return Stored(body, f'"{hashlib.md5(body).hexdigest()}"', time.time(), content_type, metadata)


@dataclass
class Bucket:
    """Objects by key, and the keys in order for listings.

    New keys wait in `_new` and are merged into `_sorted` by the next listing (one sort of the new keys and
    a linear merge), so a burst of copies costs no O(n) insert each; deleted keys stay in `_sorted` until
    enough of them are gone that a listing compacts it.
    """

    objects: dict[str, Stored] = field(default_factory=dict)
    _sorted: list[str] = field(default_factory=list)
    _new: set[str] = field(default_factory=set)
    _gone: int = 0

    def put(self, key: str, value: Stored) -> None:
        if key not in self.objects:
            self._new.add(key)
        self.objects[key] = value

    def delete(self, key: str) -> None:
        if self.objects.pop(key, None) is not None:
            if key in self._new:
                self._new.discard(key)
            else:
                self._gone += 1

    def sorted_keys(self) -> list[str]:
        """Every key in order, deleted ones possibly among them (read it under the store's lock)."""
        if self._new or self._gone * 2 > len(self._sorted):
            live = [k for k in self._sorted if k in self.objects and k not in self._new]
            self._sorted = sorted(live + sorted(self._new))  # two sorted runs: a linear merge
            self._new, self._gone = set(), 0
        return self._sorted

    def listing(
        self, prefix: str, delimiter: str, token: str, start_after: str, max_keys: int
    ) -> tuple[list[tuple[str, Stored]], list[str], str | None]:
        """(objects, common prefixes, next continuation token): one ListObjectsV2 page."""
        keys = self.sorted_keys()
        index = bisect.bisect_left(keys, prefix)
        if token:
            index = max(index, bisect.bisect_left(keys, _from_token(token)))
        elif start_after:
            index = max(index, bisect.bisect_right(keys, start_after))
        contents: list[tuple[str, Stored]] = []
        prefixes: list[str] = []
        while index < len(keys):
            key = keys[index]
            if not key.startswith(prefix):
                break
            value = self.objects.get(key)
            if value is None:  # deleted, not compacted yet
                index += 1
                continue
            if len(contents) + len(prefixes) >= max_keys:
                return contents, prefixes, _to_token(key)
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                prefixes.append(common)
                index = bisect.bisect_left(keys, common + _LAST_CHAR, index)  # past every key under it
                continue
            contents.append((key, value))
            index += 1
        return contents, prefixes, None


#: sorts after every character a key holds: `folder/` + it is past every key under `folder/`
_LAST_CHAR = "\U0010ffff"


def _to_token(key: str) -> str:
    """An opaque continuation token: the next key to list, hex-encoded."""
    return key.encode("utf-8").hex()


def _from_token(token: str) -> str:
    try:
        return bytes.fromhex(token).decode("utf-8")
    except ValueError:
        return ""


class Store:
    """The buckets, the request counts and the added latency, shared by the handler threads."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.buckets: dict[str, Bucket] = {}
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def count(self, operation: str) -> None:
        with self.lock:
            self.counts[operation] += 1

    def wrote(self, key: str) -> None:
        """A write (put, copy, delete), counted by the first two levels of its key: `w:tuttle_twins/ML`."""
        with self.lock:
            self.counts["w:" + "/".join(key.split("/")[:2])] += 1


def _xml(root: str, inner: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NAMESPACE}">{inner}</{root}>'.encode()


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(when))


def _decode_aws_chunked(raw: bytes) -> bytes:
    """The payload of an `aws-chunked` body (`<hex size>[;ext]\\r\\n<bytes>\\r\\n`…, then trailers)."""
    out, at = bytearray(), 0
    while at < len(raw):
        end = raw.index(b"\r\n", at)
        size = int(raw[at:end].split(b";")[0], 16)
        if size == 0:
            break
        out += raw[end + 2 : end + 2 + size]
        at = end + 2 + size + 2
    return bytes(out)


class Handler(BaseHTTPRequestHandler):
    """One connection (HTTP/1.1 keep-alive): each request is answered from `server.store`."""

    protocol_version = "HTTP/1.1"
    #: small answers go out at once: no Nagle wait for the client's delayed ACK between headers and body
    disable_nagle_algorithm = True
    server: LocalS3

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        """Quiet: a benchmark's endpoint writes no access log."""

    # ---- plumbing ---------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            raw = bytes(out)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "aws-chunked" in self.headers.get("Content-Encoding", "") or self.headers.get(
            "x-amz-decoded-content-length"
        ):
            raw = _decode_aws_chunked(raw)
        return raw

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        """Status line, headers and body in one write (one TCP segment for a small answer)."""
        headers = dict(headers or {})
        if body and "Content-Type" not in headers:
            headers["Content-Type"] = "application/xml"
        headers.setdefault("Content-Length", str(len(body)))
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}", "Server: local_s3"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.log_request(status)
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body))

    def _error(self, status: int, code: str, message: str, resource: str = "", head: bool = False) -> None:
        inner = f"<Code>{code}</Code><Message>{escape(message)}</Message><Resource>{escape(resource)}</Resource>"
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error>{inner}</Error>'.encode()
        self._send(status, b"" if head else body, head=head)

    def _route(self) -> tuple[str, str, dict[str, str]]:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        bucket, _, key = parts.path.lstrip("/").partition("/")
        return urllib.parse.unquote(bucket), urllib.parse.unquote(key), query

    def _handle(self) -> None:
        store = self.server.store
        if store.latency_s:
            time.sleep(store.latency_s)
        if self.path.startswith("/__"):
            self._admin()
            return
        bucket_name, key, query = self._route()
        with store.lock:
            bucket = store.buckets.get(bucket_name)
        if not key:
            self._bucket_request(store, bucket_name, bucket, query)
        elif bucket is None:
            self._body()
            self._error(404, "NoSuchBucket", "The specified bucket does not exist", bucket_name, self.command == "HEAD")
        else:
            self._object_request(store, bucket, key)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle  # noqa: N815 - the names http.server calls

    # ---- buckets ----------------------------------------------------------------------------------

    def _bucket_request(self, store: Store, name: str, bucket: Bucket | None, query: dict[str, str]) -> None:
        if self.command == "PUT":
            self._body()
            store.count("CreateBucket")
            with store.lock:
                store.buckets.setdefault(name, Bucket())
            self._send(200)
            return
        if bucket is None:
            self._body()
            self._error(404, "NoSuchBucket", "The specified bucket does not exist", name, self.command == "HEAD")
            return
        if self.command == "HEAD":
            store.count("HeadBucket")
            self._send(200)
        elif self.command == "POST" and "delete" in query:
            self._delete_objects(store, bucket)
        elif self.command == "GET" and query.get("list-type") == "2":
            self._list(store, name, bucket, query)
        else:
            self._body()
            self._error(501, "NotImplemented", f"{self.command} {self.path} is not served by local_s3")

    def _list(self, store: Store, name: str, bucket: Bucket, query: dict[str, str]) -> None:
        store.count("ListObjectsV2")
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        max_keys = min(int(query.get("max-keys") or MAX_KEYS), MAX_KEYS)
        with store.lock:
            contents, prefixes, token = bucket.listing(
                prefix, delimiter, query.get("continuation-token", ""), query.get("start-after", ""), max_keys
            )
        url = query.get("encoding-type") == "url"

        def name_of(text: str) -> str:
            return urllib.parse.quote(text, safe="/") if url else escape(text)

        parts = [f"<Name>{escape(name)}</Name><Prefix>{name_of(prefix)}</Prefix>"]
        if delimiter:
            parts.append(f"<Delimiter>{name_of(delimiter)}</Delimiter>")
        parts.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>")
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        parts.append(f"<IsTruncated>{'true' if token else 'false'}</IsTruncated>")
        if token:
            parts.append(f"<NextContinuationToken>{escape(token)}</NextContinuationToken>")
        for key, value in contents:
            parts.append(
                f"<Contents><Key>{name_of(key)}</Key><LastModified>{_iso(value.modified)}</LastModified>"
                f"<ETag>{escape(value.etag)}</ETag><Size>{len(value.body)}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        parts.extend(f"<CommonPrefixes><Prefix>{name_of(p)}</Prefix></CommonPrefixes>" for p in prefixes)
        self._send(200, _xml("ListBucketResult", "".join(parts)))

    def _delete_objects(self, store: Store, bucket: Bucket) -> None:
        store.count("DeleteObjects")
        root = ET.fromstring(self._body())

        def tag(element: ET.Element) -> str:
            return element.tag.rsplit("}", 1)[-1]

        quiet = any(tag(e) == "Quiet" and (e.text or "").strip().lower() == "true" for e in root)
        deleted = []
        for element in root:
            if tag(element) != "Object":
                continue
            key = next((e.text or "") for e in element if tag(e) == "Key")
            with store.lock:
                bucket.delete(key)
            store.count("DeletedKeys")
            store.wrote(key)
            if not quiet:
                deleted.append(f"<Deleted><Key>{escape(key)}</Key></Deleted>")
        self._send(200, _xml("DeleteResult", "".join(deleted)))

    # ---- objects ----------------------------------------------------------------------------------

    def _object_request(self, store: Store, bucket: Bucket, key: str) -> None:
        command = self.command
        if command == "PUT" and self.headers.get("x-amz-copy-source"):
            self._copy(store, bucket, key)
        elif command == "PUT":
            self._put(store, bucket, key)
        elif command in ("GET", "HEAD"):
            self._get(store, bucket, key, head=command == "HEAD")
        elif command == "DELETE":
            self._body()
            store.count("DeleteObject")
            with store.lock:
                current = bucket.objects.get(key)
                wanted = self.headers.get("If-Match")
                if wanted is not None and (current is None or current.etag != wanted):
                    refused = True
                else:
                    refused = False
                    bucket.delete(key)
            if refused:
                self._error(412, "PreconditionFailed", "At least one of the pre-conditions did not hold", key)
                return
            store.wrote(key)
            self._send(204)
        else:
            self._body()
            self._error(501, "NotImplemented", f"{command} {self.path} is not served by local_s3")

    def _put(self, store: Store, bucket: Bucket, key: str) -> None:
        body = self._body()
        store.count("PutObject")
        metadata = tuple(
            sorted(
                (name.lower()[len("x-amz-meta-") :], value)
                for name, value in self.headers.items()
                if name.lower().startswith("x-amz-meta-")
            )
        )
        value = stored(body, self.headers.get("Content-Type", "binary/octet-stream"), metadata)
        with store.lock:
            current = bucket.objects.get(key)
            if self.headers.get("If-None-Match") == "*" and current is not None:
                problem = "exists"
            elif (wanted := self.headers.get("If-Match")) is not None and (current is None or current.etag != wanted):
                problem = "missing" if current is None else "changed"
            else:
                problem = ""
                bucket.put(key, value)
        if problem == "missing":
            self._error(404, "NoSuchKey", "The specified key does not exist.", key)
            return
        if problem:
            self._error(412, "PreconditionFailed", "At least one of the pre-conditions did not hold", key)
            return
        store.wrote(key)
        self._send(200, headers={"ETag": value.etag})

    def _copy(self, store: Store, bucket: Bucket, key: str) -> None:
        self._body()
        store.count("CopyObject")
        source = urllib.parse.unquote(self.headers["x-amz-copy-source"].split("?", 1)[0]).lstrip("/")
        source_bucket, _, source_key = source.partition("/")
        with store.lock:
            origin = store.buckets.get(source_bucket)
            found = origin.objects.get(source_key) if origin is not None else None
            if found is not None:
                copy = stored(found.body, found.content_type, found.metadata)
                bucket.put(key, copy)
        if found is None:
            self._error(404, "NoSuchKey", "The specified key does not exist.", source_key)
            return
        store.wrote(key)
        inner = f"<LastModified>{_iso(copy.modified)}</LastModified><ETag>{escape(copy.etag)}</ETag>"
        self._send(200, _xml("CopyObjectResult", inner))

    def _get(self, store: Store, bucket: Bucket, key: str, head: bool) -> None:
        self._body()
        store.count("HeadObject" if head else "GetObject")
        with store.lock:
            value = bucket.objects.get(key)
        if value is None:
            self._error(404, "NoSuchKey", "The specified key does not exist.", key, head)
            return
        headers = {
            "ETag": value.etag,
            "Last-Modified": email.utils.formatdate(value.modified, usegmt=True),
            "Content-Type": value.content_type,
            "Accept-Ranges": "bytes",
        }
        headers.update({f"x-amz-meta-{name}": text for name, text in value.metadata})
        body, status = value.body, 200
        wanted = _RANGE.match(self.headers.get("Range", "").strip())
        if wanted and len(body):
            first = int(wanted.group(1))
            last = min(int(wanted.group(2) or len(body) - 1), len(body) - 1)
            headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
            body, status = body[first : last + 1], 206
        headers["Content-Length"] = str(len(body))
        self._send(status, body, headers, head=head)

    # ---- admin ------------------------------------------------------------------------------------

    def _admin(self) -> None:
        store = self.server.store
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        raw = self._body()
        if parts.path == "/__stats":
            with store.lock:
                report = {
                    "ops": dict(store.counts),
                    "objects": {name: len(b.objects) for name, b in store.buckets.items()},
                }
            self._send(200, json.dumps(report).encode(), {"Content-Type": "application/json"})
        elif parts.path == "/__reset":
            with store.lock:
                store.counts.clear()
            self._send(200, b"{}", {"Content-Type": "application/json"})
        elif parts.path == "/__seed":
            keys = [k for k in raw.decode().split("\n") if k]
            body = bytes(int(query.get("size", 2300)))
            value = stored(body, "image/jpeg")
            with store.lock:
                bucket = store.buckets.setdefault(query["bucket"], Bucket())
                for key in keys:
                    bucket.put(key, value)
            self._send(200, json.dumps({"seeded": len(keys)}).encode(), {"Content-Type": "application/json"})
        else:
            self._send(404)


class LocalS3(ThreadingHTTPServer):
    """The server: a thread per connection, all sharing one `Store`."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, port: int = 0, latency_ms: float = 0.0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.store = Store(latency_ms / 1000)

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`: what AWS_ENDPOINT_URL is set to."""
        return f"http://127.0.0.1:{self.server_address[1]}"


def main() -> None:
    """Serve on 127.0.0.1 until interrupted (SIGTERM or Ctrl-C)."""
    import signal
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5200)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request (default 0)")
    args = parser.parse_args()
    server = LocalS3(args.port, args.latency_ms)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
