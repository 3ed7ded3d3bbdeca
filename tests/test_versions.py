"""Dataset versions on moto server: one per change, listed, diffed, shown, pulled from the sources, kept;
bad version objects and faults. Assertions are on the bucket and the local folder."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from season import FRAME, JONNY, ML_PREFIX, frame_number, put_sheet, put_sources, row, source_key, upload_season

from tuttle_prep.core.clock import Clock, fixed_clock
from tuttle_prep.core.frame_table import SHEET_HEADER, build_frame_table
from tuttle_prep.core.labels import LABEL_COLUMNS, labels_key
from tuttle_prep.core.plan import KeyLayout, wanted_frames
from tuttle_prep.core.run_report import RunReport
from tuttle_prep.core.versions import (
    CONTENT_COLUMN,
    VERSION_COLUMNS,
    new_version_id,
    version_from_parquet,
    version_time,
    version_to_parquet,
    versions_prefix,
)
from tuttle_prep.edges import s3_versions
from tuttle_prep.settings import Settings

VERSIONS = versions_prefix(ML_PREFIX)
HEADER = list(SHEET_HEADER)
E1, E2 = "S01E01", "S01E02"
RARITIES = ["Common", "Rare", "Uncommon", "Trash", "Legendary"]
ALL = ("--dataset", "train", "--dataset", "validate", "--dataset", "test")


def sheets_of(n: int = 10) -> dict[str, list[dict[str, str]]]:
    return {
        eid: [row(frame_number(eid, i), RARITIES[i % 5], METADATA=f"[Emily, {eid} {i}]") for i in range(n)]
        for eid in (E1, E2)
    }


def version_ids(bucket) -> list[str]:
    return sorted(k[len(VERSIONS) : -len(".parquet")] for k in bucket.keys(VERSIONS) if k.endswith(".parquet"))


def read_version(bucket, version_id: str):
    table, info = version_from_parquet(bucket.get(f"{VERSIONS}{version_id}.parquet"), version_id)
    return table.to_pandas(), info


def dataset_objects(bucket) -> set[str]:
    return {k for k in bucket.keys(ML_PREFIX) if k.endswith(".jpg")}


def sync_ok(*args: str, clock: Clock | None = None) -> str:
    """Run `sync` (handed `clock`, default the system clock); its stdout and stderr."""
    result = run_cli("sync", *args, clock=clock)
    assert result.exit_code == 0, result.output
    return result.output + result.stderr


def local_files(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*.jpg")}


@pytest.fixture
def season(bucket):
    sheets = sheets_of()
    upload_season(bucket, sheets)
    return sheets


def placements(sheets: dict[str, list[dict[str, str]]]) -> dict[str, tuple[str, str, str]]:
    """{frame: (dataset, rarity, metadata)} a sync of `sheets` leaves, through the split's entry point."""
    settings = Settings()
    frames = pd.concat(
        [
            build_frame_table(pd.DataFrame([[r.get(c, "") for c in HEADER] for r in rows], columns=HEADER), e)
            .frames.assign(episode_id=e)
            for e, rows in sheets.items()
        ],
        ignore_index=True,
    )
    wanted = wanted_frames(
        frames, settings.split, settings.split_seed, settings.split_group_seconds, stratify=settings.split_stratify
    )
    metadata = dict(zip(frames["frame"], frames["metadata"], strict=True))
    return {w.frame: (w.dataset, w.rarity, metadata[w.frame]) for w in wanted.itertuples()}


def changes_between(before: dict, after: dict) -> dict[str, str]:
    """{frame: "moved+reclassified", ...} as `versions diff` names each changed frame (CHANGE_KINDS order)."""
    out = {}
    for frame in set(before) | set(after):
        a, b = before.get(frame), after.get(frame)
        kinds = {
            "added": a is None,
            "removed": b is None,
            "moved": a is not None and b is not None and a[0] != b[0],
            "reclassified": a is not None and b is not None and a[1] != b[1],
            "metadata": a is not None and b is not None and a[2] != b[2],
        }
        if any(kinds.values()):
            out[frame] = "+".join(k for k, on in kinds.items() if on)
    return out


def edit(bucket, sheets) -> dict[str, str]:
    """Reclassify one frame, drop one, add one (with its source), change one METADATA; return the changes
    `versions diff` must name: these four, and the frames the stratified split moves within a rarity."""
    before = placements(sheets)
    rows = sheets[E1]
    reclassified, removed, metadata = rows[1][FRAME], rows[2][FRAME], rows[3][FRAME]
    rows[1][JONNY] = "Legendary"  # Rare -> Legendary
    del rows[2]
    rows[2]["METADATA"] = "[Ethan, Time Machine]"  # the frame that was rows[3]
    added = frame_number(E1, 40)
    rows.append(row(added, "Common"))
    put_sources(bucket, [added])
    put_sheet(bucket, E1, rows)
    changes = changes_between(before, placements(sheets))
    named = {reclassified: "reclassified", removed: "removed", metadata: "metadata", added: "added"}
    assert {f: c.replace("moved+", "") for f, c in changes.items() if f in named} == named
    return changes


def test_versions_per_change_diff_list_show_and_pull_of_the_first_after_moves(bucket, season, tmp_path):
    sync_ok()
    [first] = version_ids(bucket)
    table, info = read_version(bucket, first)
    assert list(table.columns) == [*VERSION_COLUMNS, CONTENT_COLUMN]  # content_hash: null with the hashes off
    assert set(table["dataset_key"]) == dataset_objects(bucket) and len(table) == 20
    sources = bucket.etags("tuttle_twins/s01")
    for r in table.itertuples():
        assert r.source_key == source_key(r.frame) and f'"{r.source_etag}"' == sources[r.source_key][0]
        assert r.source_size == len(bucket.get(r.source_key))
    assert info.frames == 20 and first.endswith(info.run_id) and info.previous is None
    assert info.split == {"train": 0.7, "validate": 0.2, "test": 0.1} and info.seed and info.group_seconds == 0
    assert sum(info.datasets.values()) == 20 and sum(info.rarities.values()) == 20
    pd.testing.assert_frame_equal(
        table[["frame", "metadata"]].set_index("frame").sort_index(),
        pd.DataFrame(
            {"metadata": [r["METADATA"] for rows in season.values() for r in rows]},
            index=pd.Index([r[FRAME] for rows in season.values() for r in rows], name="frame"),
        ).sort_index(),
        check_dtype=False,
    )
    today = tmp_path / "today"  # what a training box pulled right after the first sync
    assert run_cli("pull", *ALL, "--dest", str(today)).exit_code == 0
    # a plain pull names the version its files are: the latest, as no sync changed the datasets since
    assert json.loads((today / ".tuttle-version.json").read_text())["version"] == version_ids(bucket)[-1]

    before = placements(season)
    changes = edit(bucket, season)
    after = placements(season)
    output = sync_ok()
    first_again, second = version_ids(bucket)
    assert first_again == first and f"dataset version {second} written" in output
    # the job's own keys (versions, labels.csv, labels.parquet) are not strangers to sync or report
    assert "left alone" not in output
    assert "unexpected keys (not dataset objects, left alone): 0" in run_cli("report").output

    out = tmp_path / "diff.csv"
    result = run_cli("versions", "diff", "previous", "--out", str(out))
    assert result.exit_code == 0, result.output
    diff = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert dict(zip(diff["frame"], diff["change"], strict=True)) == changes
    frame = next(f for f, c in changes.items() if "reclassified" in c.split("+"))
    reclassified = diff.set_index("frame").loc[frame]
    assert (reclassified["from_rarity"], reclassified["to_rarity"]) == ("Rare", "Legendary")
    assert (reclassified["from_dataset"], reclassified["to_dataset"]) == (before[frame][0], after[frame][0])
    moved = sum("moved" in c.split("+") for c in changes.values())
    unchanged = len(after) - sum("removed" not in c.split("+") for c in changes.values())
    assert f"added 1, removed 1, moved {moved}, reclassified 1, metadata changed 1; {unchanged} unchanged" in (
        result.output
    )
    transitions = result.output.split("rarity transitions", 1)[1]
    assert re.search(r"^Rare\s+.*\d", transitions, re.M) and "Legendary" in transitions

    listed = json.loads(run_cli("versions", "list", "--format", "json").output)
    assert [v["id"] for v in listed] == [second, first]
    assert listed[0]["change"] == {"added": 1, "removed": 1, "moved": moved, "reclassified": 1, "metadata": 1}
    assert listed[0]["previous"] == first and listed[1]["change"]["added"] == 20
    text = run_cli("versions", "list")
    assert text.exit_code == 0 and text.output.index(second) < text.output.index(first)

    # a third sync that moves frames between datasets (another split)
    result = run_cli("sync", env={"TUTTLE_SPLIT": "train=0.4,validate=0.4,test=0.2"})
    assert result.exit_code == 0, result.output
    third = version_ids(bucket)[-1]
    moved = json.loads(run_cli("versions", "list", "--format", "json").output)[0]["change"]["moved"]
    assert third not in (first, second) and moved > 0

    shown = run_cli("versions", "show", first[:20])  # a unique prefix
    assert shown.exit_code == 0, shown.output
    assert first in shown.output and re.search(r"^train\s+\d", shown.output, re.M)

    # the first version, rebuilt from the sources after the datasets moved on
    rebuilt = tmp_path / "rebuilt"
    result = run_cli("pull", "--version", first, "--dest", str(rebuilt))
    assert result.exit_code == 0, result.output
    files = local_files(rebuilt)
    assert files == local_files(today)
    for path, data in files.items():
        assert data == bucket.get(source_key(Path(path).stem))
    assert (rebuilt / "labels.csv").read_bytes() == (today / "labels.csv").read_bytes()
    parquet = pq.read_table(rebuilt / "labels.parquet")
    assert parquet.column_names == ["file_name", "frame", "episode_id", "season", "seconds", *LABEL_COLUMNS[2:]]
    assert parquet.num_rows == 20 and all((rebuilt / name).is_file() for name in parquet["file_name"].to_pylist())
    # the version pulled, traceable from DEST: the marker and labels.parquet's schema metadata name it
    assert json.loads(parquet.schema.metadata[b"tuttle_prep.labels"])["version"] == first
    marker = json.loads((rebuilt / ".tuttle-version.json").read_text())
    assert marker["version"] == first and marker["pulled"] == "version" and marker["complete"] is True
    # a rerun fetches nothing and rewrites nothing; with --delete it removes what is not in the version
    before = {p: p.stat().st_mtime_ns for p in rebuilt.rglob("*") if p.is_file()}
    stray = rebuilt / "train" / "Common" / f"{frame_number(E2, 77)}.jpg"  # a dataset file not in the version
    stray.write_bytes(b"stray")
    mine = rebuilt / "train" / "Common" / "not-a-frame.jpg"  # not a name the job places: left alone
    mine.write_bytes(b"mine")
    again = run_cli("pull", "--version", first, "--dest", str(rebuilt), "--delete")
    assert again.exit_code == 0 and "downloaded 0 " in again.output and "labels.csv unchanged" in again.output
    assert not stray.exists() and mine.read_bytes() == b"mine"
    assert {p: p.stat().st_mtime_ns for p in rebuilt.rglob("*") if p.is_file() and p != mine} == before


def test_an_unchanged_rerun_writes_no_version_and_nothing_under_the_ml_prefix(bucket, season):
    empty = run_cli("versions", "list")
    assert empty.exit_code == 0 and "no versions yet" in empty.output
    sync_ok()
    before = bucket.etags(ML_PREFIX)
    output = sync_ok()
    [only] = version_ids(bucket)
    assert bucket.etags(ML_PREFIX) == before and f"datasets unchanged since version {only}" in output

    # a reference matching no version (a day after the only one's): one sentence naming the nearest, exit 2
    later_day = (version_time(only) + timedelta(days=1)).strftime("%Y%m%d")
    result = run_cli("versions", "show", later_day)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"no version matches '{later_day}'; the nearest are {only} (in s3://{bucket.name}/{VERSIONS})"
    )
    assert run_cli("pull", "--version", "nope", "--dest", "x").exit_code == 2
    assert run_cli("versions", "diff", "previous").exit_code == 2  # there is only one version

    shown = json.loads(run_cli("versions", "show", "latest", "--format", "json").output)
    assert shown["version"]["id"] == only and shown["total_files"] == 20
    # the split settings that made it, so a training run can tell how its datasets were drawn
    assert (shown["version"]["stratify"], shown["version"]["group_seconds"]) == ("rarity", 0)


def test_a_crash_between_apply_and_version_write_leaves_no_gap(bucket, season, monkeypatch):
    sync_ok()
    changes = edit(bucket, season)

    class Killed(BaseException):
        """The process dies between the apply and the version write."""

    def crash(*_: object, **__: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(s3_versions.VersionStore, "write", crash)
        with pytest.raises(Killed):
            run_cli("sync")
    assert len(version_ids(bucket)) == 1  # the datasets changed, no version yet

    output = sync_ok()  # nothing left to apply: it writes the version of what it finds
    assert "done: copied 0, moved 0, deleted 0" in output and len(version_ids(bucket)) == 2
    result = run_cli("versions", "diff", "previous", "latest", "--out", "diff.csv")
    assert result.exit_code == 0, result.output
    diff = pd.read_csv("diff.csv", dtype=str, keep_default_na=False)
    assert dict(zip(diff["frame"], diff["change"], strict=True)) == changes


def test_retention_keeps_the_newest_the_latest_and_the_pinned(bucket, season, monkeypatch):
    started = datetime(2031, 6, 1, 2, 0, tzinfo=UTC)  # the first sync's clock; the later versions follow it
    sync_ok(clock=fixed_clock(started))
    [pinned] = version_ids(bucket)
    assert pinned.startswith("20310601T020000Z-")  # the version id's time is the sync's start by its clock
    table, info = version_from_parquet(bucket.get(f"{VERSIONS}{pinned}.parquet"), pinned)
    store = s3_versions.VersionStore(bucket.client, bucket.name, ML_PREFIX)
    for days in (1, 2, 3):  # three later versions of the same datasets, each readable as itself
        later = new_version_id(started + timedelta(days=days), "copy")
        when = version_time(later).strftime("%Y-%m-%dT%H:%M:%SZ")
        again = dataclasses.replace(info, id=later, run_id="copy", time=when)
        store.write(again, version_to_parquet(table, again))
    ids = version_ids(bucket)
    assert len(ids) == 4 and ids[0] == pinned

    monkeypatch.setenv("TUTTLE_VERSIONS_KEEP", "1")
    nothing = new_version_id(started + timedelta(days=30), "nothing")
    monkeypatch.setenv("TUTTLE_VERSIONS_PINNED", f"{pinned[:15]},{nothing}")
    result = run_cli("sync", clock=fixed_clock(started + timedelta(days=4)))  # unchanged: only the retention deletes
    assert result.exit_code == 0, result.output
    assert version_ids(bucket) == [pinned, ids[-1]]
    for deleted in ids[1:3]:
        assert f"deleted dataset version s3://{bucket.name}/{VERSIONS}{deleted}.parquet" in result.stderr
    assert f"{nothing}, which matches no version" in result.stderr
    assert sync_ok() and version_ids(bucket) == [pinned, ids[-1]]  # nothing more to delete


def test_a_bad_version_object_is_named_and_never_blocks_or_is_overwritten(bucket, season, tmp_path):
    sync_ok()
    [good] = version_ids(bucket)
    garbage_id = new_version_id(version_time(good) + timedelta(days=2), "garbage")
    lacking_id = new_version_id(version_time(good) + timedelta(days=1), "lacking")
    garbage = f"{VERSIONS}{garbage_id}.parquet"  # the newest by name
    bucket.put(garbage, b"not parquet at all")
    sink = io.BytesIO()
    table, _ = version_from_parquet(bucket.get(f"{VERSIONS}{good}.parquet"), good)
    pq.write_table(table.drop_columns(["rarity"]), sink)
    lacking = f"{VERSIONS}{lacking_id}.parquet"
    bucket.put(lacking, sink.getvalue())
    bucket.put(f"{VERSIONS}notes.txt", b"a stranger")
    strangers = {k: v for k, v in bucket.etags(VERSIONS).items() if k != f"{VERSIONS}{good}.parquet"}

    listed = run_cli("versions", "list")
    assert listed.exit_code == 1 and good in listed.output
    assert f"s3://{bucket.name}/{garbage}: not a Parquet file" in listed.stderr
    assert f"s3://{bucket.name}/{lacking}: not a dataset version (no column rarity)" in listed.stderr
    shown = run_cli("versions", "show", "latest")
    assert shown.exit_code == 1 and garbage in shown.stderr
    pulled = run_cli("pull", "--version", lacking_id[:8], "--dest", str(tmp_path / "x"))
    assert pulled.exit_code == 1 and "no column rarity" in pulled.stderr
    assert run_cli("versions", "diff", good, "latest").exit_code == 1

    # sync: not blocked, compares with the newest readable version, overwrites nothing
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    assert f"{garbage_id}.parquet: not a Parquet file" in result.stderr
    assert f"not named like one), left alone: s3://{bucket.name}/{VERSIONS}notes.txt" in result.stderr
    assert version_ids(bucket) == sorted([good, lacking_id, garbage_id])
    edit(bucket, season)
    sync_ok()
    assert len(version_ids(bucket)) == 4
    assert {k: v for k, v in bucket.etags(VERSIONS).items() if k in strangers} == strangers
    assert "_versions" not in run_cli("report").output


def test_pull_version_reports_deleted_and_changed_sources_and_fetches_the_rest(bucket, season, tmp_path):
    sync_ok()
    table, _ = read_version(bucket, version_ids(bucket)[0])
    gone, changed = table["source_key"].iloc[0], table["source_key"].iloc[1]
    bucket.client.delete_object(Bucket=bucket.name, Key=gone)
    bucket.put(changed, b"\xff\xd8 a new picture \xff\xd9")

    dest = tmp_path / "box"
    result = run_cli("pull", "--version", "latest", "--dest", str(dest))
    assert result.exit_code == 1
    assert f"source frame s3://{bucket.name}/{gone} of version" in result.stderr and "is gone" in result.stderr
    assert f"source frame s3://{bucket.name}/{changed} changed since version" in result.stderr
    files = local_files(dest)
    assert len(files) == 18 and all(data == bucket.get(source_key(Path(p).stem)) for p, data in files.items())
    # the index lists the files on disk: the version's rows but the two it could not rebuild
    indexed = pd.read_csv(dest / "labels.csv", dtype=str, keep_default_na=False)
    assert len(indexed) == 18 and not {Path(gone).stem, Path(changed).stem} & set(indexed["frame"])

    result = run_cli("pull", "--version", "latest", "--dest", str(dest), "--accept-changed-sources")
    assert result.exit_code == 1 and "downloaded 1 " in result.output  # the deleted source still fails
    assert "today's picture downloaded" in result.stderr
    assert local_files(dest)[next(p for p in local_files(dest) if Path(p).stem in changed)] == bucket.get(changed)


def test_a_clock_set_back_still_puts_the_new_version_last(bucket, season):
    sync_ok()
    [first] = version_ids(bucket)
    labels = pd.read_csv(io.BytesIO(bucket.get(labels_key(ML_PREFIX))), dtype=str, keep_default_na=False)
    labels.loc[0, "metadata"] = "[edited]"
    report = RunReport()

    def no_listing(*_: object) -> None:
        raise AssertionError("every source ETag is known from the previous version")

    versions = s3_versions.VersionStore(bucket.client, bucket.name, ML_PREFIX)
    layout = KeyLayout(ML_PREFIX, "tuttle_twins/", "thumbnails", ("train", "validate", "test"))
    long_ago = version_time(first) - timedelta(days=400)  # before the first, whatever today is
    s3_versions.record_version(versions, no_listing, layout, Settings(), labels, None, report, now=long_ago)
    assert not report.errors and report.version and version_ids(bucket) == [first, report.version]
    assert version_time(report.version) == version_time(first) + timedelta(seconds=1)


def test_retention_never_counts_or_deletes_an_object_it_cannot_read_as_a_version(bucket, season, monkeypatch):
    sync_ok()
    [good] = version_ids(bucket)
    garbage_id = new_version_id(version_time(good) + timedelta(days=1), "garbage")  # newer than good by name
    garbage = f"{VERSIONS}{garbage_id}.parquet"
    bucket.put(garbage, b"not parquet at all")
    monkeypatch.setenv("TUTTLE_VERSIONS_KEEP", "1")

    edit(bucket, season)
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    written = result.stderr.split("dataset version ", 1)[1].split(" written", 1)[0].rsplit("/", 1)[-1]
    new = written.removesuffix(".parquet")
    assert new not in (good, garbage_id)
    # the new version is the one kept; the older good one goes; the garbage is never deleted nor counted
    assert version_ids(bucket) == sorted([new, garbage_id])
    assert bucket.get(garbage) == b"not parquet at all"
    assert f"deleted dataset version s3://{bucket.name}/{VERSIONS}{good}.parquet" in result.stderr
    assert f"s3://{bucket.name}/{garbage}: not a Parquet file" in result.stderr

    before = bucket.etags(VERSIONS)
    again = run_cli("sync")  # unchanged: nothing written, nothing deleted
    assert again.exit_code == 0, again.output
    assert bucket.etags(VERSIONS) == before and "deleted dataset version" not in again.stderr
    assert f"s3://{bucket.name}/{garbage}" in again.stderr


FORGED_INFO = {
    "not an object": lambda info: [info],
    "frames a string": lambda info: {**info, "frames": "many"},
    "datasets a list": lambda info: {**info, "datasets": ["train"]},
    "change a string": lambda info: {**info, "change": "x"},
    "split a string": lambda info: {**info, "split": "x"},
    "previous a number": lambda info: {**info, "previous": 5},
    "a count true": lambda info: {**info, "datasets": {**info["datasets"], "train": True}},
}


@pytest.mark.parametrize("forged", list(FORGED_INFO))
def test_version_metadata_of_the_wrong_form_is_an_unreadable_version_named_never_a_crash(
    bucket, season, tmp_path, monkeypatch, forged
):
    """The version metadata in the Parquet schema is read back as untrusted: JSON of another form than the
    job writes makes the object an unreadable version, named by every command; before, sync, versions and
    pull --version crashed (AttributeError, TypeError, ValueError) on it."""
    sync_ok()
    [good] = version_ids(bucket)
    key = f"{VERSIONS}{good}.parquet"
    parquet = pq.ParquetFile(io.BytesIO(bucket.get(key)))
    info = json.loads(parquet.schema_arrow.metadata[b"tuttle_prep.version"])
    table = parquet.read().replace_schema_metadata({b"tuttle_prep.version": json.dumps(FORGED_INFO[forged](info))})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=sink.getvalue())  # no S3 metadata either
    named = f"s3://{bucket.name}/{key}: its version metadata is not readable"

    for args in (["versions", "list"], ["versions", "show", good], ["versions", "diff", good]):
        result = run_cli(*args)
        assert result.exit_code == 1 and named in result.stderr, (args, result.output)
    pulled = run_cli("pull", "--version", good, "--dest", str(tmp_path / "box"))
    assert pulled.exit_code == 1 and named in pulled.stderr and not (tmp_path / "box").exists()
    monkeypatch.setenv("TUTTLE_VERSIONS_KEEP", "1")
    result = run_cli("sync")  # a new version is written; the forged one is neither counted nor deleted
    assert result.exit_code == 0 and named in result.stderr, result.output
    assert len(version_ids(bucket)) == 2 and good in version_ids(bucket)
