"""Versions that tell the truth (issue 21, points 1 and 2) on moto server through the fault proxy: a diff counts
dataset objects (a frame in two places is two objects), and a version written by a run that failed is marked
partial, flagged by `versions list|show|diff` and `pull --version`, and skipped by `latest`.

Every expectation is worked out from the bucket's keys (brute force), never from the code under test."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
from conftest import run_cli
from s3_fault_proxy import Answer, Request, S3FaultProxy, s3_error
from season import ML_PREFIX, put_sheet, sheet_key, upload_season
from test_versions import E2, dataset_objects, edit, read_version, sheets_of, sync_ok, version_ids

from tuttle_prep.core.versions import diff_versions


@pytest.fixture
def faults(proxied: S3FaultProxy, monkeypatch: pytest.MonkeyPatch) -> S3FaultProxy:
    """Every request of the CLI goes through the proxy; one attempt per request (a fault is final)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return proxied


def place(key: str) -> tuple[str, str, str]:
    """(frame, dataset, rarity) of a dataset key `<ML prefix><dataset>/<rarity>/<frame>.jpg`."""
    dataset, rarity, name = key[len(ML_PREFIX) :].split("/")
    return name.removesuffix(".jpg"), dataset, rarity


def reference_diff(before: set[str], after: set[str]) -> tuple[Counter[str], set[tuple[str, str, str, str]]]:
    """Brute force over two sets of dataset keys: a frame's keys in both are kept; its keys only before and only
    after are paired in key order (moved and/or reclassified), the rest removed / added. The counts and
    {(frame, change, from place, to place)}."""
    by_frame: dict[str, tuple[list[str], list[str]]] = {}
    for key in sorted(before - after):
        by_frame.setdefault(place(key)[0], ([], []))[0].append(key)
    for key in sorted(after - before):
        by_frame.setdefault(place(key)[0], ([], []))[1].append(key)
    counts: Counter[str] = Counter(added=0, removed=0, moved=0, reclassified=0)
    rows = set()
    for frame, (gone, new) in by_frame.items():
        for i in range(max(len(gone), len(new))):
            a = place(gone[i]) if i < len(gone) else None
            b = place(new[i]) if i < len(new) else None
            if a is None or b is None:
                kind = "added" if a is None else "removed"
                counts[kind] += 1
            else:
                kinds = [k for k, on in (("moved", a[1] != b[1]), ("reclassified", a[2] != b[2])) if on]
                counts.update(kinds)
                kind = "+".join(kinds)
            rows.add((frame, kind, "/".join(a[1:]) if a else "-", "/".join(b[1:]) if b else "-"))
    return counts, rows


def doubled(keys: set[str]) -> int:
    """Frames with more than one dataset object among `keys`."""
    return sum(n > 1 for n in Counter(place(k)[0] for k in keys).values())


def fail_deletes(request: Request) -> Answer | None:
    return s3_error(500, "InternalError", "injected") if request.operation == "DeleteObjects" else None


def listed(version_id: str) -> dict:
    [record] = [v for v in json.loads(run_cli("versions", "list", "--format", "json").stdout) if v["id"] == version_id]
    return record


def shown_id(*args: str) -> str:
    result = run_cli("versions", "show", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["version"]["id"]


def test_the_diff_after_a_failed_delete_counts_dataset_objects_as_a_brute_force_does(bucket, faults, tmp_path):
    """The issue's 62 -> 60: a failed DeleteObjects leaves moved frames in two places; the clean rerun removes
    one object of each; the diff (and the change `versions list` shows) says exactly that."""
    sheets = sheets_of()
    upload_season(bucket, sheets)
    sync_ok()
    edit(bucket, sheets)
    faults.fail = fail_deletes
    failed = run_cli("sync")
    assert failed.exit_code == 1, failed.output
    left = dataset_objects(bucket)
    assert doubled(left) >= 1  # a moved frame's source could not be deleted: the frame is in two places
    faults.fail = None
    sync_ok()
    clean = dataset_objects(bucket)
    assert clean < left and doubled(clean) == 0
    _, partial, complete = version_ids(bucket)

    counts, rows = reference_diff(left, clean)
    assert counts["removed"] == len(left - clean) and counts["moved"] == counts["reclassified"] == 0
    out = tmp_path / "diff.csv"
    result = run_cli("versions", "diff", partial, complete, "--out", str(out))
    assert result.exit_code == 0, result.output
    removed, objects, frames = len(left - clean), len(left), len({place(k)[0] for k in left})
    assert (
        f"compared as dataset objects (by key: dataset/rarity/frame): added 0, removed {removed:,}, moved 0, "
        f"reclassified 0, metadata changed 0; {len(clean):,} unchanged"
    ) in result.output
    assert f"({objects} dataset objects, {frames} frames, {doubled(left)} of them in two places; PARTIAL)" in (
        result.output
    )
    diff = pd.read_csv(out, dtype=str, keep_default_na=False)
    got = {
        (r.frame, r.change, f"{r.from_dataset}/{r.from_rarity}".strip("/") or "-", "-")
        for r in diff.itertuples()
        if r.change != "metadata"
    }
    assert got == rows and len(diff) == removed
    # the change recorded in the complete version (what `versions list` shows) is the same count
    assert listed(complete)["change"] == {"added": 0, "removed": removed, "moved": 0, "reclassified": 0, "metadata": 0}
    assert listed(complete)["counted"] == "objects"


@pytest.mark.parametrize("how", ["clean", "failed delete", "failed copy", "refused deletes"])
def test_a_version_written_by_a_failed_run_is_partial_flagged_and_skipped_by_latest(bucket, faults, tmp_path, how):
    sheets = sheets_of()
    upload_season(bucket, sheets)
    sync_ok()
    [first] = version_ids(bucket)
    changes = edit(bucket, sheets)
    added = next(f for f, c in changes.items() if c == "added")
    args: tuple[str, ...] = ()
    if how == "failed delete":
        faults.fail = fail_deletes
    elif how == "failed copy":
        faults.fail = lambda r: (
            s3_error(500, "InternalError", "injected") if r.operation == "CopyObject" and added in r.key else None
        )
    elif how == "refused deletes":
        args = ("--max-delete", "0")
    result = run_cli("sync", *args)
    assert result.exit_code == (0 if how == "clean" else 1), result.output
    faults.fail = None
    ids = version_ids(bucket)
    assert len(ids) == 2 and ids[0] == first
    second = ids[1]
    table, info = read_version(bucket, second)
    held = dataset_objects(bucket)
    # the version records exactly what the bucket held, duplicates included
    assert sorted(table["dataset_key"]) == sorted(held)

    if how == "clean":
        assert info.partial is None and listed(second)["partial"] is None
        assert shown_id("latest") == second and "PARTIAL" not in run_cli("versions", "list").output
        return

    assert info.partial is not None
    marker = info.partial
    assert marker["exit_code"] == 1 and marker["frames_in_two_places"] == doubled(held)
    if how == "failed delete":
        assert marker["failed"] >= 1 and doubled(held) >= 1
    elif how == "failed copy":
        assert marker["failed"] == 1 and added not in {place(k)[0] for k in held}
    else:
        assert marker["failed"] == 0 and marker["held_back"] >= 1 and "refusing" in marker["reason"]
    assert f"dataset version {second} written (partial)" in result.output + result.stderr
    # flagged everywhere, skipped by `latest` unless asked
    assert listed(second)["partial"] == marker
    text = run_cli("versions", "list")
    assert f"{second} is partial: written by a run that exited 1" in text.output and "PARTIAL" in text.output
    assert shown_id("latest") == first
    assert shown_id("latest", "--include-partial") == second
    assert shown_id(second) == second
    assert "PARTIAL: partial: written by a run that exited 1" in run_cli("versions", "show", second).output
    diff = run_cli("versions", "diff", first, second)
    assert diff.exit_code == 0 and "; PARTIAL)" in diff.output and f"version {second} is partial" in diff.stderr
    assert run_cli("versions", "diff", "previous").exit_code == 2  # only one complete version
    pulled = run_cli("pull", "--version", "latest", "--dest", str(tmp_path / "latest"))
    assert pulled.exit_code == 0 and f"pulled version {first}" in pulled.output + pulled.stderr
    named = run_cli("pull", "--version", second, "--dest", str(tmp_path / "named"))
    assert f"version {second} is partial" in named.stderr

    # the next run that does all its work writes a complete version, and `latest` is that one
    sync_ok()
    third = version_ids(bucket)[-1]
    assert third != second and read_version(bucket, third)[1].partial is None
    assert shown_id("latest") == third and doubled(dataset_objects(bucket)) == 0


def test_a_clean_run_with_the_outcome_of_a_partial_version_writes_a_complete_one(bucket, faults):
    """A run that failed (a sheet it could not read) but left the datasets as a clean run would: the clean rerun
    changes nothing, yet writes a complete version of the same datasets, so `latest` finds them."""
    sheets = sheets_of()
    upload_season(bucket, sheets)
    sync_ok()
    edit(bucket, sheets)
    rows = sheets[E2]
    bucket.client.delete_object(Bucket=bucket.name, Key=sheet_key(E2))  # E2's sheet cannot be read: a job failure
    failed = run_cli("sync")
    assert failed.exit_code == 1, failed.output
    first, partial = version_ids(bucket)
    assert read_version(bucket, partial)[1].partial is not None
    put_sheet(bucket, E2, rows)
    output = sync_ok()
    assert "done: copied 0, moved 0, deleted 0" in output
    *_, complete = version_ids(bucket)
    assert complete != partial and read_version(bucket, complete)[1].partial is None
    assert shown_id("latest") == complete
    a, b = read_version(bucket, partial)[0], read_version(bucket, complete)[0]
    assert sorted(a["dataset_key"]) == sorted(b["dataset_key"]) == sorted(dataset_objects(bucket))
    assert listed(complete)["change"] == dict.fromkeys(["added", "removed", "moved", "reclassified", "metadata"], 0)
    # and a third run, complete again, writes nothing
    assert f"datasets unchanged since version {complete}" in sync_ok() and version_ids(bucket)[-1] == complete


def test_diff_versions_counts_each_object_of_a_frame_in_two_places():
    """The pure diff on the issue's shape: A has a frame in train/Rare and train/Legendary and one in test and
    validate; B keeps one object of each."""
    import pyarrow as pa

    def table(rows: list[tuple[str, str, str]]) -> pa.Table:
        return pa.table(
            {
                "frame": [f for f, _, _ in rows],
                "episode_id": ["S01E01"] * len(rows),
                "dataset": [d for _, d, _ in rows],
                "rarity": [r for _, _, r in rows],
                "metadata": [""] * len(rows),
            }
        )

    x, y, z = (f"TT_S01_E01_FRM-00-00-0{i}-00" for i in range(3))
    a = table([(x, "train", "Rare"), (x, "train", "Legendary"), (y, "test", "Common"), (y, "validate", "Common")])
    a = pa.concat_tables([a, table([(z, "train", "Common")])])
    b = table([(x, "train", "Legendary"), (y, "validate", "Common"), (z, "test", "Trash")])
    diff = diff_versions(a, b)
    assert diff.counts == {"added": 0, "removed": 2, "moved": 1, "reclassified": 1, "metadata": 0}
    assert diff.unchanged == 2 and (diff.objects_a, diff.objects_b, diff.doubled_a, diff.doubled_b) == (5, 3, 2, 0)
    assert set(zip(diff.changes["frame"], diff.changes["change"], diff.changes["from_dataset"], strict=True)) == {
        (x, "removed", "train"),
        (y, "removed", "test"),
        (z, "moved+reclassified", "train"),
    }
    grid = diff.transitions
    assert grid.loc["Rare", "(none)"] == 1 and grid.loc["Common", "(none)"] == 1 and grid.loc["Common", "Trash"] == 1
