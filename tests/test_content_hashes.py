"""Content hashes kept by `sync` (issue 25): real JPEG sources on moto server, the hash store read back.

Each source frame's dHash is stored per episode under `<ML>/_content/`, for the (key, ETag) hashed; a frame
that is no picture is a data finding naming its key; a re-rendered source is fetched and hashed once, an
unchanged one never; TUTTLE_CONTENT_HASH=off fetches nothing; the dataset version carries the hashes.
"""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from pictures import scene_jpeg
from season import ML_PREFIX, frame_number, sheet_rows, source_key, upload_season

from tuttle_prep.core.content import content_key, dhash_bytes, hashes_from_parquet
from tuttle_prep.core.versions import versions_prefix


def stored(bucket, episode_id: str) -> dict[str, tuple[str, int | None, str | None]]:
    """frame -> (source ETag, hash, problem) as the hash store holds it."""
    table = hashes_from_parquet(bucket.get(content_key(ML_PREFIX, episode_id)), "test")
    return {
        r.frame: (
            r.source_etag,
            None if str(r.hash) == "<NA>" else int(r.hash),
            r.problem if isinstance(r.problem, str) else None,
        )
        for r in table.itertuples(index=False)
    }


def etag(bucket, key: str) -> str:
    return bucket.client.head_object(Bucket=bucket.name, Key=key)["ETag"].strip('"')


def source_gets(proxy) -> list[str]:
    """The source frames the run fetched, each fetch once (a retry of a request that timed out on a busy machine
    is the same fetch: the proxy numbers the attempts)."""
    return sorted(r.key for r in proxy.of("GetObject") if "/frames/" in r.key and r.attempt == 1)


@pytest.fixture
def season_with_pictures(bucket, monkeypatch):
    """S01E01: four frames, real JPEGs of scenes 0..3; frame 4's source is no picture."""
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "on")
    rows = sheet_rows("S01E01", ["Common", "Rare", "Common", "Trash", "Common"])
    upload_season(bucket, {"S01E01": rows})
    for index in range(4):
        bucket.put(source_key(frame_number("S01E01", index)), scene_jpeg(index))
    bucket.put(source_key(frame_number("S01E01", 4)), b"\xff\xd8\xff\xe0 not a jpeg at all")
    return bucket


def test_sync_stores_each_source_frames_hash_and_names_the_undecodable_key(
    season_with_pictures, proxied, tmp_path
) -> None:
    bucket = season_with_pictures
    findings = tmp_path / "findings.csv"
    result = run_cli("sync", "--findings-out", str(findings))
    assert result.exit_code == 0, result.output
    table = stored(bucket, "S01E01")
    assert set(table) == {frame_number("S01E01", i) for i in range(5)}
    for index in range(4):
        frame = frame_number("S01E01", index)
        key = source_key(frame)
        assert table[frame] == (etag(bucket, key), dhash_bytes(bucket.get(key)), None)
    bad = frame_number("S01E01", 4)
    assert table[bad][1] is None and "not a picture" in table[bad][2]
    # a data finding naming the key (exit 0 above), not a job failure: in --findings-out
    rows = list(csv.DictReader(findings.open(encoding="utf-8")))
    assert [(r["kind"], r["value"], r["where"]) for r in rows] == [
        ("undecodable source", bad, f"s3://{bucket.name}/{source_key(bad)}")
    ]
    # every frame fetched exactly once
    assert source_gets(proxied) == sorted(source_key(frame_number("S01E01", i)) for i in range(5))

    # the dataset version carries each object's hash for the ETag it records
    versions = sorted(k for k in bucket.keys(versions_prefix(ML_PREFIX)))
    version = pq.read_table(io.BytesIO(bucket.get(versions[-1]))).to_pylist()
    assert len(version) == 5
    for row in version:
        expected = table[row["frame"]]
        assert row["source_etag"] == expected[0]
        assert row["content_hash"] == expected[1]


def test_a_rerendered_source_is_hashed_once_and_an_unchanged_one_never(season_with_pictures, proxied) -> None:
    bucket = season_with_pictures
    assert run_cli("sync").exit_code == 0
    first = stored(bucket, "S01E01")

    # a new frame in the sheet (its episode's sources are listed) and frame 1 re-rendered as another picture
    rows = sheet_rows("S01E01", ["Common", "Rare", "Common", "Trash", "Common", "Uncommon"])
    upload_season(bucket, {"S01E01": rows}, sources=False)
    bucket.put(source_key(frame_number("S01E01", 5)), scene_jpeg(5))
    rerendered = source_key(frame_number("S01E01", 1))
    bucket.put(rerendered, scene_jpeg(11))
    proxied.reset()
    assert run_cli("sync").exit_code == 0
    assert source_gets(proxied) == sorted([rerendered, source_key(frame_number("S01E01", 5))])
    second = stored(bucket, "S01E01")
    assert second[frame_number("S01E01", 1)] == (etag(bucket, rerendered), dhash_bytes(scene_jpeg(11)), None)
    unchanged = [frame_number("S01E01", i) for i in (0, 2, 3, 4)]
    assert {f: second[f] for f in unchanged} == {f: first[f] for f in unchanged}

    # again, with one more new frame: only that one is fetched; the re-rendered source is not hashed again
    rows.append(sheet_rows("S01E01", ["Rare"], start=6)[0])
    upload_season(bucket, {"S01E01": rows}, sources=False)
    bucket.put(source_key(frame_number("S01E01", 6)), scene_jpeg(6))
    proxied.reset()
    assert run_cli("sync").exit_code == 0
    assert source_gets(proxied) == [source_key(frame_number("S01E01", 6))]

    # nothing new: nothing fetched, nothing written under the ML prefix
    proxied.reset()
    assert run_cli("sync").exit_code == 0
    assert source_gets(proxied) == []
    assert not [r for r in proxied.of("PutObject") if r.key.startswith(ML_PREFIX)]


def test_content_hash_off_fetches_nothing(season_with_pictures, proxied, monkeypatch) -> None:
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "off")
    assert run_cli("sync").exit_code == 0
    assert source_gets(proxied) == []
    assert not season_with_pictures.keys(f"{ML_PREFIX}_content/")


def test_content_hash_setting_is_checked(bucket, monkeypatch) -> None:
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "maybe")
    result = run_cli("sync")
    assert result.exit_code == 2
    assert "TUTTLE_CONTENT_HASH must be on or off" in result.output
