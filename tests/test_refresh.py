"""Source frames that change under the same key (issue 22), on moto server: each run compares every dataset object
of a planned episode with its source and refreshes the ones that differ; versions record the bytes each dataset
object held, and `pull --version` rebuilds them byte for byte where the bucket keeps object versions.
Assertions are on the bucket, the local folder and the exit codes."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from s3_fault_proxy import Request, S3FaultProxy, internal_error
from season import (
    FRAME,
    JPEG,
    ML_PREFIX,
    dataset_key,
    dataset_keys,
    frame_number,
    put_sheet,
    put_sources,
    row,
    source_key,
    upload_season,
)

from tuttle_prep.core.versions import INFO_KEY, version_from_parquet, versions_prefix

E1 = "S01E01"
RARITIES = ["Common", "Rare", "Uncommon", "Trash", "Legendary"]
VERSIONS = versions_prefix(ML_PREFIX)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def season_of(n: int = 8) -> list[dict[str, str]]:
    return [row(frame_number(E1, i), RARITIES[i % 5]) for i in range(n)]


def sync(*args: str, code: int = 0) -> str:
    result = run_cli("sync", *args)
    assert result.exit_code == code, result.output
    return result.output


def dataset_object(bucket, frame: str) -> str:
    """The key of the frame's one dataset object."""
    dataset, rarity = dataset_keys(bucket)[frame]
    return dataset_key(dataset, rarity, frame)


def version_ids(bucket) -> list[str]:
    return sorted(k[len(VERSIONS) : -len(".parquet")] for k in bucket.keys(VERSIONS) if k.endswith(".parquet"))


def version_rows(bucket, version_id: str) -> dict[str, dict]:
    table, _ = version_from_parquet(bucket.get(f"{VERSIONS}{version_id}.parquet"), version_id)
    return {r["frame"]: r for r in table.to_pylist()}


def copies(proxy: S3FaultProxy) -> list[tuple[str, str]]:
    """(source key, destination key) of every CopyObject the CLI sent."""
    return sorted((r.copy_source, r.key) for r in proxy.of("CopyObject"))


def put_multipart(bucket, key: str, body: bytes) -> str:
    """Upload `body` as a one-part multipart upload (ETag `<hex>-1`); return the ETag."""
    client = bucket.client
    upload = client.create_multipart_upload(Bucket=bucket.name, Key=key)
    part = client.upload_part(Bucket=bucket.name, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=body)
    done = client.complete_multipart_upload(
        Bucket=bucket.name,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    return done["ETag"].strip('"')


@pytest.fixture
def faults(proxied: S3FaultProxy, monkeypatch: pytest.MonkeyPatch) -> S3FaultProxy:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # one retry: a failed request costs no back-off of seconds
    return proxied


def test_a_re_rendered_source_reaches_its_dataset_copy_in_one_run_and_the_next_run_copies_nothing(bucket, faults):
    rows = season_of()
    upload_season(bucket, {E1: rows})
    sync()
    frame = rows[3][FRAME]
    rendered = JPEG + b"re-rendered " + frame.encode()
    bucket.put(source_key(frame), rendered)  # same key, new bytes, no notice

    faults.reset()
    output = sync()
    assert bucket.get(dataset_object(bucket, frame)) == rendered
    assert copies(faults) == [(source_key(frame), dataset_object(bucket, frame))]
    assert "refreshed 1" in output
    assert not faults.of("DeleteObjects")

    faults.reset()
    output = sync()
    assert copies(faults) == [] and not faults.of("DeleteObjects")
    assert not [r.key for r in faults.of("PutObject") if r.key.startswith(ML_PREFIX)]  # no index, no version
    assert "datasets unchanged since version" in output
    placed = dataset_keys(bucket).items()
    assert all(bucket.get(dataset_key(*place, f)) == bucket.get(source_key(f)) for f, place in placed)


def test_a_dataset_object_overwritten_by_hand_is_refreshed(bucket, tmp_path):
    rows = season_of()
    upload_season(bucket, {E1: rows})
    sync()
    frame = rows[1][FRAME]
    key = dataset_object(bucket, frame)
    bucket.put(key, b"a picture someone put there by hand")

    plan = tmp_path / "plan.csv"
    output = sync("--dry-run", "--plan-out", str(plan))
    assert "would copy 0, move 0, refresh 1, delete 0" in output
    assert f"refresh,{E1},{frame},{source_key(frame)},{key}" in plan.read_text().splitlines()
    sync()
    assert bucket.get(key) == bucket.get(source_key(frame))
    assert set(dataset_keys(bucket)) == {r[FRAME] for r in rows}


def test_a_reclassified_frame_whose_source_was_re_rendered_arrives_with_the_new_picture(bucket):
    """A move would carry the old picture to the new folder: the frame is copied from its source instead, and
    the old object is deleted as an extra copy (never counted against the delete guard)."""
    rows = season_of()
    upload_season(bucket, {E1: rows})
    sync()
    frame = rows[0][FRAME]
    old_key = dataset_object(bucket, frame)
    rendered = JPEG + b"re-rendered " + frame.encode()
    bucket.put(source_key(frame), rendered)
    rows[0]["JONNY's RECLASSIFICATION"] = "Legendary"  # was Common
    put_sheet(bucket, E1, rows)
    sync()
    new_key = dataset_object(bucket, frame)
    assert new_key != old_key and "/Legendary/" in new_key
    assert bucket.get(new_key) == rendered
    assert old_key not in bucket.keys(ML_PREFIX)


def test_a_multipart_source_is_copied_once_not_every_night_and_a_re_render_of_it_still_arrives(bucket, faults):
    rows = season_of(4)
    upload_season(bucket, {E1: rows})
    frame = rows[0][FRAME]
    first = JPEG + b"uploaded in parts " + frame.encode()
    assert put_multipart(bucket, source_key(frame), first).endswith("-1")
    sync()
    assert bucket.get(dataset_object(bucket, frame)) == first

    faults.reset()
    sync()
    sync()
    assert copies(faults) == []  # the ETags cannot be compared: same size, the copy newer than the source

    second = first.replace(b"uploaded", b"rerender")  # the same size, uploaded in parts again
    assert len(second) == len(first)
    put_multipart(bucket, source_key(frame), second)
    faults.reset()
    assert "refreshed 1" in sync()
    assert bucket.get(dataset_object(bucket, frame)) == second
    faults.reset()
    sync()
    assert copies(faults) == []


def test_the_version_after_a_re_render_records_the_bytes_the_dataset_holds(bucket, faults):
    """A refresh that fails (500 through the fault proxy) keeps the old copy, names its key, exits 1; the version
    then written records the old copy's ETag for the dataset object, the new source's apart; the next run
    refreshes it and its version records the new bytes."""
    rows = season_of()
    upload_season(bucket, {E1: rows})
    sync()
    frame, new = rows[2][FRAME], frame_number(E1, 40)
    key = dataset_object(bucket, frame)
    old = bucket.get(key)
    rendered = JPEG + b"re-rendered " + frame.encode()
    bucket.put(source_key(frame), rendered)
    put_sources(bucket, [new])  # and a new frame, as in the issue
    rows.append(row(new, "Rare"))
    put_sheet(bucket, E1, rows)

    def fail_the_refresh(request: Request):
        return internal_error() if request.operation == "CopyObject" and request.key == key else None

    faults.fail = fail_the_refresh
    output = sync(code=1)
    faults.fail = None
    assert f"refresh {key} failed" in output and "the old copy is kept" in output
    assert bucket.get(key) == old
    assert new in dataset_keys(bucket)  # the other writes went on
    recorded = version_rows(bucket, version_ids(bucket)[-1])[frame]
    assert (recorded["dataset_etag"], recorded["dataset_size"]) == (md5(old), len(old))
    assert (recorded["source_etag"], recorded["source_size"]) == (md5(rendered), len(rendered))
    assert version_rows(bucket, version_ids(bucket)[-1])[new]["dataset_etag"] == md5(bucket.get(source_key(new)))

    assert "refreshed 1" in sync()
    assert bucket.get(key) == rendered
    recorded = version_rows(bucket, version_ids(bucket)[-1])[frame]
    assert (recorded["dataset_etag"], recorded["source_etag"]) == (md5(rendered), md5(rendered))


@pytest.mark.parametrize("versioning", [True, False])
def test_pull_version_of_the_version_before_a_re_render(bucket, tmp_path: Path, versioning: bool):
    if versioning:
        bucket.client.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
    rows = season_of()
    upload_season(bucket, {E1: rows})
    sync()
    before = version_ids(bucket)[-1]
    frame = rows[4][FRAME]
    dataset, rarity = dataset_keys(bucket)[frame]
    old = bucket.get(source_key(frame))
    bucket.put(source_key(frame), JPEG + b"re-rendered " + frame.encode())
    sync()
    assert version_ids(bucket)[-1] != before  # the refreshed picture is a new version

    dest = tmp_path / "rebuilt"
    result = run_cli("pull", "--version", before, "--dest", str(dest))
    path = dest / dataset / rarity / f"{frame}.jpg"
    others = [r[FRAME] for r in rows if r[FRAME] != frame]
    assert all(
        (dest / "/".join(dataset_keys(bucket)[f]) / f"{f}.jpg").read_bytes() == bucket.get(source_key(f))
        for f in others
    )
    if versioning:
        assert result.exit_code == 0, result.output
        assert path.read_bytes() == old
        assert "1 frames of version" in result.output and "older object versions" in result.output
    else:
        assert result.exit_code == 1, result.output
        assert not path.exists()
        assert f"{source_key(frame)} changed since version {before}" in result.output
        assert "keeps no object version with that ETag" in result.output


def test_another_image_size_refreshes_every_frame_only_when_asked_and_a_size_without_sources_keeps_the_copies(
    bucket, monkeypatch: pytest.MonkeyPatch
):
    rows = [row(frame_number(E1, i), "Common") for i in range(120)]
    upload_season(bucket, {E1: rows})
    sync()
    before = {key: bucket.get(key) for key in (dataset_object(bucket, r[FRAME]) for r in rows[:3])}

    monkeypatch.setenv("TUTTLE_IMG_SIZE", "high_res")  # no high_res source at all
    output = sync("--dry-run")
    assert "would copy 0, move 0, delete 0" in output
    assert "missing source frame" in output and "high_res" in output
    total = next(line for line in output.splitlines() if line.startswith("total")).split()
    assert total[1] == "120" and total[-2] == "120"  # keep 120 (the old copies stay), missing 120
    sync()
    assert {key: bucket.get(key) for key in before} == before

    for r in rows:  # a size with sources: every frame differs from its copy
        bucket.put(source_key(r[FRAME], "mid_res"), JPEG + b"mid_res " + r[FRAME].encode())
    monkeypatch.setenv("TUTTLE_IMG_SIZE", "mid_res")
    output = sync(code=1)
    assert "refusing 120 refreshes of the 120 dataset files" in output
    assert {key: bucket.get(key) for key in before} == before
    assert "refreshed 120" in sync("--force")
    assert all(bucket.get(key) == JPEG + b"mid_res " + key.rsplit("/", 1)[1][:-4].encode() for key in before)


def test_a_version_written_before_dataset_etags_were_recorded_is_still_pulled(bucket, tmp_path: Path):
    rows = season_of()
    upload_season(bucket, {E1: rows})
    sync()
    version_id = version_ids(bucket)[-1]
    key = f"{VERSIONS}{version_id}.parquet"
    table = pq.read_table(io.BytesIO(bucket.get(key)))
    old_format = table.drop_columns(["dataset_etag", "dataset_size"])
    assert INFO_KEY in (old_format.schema.metadata or {})
    sink = io.BytesIO()
    pq.write_table(old_format, sink)
    bucket.client.delete_object(Bucket=bucket.name, Key=key)
    bucket.put(key, sink.getvalue())

    result = run_cli("versions", "show", version_id)
    assert result.exit_code == 0, result.output
    dest = tmp_path / "old"
    result = run_cli("pull", "--version", version_id, "--dest", str(dest))
    assert result.exit_code == 0, result.output
    for r in rows:
        dataset, rarity = dataset_keys(bucket)[r[FRAME]]
        assert (dest / dataset / rarity / f"{r[FRAME]}.jpg").read_bytes() == bucket.get(source_key(r[FRAME]))
    assert pa.types.is_string(table.schema.field("dataset_etag").type)
