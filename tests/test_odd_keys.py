"""Keys read back from S3 are parsed whole (issue 20, points 1 and 2): a key ending in '/' is never a frame, on
the dataset side or the source side, whatever its size; a frame number or key with a non-ASCII digit is no frame.

Every case runs the real CLI against moto through the fault proxy (it sees boto3's and obstore's requests) and
asserts the bucket's final state. The property test at the end lists odd keys through the real listing code.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from conftest import Bucket, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from s3_fault_proxy import S3FaultProxy
from season import (
    FRAME,
    JPEG,
    ML_PREFIX,
    UNSUPERVISED,
    dataset_key,
    dataset_keys,
    frame_number,
    sheet_rows,
    source_key,
    upload_season,
)
from test_faults import expected_state

from tuttle_prep.core.delete_guard import DeleteLimit
from tuttle_prep.core.frame_table import RARITIES, parse_frame
from tuttle_prep.core.plan import KeyLayout
from tuttle_prep.core.versions import version_id_of
from tuttle_prep.edges.alarms import check_phone_numbers
from tuttle_prep.edges.aws import make_client
from tuttle_prep.edges.s3_bucket import S3Bucket
from tuttle_prep.edges.s3_listing import list_datasets, list_sources
from tuttle_prep.errors import ConfigError
from tuttle_prep.settings import _pinned

ARABIC_ONE = "\u0661"  # ١: str.isdigit(), Python's \d and RE2's \p{Nd} all take it for a digit
LAYOUT = KeyLayout(ML_PREFIX, "tuttle_twins/", "thumbnails", ("train", "validate", "test"))


def touched_keys(proxied: S3FaultProxy) -> set[str]:
    """Every key a request wrote, copied to or from, or deleted (both clients)."""
    keys = {r.key for r in proxied.requests if r.operation in ("CopyObject", "PutObject", "DeleteObject")}
    keys |= {r.headers.get("x-amz-copy-source", "").split("/", 1)[-1] for r in proxied.of("CopyObject")}
    return keys | {k for r in proxied.of("DeleteObjects") for k in r.delete_keys()}


def bodies(bucket: Bucket, keys: list[str]) -> dict[str, bytes]:
    """The body of each key that exists."""
    present = bucket.keys()
    return {k: bucket.get(k) for k in keys if k in present}


# ---- point 1: a key ending in '/' is no frame -------------------------------------------------------------


def test_an_object_ending_in_slash_at_a_frames_new_place_does_not_cost_its_only_copy(
    bucket: Bucket, proxied: S3FaultProxy
) -> None:
    rows = sheet_rows("S01E01", ["Common"] * 6)
    upload_season(bucket, {"S01E01": rows})
    assert run_cli("sync").exit_code == 0
    frame = rows[2][FRAME]
    dataset, _ = dataset_keys(bucket)[frame]
    old_place = dataset_key(dataset, "Common", frame)
    only_copy = bucket.get(old_place)
    bucket.client.delete_object(Bucket=bucket.name, Key=source_key(frame))  # its source is gone
    upload_season(bucket, {"S01E01": [{**r, UNSUPERVISED: "Rare"} if r is rows[2] else r for r in rows]}, sources=False)
    botched = dataset_key(dataset, "Rare", frame) + "/"  # a botched upload at its new place, not empty
    bucket.put(botched, b"half an upload")

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    strangers: set[str] = set()
    placed = dataset_keys(bucket, strangers=strangers)
    assert placed[frame] == (dataset, "Rare")  # moved: the frame's only copy is at its new place
    assert bucket.get(dataset_key(dataset, "Rare", frame)) == only_copy
    assert strangers == {botched} and bucket.get(botched) == b"half an upload"
    assert f"left alone: {botched}\n" in result.output
    assert "moved 1" in result.output and "deleted 0" in result.output
    assert botched not in touched_keys(proxied)


def test_a_placed_file_replaced_by_its_key_with_a_slash_is_no_copy_of_the_frame(
    bucket: Bucket, proxied: S3FaultProxy
) -> None:
    rows = sheet_rows("S01E01", ["Rare"] * 4)
    upload_season(bucket, {"S01E01": rows})
    assert run_cli("sync").exit_code == 0
    frame = rows[1][FRAME]
    dataset, rarity = dataset_keys(bucket)[frame]
    placed = dataset_key(dataset, rarity, frame)
    bucket.client.delete_object(Bucket=bucket.name, Key=placed)
    bucket.put(placed + "/", b"not the frame")
    proxied.reset()

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    strangers: set[str] = set()
    assert dataset_keys(bucket, strangers=strangers) == expected_state({"S01E01": rows})
    assert bucket.get(placed) == bucket.get(source_key(frame))  # copied again from its source
    assert strangers == {placed + "/"} and bucket.get(placed + "/") == b"not the frame"
    assert "copied 1" in result.output and f"left alone: {placed}/\n" in result.output
    assert placed + "/" not in touched_keys(proxied)


def test_a_source_key_ending_in_slash_is_a_missing_source_and_holds_nothing_back(
    bucket: Bucket, proxied: S3FaultProxy
) -> None:
    rows = sheet_rows("S01E01", ["Common"] * 5)
    upload_season(bucket, {"S01E01": rows[:4]})
    assert run_cli("sync").exit_code == 0
    stray = dataset_key("train", "Rare", frame_number("S01E01", 30))  # of the episode, wanted by no row
    bucket.put(stray, JPEG)
    frame = rows[4][FRAME]
    botched = source_key(frame) + "/"  # the new frame's only "source", not empty
    bucket.put(botched, b"half a source")
    upload_season(bucket, {"S01E01": rows}, sources=False)

    result = run_cli("sync")

    assert result.exit_code == 0, result.output  # a missing source is a data finding, not a job failure
    assert f"S01E01 sheet row 6: missing source frame s3://{bucket.name}/{source_key(frame)}" in result.output
    assert "NoSuchKey" not in result.output
    wanted = {f: place for f, place in expected_state({"S01E01": rows}).items() if f != frame}
    assert dataset_keys(bucket) == wanted  # the stray's delete is not held back
    assert stray not in bucket.keys(ML_PREFIX) and bucket.get(botched) == b"half a source"
    assert botched not in touched_keys(proxied)
    sources, errors = list_sources(S3Bucket(make_client("s3"), bucket.name), {"S01E01": LAYOUT.source_folder("S01E01")})
    assert not errors and frame not in set(sources["frame"]) and len(sources) == 4


# ---- point 2: ASCII digits only ---------------------------------------------------------------------------


def test_a_dataset_key_with_a_non_ascii_digit_is_a_stranger_never_deleted(
    bucket: Bucket, proxied: S3FaultProxy, tmp_path
) -> None:
    rows = sheet_rows("S01E01", ["Legendary"] * 3)
    upload_season(bucket, {"S01E01": rows})
    assert run_cli("sync").exit_code == 0
    odd = dataset_key("train", "Trash", frame_number("S01E01", 1)[:-1] + ARABIC_ONE)
    bucket.put(odd, b"a stranger's file")
    proxied.reset()

    result = run_cli("sync")
    report = run_cli("report", "--out", str(tmp_path), "--format", "json")

    assert result.exit_code == 0, result.output
    strangers: set[str] = set()
    assert dataset_keys(bucket, strangers=strangers) == expected_state({"S01E01": rows})
    assert strangers == {odd} and bucket.get(odd) == b"a stranger's file"
    assert f"left alone: {odd}\n" in result.output and "deleted 0" in result.output
    assert odd not in touched_keys(proxied)
    assert report.exit_code == 0, report.output


def test_a_sheet_frame_number_with_a_non_ascii_digit_is_a_rejected_row(bucket: Bucket, tmp_path) -> None:
    rows = sheet_rows("S01E01", ["Common", "Rare", "Trash", "Common"])
    odd_frame = frame_number("S01E01", 3)[:-1] + ARABIC_ONE
    rows[3] = {**rows[3], FRAME: odd_frame}  # sheet row 5; upload_season puts a source for it too
    upload_season(bucket, {"S01E01": rows})

    result = run_cli("sync", "--findings-out", str(tmp_path / "findings.csv"))

    assert result.exit_code == 0, result.output  # a rejected row is a data finding
    assert "data findings: 1 (1 rejected row)" in result.output
    assert dataset_keys(bucket) == expected_state({"S01E01": rows[:3]})  # never copied
    findings = (tmp_path / "findings.csv").read_text(encoding="utf-8")
    assert odd_frame in findings and "FRAME NUMBER" in findings and ",5," in findings
    for args in (
        ("report", "--out", str(tmp_path / "report"), "--format", "json"),
        ("split", "preview"),
        ("split", "preview", "--group-seconds", "5"),
    ):
        after = run_cli(*args)
        assert after.exit_code == 0, (args, after.output)


def test_a_manifest_episode_code_with_a_non_ascii_digit_is_no_episode(bucket: Bucket) -> None:
    rows = sheet_rows("S01E01", ["Common", "Rare"])
    upload_season(bucket, {"S01E01": rows})
    entries = json.loads(bucket.get("tuttle_twins/manifests/S01-episodes.json"))
    entries.append({**entries[0], "episode_code": "E0" + ARABIC_ONE})
    bucket.put("tuttle_twins/manifests/S01-episodes.json", json.dumps(entries))

    result = run_cli("sync")

    assert f"episode_code 'E0{ARABIC_ONE}' is not like 'E01'" in result.output  # named, never an episode
    assert "1 manifest file, 1 episode, 1 selected" in result.output
    assert dataset_keys(bucket) == expected_state({"S01E01": rows})
    assert not [k for k in bucket.keys(ML_PREFIX) if ARABIC_ONE in k]


def _raises(call: Callable[[], object], error: type[Exception]) -> bool:
    try:
        call()
    except error:
        return True
    return False


@pytest.mark.parametrize(
    "refused",
    [
        lambda: parse_frame(f"TT_S01_E01_FRM-00-00-00-0{ARABIC_ONE}") is None,
        lambda: version_id_of(f"ML/_versions/2099123{ARABIC_ONE}T000000Z-abc.parquet", "ML/_versions/") is None,
        lambda: _raises(lambda: _pinned(f"2026120{ARABIC_ONE}"), ConfigError),
        lambda: _raises(lambda: DeleteLimit.parse(f"5{ARABIC_ONE}0"), ValueError),
        lambda: _raises(lambda: check_phone_numbers([f"+1555555012{ARABIC_ONE}"]), ValueError),
    ],
    ids=["frame", "version-object-key", "versions-pinned", "delete-limit", "phone-number"],
)
def test_text_with_a_non_ascii_digit_is_refused_by_every_parser(refused: Callable[[], bool]) -> None:
    assert refused()


def test_an_episode_option_with_a_non_ascii_digit_is_a_usage_error(bucket: Bucket) -> None:
    result = run_cli("split", "preview", "--episode", f"S01E0{ARABIC_ONE}")
    assert result.exit_code == 2, result.output


# ---- property: odd keys through the real listing ------------------------------------------------------------

FRAMES = [frame_number("S01E01", i) for i in range(6)]
PLACES = [(d, r) for d in LAYOUT.datasets for r in RARITIES]


def _odd_key(kind: str, place: tuple[str, str], index: int) -> tuple[str, bytes]:
    dataset, rarity = place
    folder = f"{ML_PREFIX}{dataset}/{rarity}/"
    frame = FRAMES[index]
    return {
        "slash": (f"{folder}{frame}.jpg/", b"not empty"),  # obstore would name it `<frame>.jpg`
        "slash-empty": (f"{folder}{frame}.jpg/", b""),
        "double-slash": (f"{folder}{frame}.jpg//", b"x"),
        "inner-double-slash": (f"{folder}/{frame}.jpg", b"x"),
        "marker": (f"{folder}sub/", b""),
        "sub-folder": (f"{folder}sub/{frame}.jpg", b"x"),
        "non-ascii-digit": (f"{folder}{frame[:-1]}{ARABIC_ONE}.jpg", b"x"),
        "fullwidth-digit": (f"{folder}{frame[:-1]}\uff11.jpg", b"x"),
        "control": (f"{folder}{frame}\x07.jpg", b"x"),
        "tab": (f"{folder}{frame}.jpg\t", b"x"),
    }[kind]


ODD_KINDS = st.sampled_from(
    ["slash", "slash-empty", "double-slash", "inner-double-slash", "marker", "sub-folder", "non-ascii-digit",
     "fullwidth-digit", "control", "tab"]  # fmt: skip
)
ODD_KEYS = st.lists(
    st.tuples(ODD_KINDS, st.sampled_from(PLACES), st.integers(0, len(FRAMES) - 1)), min_size=1, max_size=6
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(odd=ODD_KEYS, placed=st.lists(st.booleans(), min_size=len(FRAMES), max_size=len(FRAMES)))
def test_no_odd_key_listed_for_real_is_a_frame_deleted_or_moved(
    bucket: Bucket, proxied: S3FaultProxy, odd: list[tuple[str, tuple[str, str], int]], placed: list[bool]
) -> None:
    for key in bucket.keys(""):  # one bucket for all examples: start each from nothing
        bucket.client.delete_object(Bucket=bucket.name, Key=key)
    rows = sheet_rows("S01E01", ["Common", "Rare", "Trash", "Legendary", "Uncommon", "Common"])
    upload_season(bucket, {"S01E01": rows})
    wanted = expected_state({"S01E01": rows})
    for frame, is_placed in zip(FRAMES, placed, strict=True):
        if is_placed:  # a previous run placed it, in the wrong rarity folder half of the time
            dataset, rarity = wanted[frame]
            bucket.put(dataset_key(dataset, "Rare" if rarity != "Rare" else "Common", frame), JPEG + frame.encode())
    odd_keys = dict(_odd_key(*entry) for entry in odd)
    for key, body in odd_keys.items():
        bucket.put(key, body)
    real_frames = {k for k in bucket.keys(ML_PREFIX) if k not in odd_keys}

    inventory = list_datasets(S3Bucket(make_client("s3"), bucket.name), LAYOUT)
    current, unexpected = LAYOUT.parse_dataset_keys(inventory.every_key())
    assert set(current["key"]) == real_frames  # no odd key counted as a frame, every real one listed
    assert set(odd_keys) <= set(unexpected)  # each named as S3 names it
    proxied.reset()

    result = run_cli("sync")

    assert result.exit_code == 0, result.output
    strangers: set[str] = set()
    assert dataset_keys(bucket, strangers=strangers) == wanted
    assert strangers == set(odd_keys)
    assert bodies(bucket, list(odd_keys)) == odd_keys  # every odd key still there, byte for byte
    assert not touched_keys(proxied) & set(odd_keys)
