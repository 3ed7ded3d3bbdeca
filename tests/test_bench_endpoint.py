"""benchmarks/local_s3.py, the benchmarks' in-memory S3: it answers the job's requests as S3 (moto) does.

The endpoint is started on loopback in this process and stopped by each test. Its listings are compared with
moto server's for the same keys (moto is the reference), and the real CLI syncs a season against it.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Bucket, make_s3_client, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from season import dataset_keys, sheet_rows, upload_season
from test_faults import expected_state

_names = itertools.count()
LOCAL_S3 = Path(__file__).resolve().parent.parent / "benchmarks" / "local_s3.py"


def _module():
    spec = importlib.util.spec_from_file_location("local_s3", LOCAL_S3)
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_s3"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def local_s3() -> Iterator[str]:
    """The endpoint on 127.0.0.1 (a free port), serving on a thread; shut down and closed afterwards."""
    server = _module().LocalS3(port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _pages(client, bucket: str, **kwargs) -> list[tuple[list[str], list[str], bool]]:
    """Every page of a listing: (keys, common prefixes, truncated), following the continuation tokens."""
    pages = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kwargs):
        pages.append(
            (
                [o["Key"] for o in page.get("Contents", [])],
                [p["Prefix"] for p in page.get("CommonPrefixes", [])],
                page["IsTruncated"],
            )
        )
    return pages


_KEYS = st.lists(
    st.lists(st.sampled_from(["a", "b", "ML", "x.jpg", "é", "+ %"]), min_size=1, max_size=4).map("/".join),
    min_size=0,
    max_size=25,
    unique=True,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=_KEYS,
    prefix=st.sampled_from(["", "a/", "b", "ML/x"]),
    delimiter=st.sampled_from(["", "/"]),
    page=st.integers(1, 4),
)
def test_listings_page_like_moto_with_and_without_a_delimiter(local_s3, s3_endpoint, keys, prefix, delimiter, page):
    ours, moto = make_s3_client(local_s3), make_s3_client(s3_endpoint)
    name = f"listing-{next(_names)}"
    for client in (ours, moto):
        client.create_bucket(Bucket=name)
        for key in keys:
            client.put_object(Bucket=name, Key=key, Body=key.encode())
    kwargs = {"Prefix": prefix, "Delimiter": delimiter, "PaginationConfig": {"PageSize": page}}
    try:
        assert _pages(ours, name, **kwargs) == _pages(moto, name, **kwargs)
        for key in keys[::2]:  # deleted keys leave every listing
            ours.delete_object(Bucket=name, Key=key)
            moto.delete_object(Bucket=name, Key=key)
        assert _pages(ours, name, **kwargs) == _pages(moto, name, **kwargs)
    finally:
        for key in keys:
            moto.delete_object(Bucket=name, Key=key)
        moto.delete_bucket(Bucket=name)


def test_objects_copies_metadata_and_conditional_writes_behave_as_s3(local_s3):
    client = make_s3_client(local_s3)
    client.create_bucket(Bucket="b")
    put = client.put_object(Bucket="b", Key="k", Body=b"hello", Metadata={"sha256": "abc"})
    head = client.head_object(Bucket="b", Key="k")
    assert head["ETag"] == put["ETag"] == '"5d41402abc4b2a76b9719d911017c592"'
    assert head["Metadata"] == {"sha256": "abc"} and head["ContentLength"] == 5
    assert client.get_object(Bucket="b", Key="k", Range="bytes=1-3")["Body"].read() == b"ell"
    client.copy_object(Bucket="b", Key="c/k", CopySource={"Bucket": "b", "Key": "k"})
    assert client.get_object(Bucket="b", Key="c/k")["Body"].read() == b"hello"
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.put_object(Bucket="b", Key="k", Body=b"again", IfNoneMatch="*")
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.delete_object(Bucket="b", Key="k", IfMatch='"0000"')
    client.delete_object(Bucket="b", Key="k", IfMatch=put["ETag"])
    deleted = client.delete_objects(Bucket="b", Delete={"Objects": [{"Key": "c/k"}, {"Key": "never"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["c/k", "never"]
    assert client.list_objects_v2(Bucket="b").get("Contents", []) == []
    with pytest.raises(client.exceptions.NoSuchKey):
        client.get_object(Bucket="b", Key="k")


def test_the_real_sync_converges_against_it(local_s3, monkeypatch):
    client = make_s3_client(local_s3)
    client.create_bucket(Bucket="bench")
    bucket = Bucket(name="bench", endpoint=local_s3, client=client)
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_s3)
    monkeypatch.setenv("TUTTLE_BUCKET", "bench")
    sheets = {"S01E01": sheet_rows("S01E01", ["Common", "Rare", "Trash", "Legendary"] * 10)}
    upload_season(bucket, sheets)

    first = run_cli("sync")
    second = run_cli("sync")

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "copied 0, moved 0, deleted 0" in second.stdout
    assert dataset_keys(bucket) == expected_state(sheets)
