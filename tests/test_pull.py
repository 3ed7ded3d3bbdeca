"""`pull`: datasets to a local folder, incrementally, with `--delete` and `DEST/labels.csv`."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import pandas as pd
import pytest
from conftest import run_cli
from season import ML_PREFIX, row, upload_season

from tuttle_prep.core.labels import LABEL_COLUMNS, labels_key
from tuttle_prep.edges import aws

LABELS = labels_key(ML_PREFIX)


class GetCounter:
    """Counts GetObject calls for dataset jpgs on the sessions the CLI creates."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def session(self) -> boto3.session.Session:
        session = boto3.session.Session()
        session.events.register("provide-client-params.s3.GetObject", self._record)
        return session

    def _record(self, params: dict, **_: object) -> None:
        if params["Key"].endswith(".jpg"):
            self.keys.append(params["Key"])


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> GetCounter:
    counter = GetCounter()
    monkeypatch.setattr(aws, "new_session", counter.session)
    return counter


def frame(episode_id: str, second: int) -> str:
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-00-00-{second:02d}-00"


@pytest.fixture
def synced(bucket):
    """Two episodes of 15 frames synced into the datasets (so the labels index exists too)."""
    rarities = ["Common", "Rare", "Uncommon", "Trash", "Legendary"]
    sheets = {
        eid: [row(frame(eid, s), rarities[s % 5], METADATA=f"[Emily, {eid} {s}]") for s in range(15)]
        for eid in ("S01E01", "S02E01")
    }
    upload_season(bucket, sheets)
    assert run_cli("sync").exit_code == 0
    return bucket


def objects_of(bucket, *datasets: str) -> dict[str, bytes]:
    """{relative path: content} of the bucket's dataset objects of `datasets`."""
    return {
        key[len(ML_PREFIX) :]: bucket.get(key)
        for key in bucket.keys(ML_PREFIX)
        if key.split("/")[2] in datasets and key.endswith(".jpg")
    }


def local_files(dest: Path, *datasets: str) -> dict[str, bytes]:
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for d in datasets
        for p in (dest / d).rglob("*")
        if p.is_file() and p.name != "metadata.parquet"  # Hugging Face's metadata, beside the rarity folders
    }


def read_local_labels(dest: Path) -> pd.DataFrame:
    return pd.read_csv(dest / "labels.csv", dtype=str, keep_default_na=False)


def test_pull_twice_downloads_once_and_writes_labels(synced, gets: GetCounter, tmp_path: Path) -> None:
    dest = tmp_path / "box"
    first = run_cli("pull", "--dataset", "train", "--dataset", "validate", "--dest", str(dest))
    assert first.exit_code == 0, first.output
    wanted = objects_of(synced, "train", "validate")
    assert local_files(dest, "train", "validate") == wanted
    assert not (dest / "test").exists()
    assert len(gets.keys) == len(wanted) > 0

    labels = read_local_labels(dest)
    assert list(labels.columns) == LABEL_COLUMNS
    assert {k[len(ML_PREFIX) :] for k in labels["s3_key"]} == set(wanted)
    index = pd.read_csv(io.BytesIO(synced.get(LABELS)), dtype=str, keep_default_na=False)
    assert labels.to_dict(orient="records") == index[index["dataset"].isin(["train", "validate"])].to_dict(
        orient="records"
    )
    assert (labels["metadata"] != "").all()
    parquet = pd.read_parquet(dest / "labels.parquet")  # the same table, typed, with each file's path in DEST
    assert parquet[LABEL_COLUMNS].astype(object).to_dict(orient="records") == labels.to_dict(orient="records")
    assert set(parquet["file_name"]) == set(wanted)

    labels_mtime = (dest / "labels.csv").stat().st_mtime_ns
    parquet_mtime = (dest / "labels.parquet").stat().st_mtime_ns
    gets.keys.clear()
    second = run_cli("pull", "--dataset", "train", "--dataset", "validate", "--dest", str(dest))
    assert second.exit_code == 0, second.output
    assert gets.keys == []
    assert local_files(dest, "train", "validate") == wanted
    assert (dest / "labels.csv").stat().st_mtime_ns == labels_mtime
    assert (dest / "labels.parquet").stat().st_mtime_ns == parquet_mtime


def test_pull_fetches_only_files_of_another_size(synced, gets: GetCounter, tmp_path: Path) -> None:
    dest = tmp_path / "box"
    assert run_cli("pull", "--dataset", "train", "--dest", str(dest)).exit_code == 0
    changed_key = sorted(k for k in synced.keys(ML_PREFIX + "train/"))[0]
    synced.put(changed_key, b"a longer jpeg body than before" * 3)
    truncated = sorted((dest / "train").rglob("*.jpg"))[-1]
    truncated.write_bytes(truncated.read_bytes()[:3])

    gets.keys.clear()
    result = run_cli("pull", "--dataset", "train", "--dest", str(dest))
    assert result.exit_code == 0, result.output
    assert sorted(gets.keys) == sorted([changed_key, ML_PREFIX + truncated.relative_to(dest).as_posix()])
    assert local_files(dest, "train") == objects_of(synced, "train")


def test_delete_removes_local_files_no_longer_in_the_pulled_datasets_only(synced, tmp_path: Path) -> None:
    dest = tmp_path / "box"
    assert run_cli("pull", "--dataset", "train", "--dataset", "test", "--dest", str(dest)).exit_code == 0
    gone = sorted(synced.keys(ML_PREFIX + "train/"))[0]
    synced.client.delete_object(Bucket=synced.name, Key=gone)
    stray = dest / "train" / "Legendary" / "TT_S09_E09_FRM-00-00-00-00.jpg"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"old")
    notes = dest / "train" / "Junk" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("mine")
    outside = dest / "my-notes.txt"
    outside.write_text("mine")

    # without --delete the stale frame files would stay beside the dataset: refused, naming them, nothing changed
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    without = run_cli("pull", "--dataset", "train", "--dest", str(dest))
    assert without.exit_code == 1, without.output
    assert gone[len(ML_PREFIX) :] in without.stderr
    assert "train/Legendary/TT_S09_E09_FRM-00-00-00-00.jpg" in without.stderr
    assert "rerun with --delete" in without.stderr and "notes.txt" not in without.stderr
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before

    result = run_cli("pull", "--dataset", "train", "--dest", str(dest), "--delete")
    assert result.exit_code == 0, result.output
    assert local_files(dest, "train") == objects_of(synced, "train")
    assert not (dest / "train" / "Junk").exists()
    # the test dataset was not pulled this time, so its files stay; so do files outside the datasets
    assert local_files(dest, "test") == objects_of(synced, "test") != {}
    assert outside.read_text() == "mine"
    # the index describes every dataset folder under DEST: test's files (pulled earlier) are listed too
    assert set(read_local_labels(dest)["dataset"]) == {"train", "test"}


def test_delete_leaves_a_dataset_that_is_empty_in_s3_alone(bucket, tmp_path: Path) -> None:
    dest = tmp_path / "box"
    kept = dest / "test" / "Rare" / "TT_S01_E01_FRM-00-00-01-00.jpg"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"jpeg")
    result = run_cli("pull", "--dataset", "test", "--dest", str(dest), "--delete")
    assert result.exit_code == 0, result.output
    assert kept.exists()
    assert "has no files" in result.stderr
    # no labels index in S3 yet: the pull still works, with empty metadata and a note saying why
    assert "no labels index" in result.stderr
    assert read_local_labels(dest).empty


def test_pull_of_an_unknown_dataset_is_a_usage_error(bucket, tmp_path: Path) -> None:
    result = run_cli("pull", "--dataset", "training", "--dest", str(tmp_path / "box"))
    assert result.exit_code == 2
    assert "not a dataset of TUTTLE_SPLIT" in result.output


def _tree(root: Path) -> dict[str, bytes | str | None]:
    """Every file (its bytes), link (its target) and folder (None) under `root`, links not followed."""
    found: dict[str, bytes | str | None] = {}
    for path in sorted(root.rglob("*")):
        where = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[where] = str(path.readlink())
        else:
            found[where] = path.read_bytes() if path.is_file() else None
    return found


@pytest.mark.parametrize("linked", ["dataset folder", "rarity folder"])
def test_a_dest_folder_linked_outside_dest_is_refused_and_nothing_written_or_deleted_there(
    synced, tmp_path: Path, linked: str
) -> None:
    """DEST/train (or DEST/train/Common) is a link to another project's folder: `pull --delete` neither deletes
    its files (before: "deleted 2 local files", weights.bin among them) nor writes frames into it."""
    dest, outside = tmp_path / "box", tmp_path / "outside"
    (outside / "Common").mkdir(parents=True)
    (outside / "weights.bin").write_bytes(b"months of training")
    (outside / "Common" / "notes.txt").write_bytes(b"mine")
    if linked == "dataset folder":
        dest.mkdir()
        (dest / "train").symlink_to(outside, target_is_directory=True)
    else:
        (dest / "train").mkdir(parents=True)
        (dest / "train" / "Common").symlink_to(outside, target_is_directory=True)
    before = _tree(tmp_path)

    result = run_cli("pull", "--dataset", "train", "--dest", str(dest), "--delete")
    assert result.exit_code == 1, result.output
    assert _tree(tmp_path) == before
    assert "not a folder under" in result.stderr and "nothing downloaded or deleted" in result.stderr


def test_a_leftover_part_file_that_is_a_link_is_replaced_not_written_through(synced, tmp_path: Path) -> None:
    """A `<frame>.jpg.part` or `labels.csv.part` left in DEST as a link to a file outside DEST: the download
    and the labels write replace the link; the file it points to keeps its bytes (before: overwritten with
    the frame's and the labels' bytes)."""
    dest, outside = tmp_path / "box", tmp_path / "outside"
    outside.mkdir()
    frame_path = next(iter(sorted(objects_of(synced, "train"))))
    local = dest / frame_path
    local.parent.mkdir(parents=True)
    targets = {name: outside / name for name in ("authorized_keys", "profile")}
    for target in targets.values():
        target.write_bytes(b"someone else's file")
    local.with_name(local.name + ".part").symlink_to(targets["authorized_keys"])
    (dest / "labels.csv.part").symlink_to(targets["profile"])

    result = run_cli("pull", "--dataset", "train", "--dest", str(dest))
    assert result.exit_code == 0, result.output
    assert {t.read_bytes() for t in targets.values()} == {b"someone else's file"}
    assert local_files(dest, "train") == objects_of(synced, "train")
    assert not list(dest.rglob("*.part"))
