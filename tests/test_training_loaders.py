"""What a person training the model gets (issue 24): one label schema with a fixed class index, a DEST that
Hugging Face `datasets` and a ten-line PyTorch `Dataset` load as docs/datasets.md shows, one place per frame,
and a marker naming the version pulled."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from season import ML_PREFIX, row, source_key, upload_season

from tuttle_prep.commands.demo import demo_sheet, frame_jpeg
from tuttle_prep.core.labels import labels_parquet
from tuttle_prep.core.versions import INFO_KEY, VersionInfo, version_from_parquet, version_to_parquet

DOCS = Path(__file__).resolve().parent.parent / "docs" / "datasets.md"
CLASSES = ["Legendary", "Rare", "Uncommon", "Common", "Trash"]
ALL = ("--dataset", "train", "--dataset", "validate", "--dest")


def docs_block(heading: str) -> str:
    """The first ```python block after `heading` in docs/datasets.md, as written."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def demo_pulled(bucket, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """The demo's three episodes (its sheets, its real jpg frames) synced, then all three datasets pulled."""
    sheets = {eid: demo_sheet(eid).to_dict(orient="records") for eid in ("S01E01", "S01E02", "S01E03")}
    upload_season(bucket, sheets)
    for rows in sheets.values():
        for r in rows:
            bucket.put(source_key(r["FRAME NUMBER"]), frame_jpeg(r["FRAME NUMBER"]))
    assert run_cli("sync").exit_code == 0
    dest = tmp_path / "data" / "tuttle"
    result = run_cli("pull", *ALL[:-1], "--dataset", "test", "--dest", str(dest))
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(dest / "labels.csv", dtype=str, keep_default_na=False)
    assert set(labels["dataset"]) == {"train", "validate", "test"} and len(set(labels["rarity"])) == 5
    return dest, labels


def _counts(labels: pd.DataFrame) -> dict[str, dict[str, int]]:
    return {d: dict(sorted(g["rarity"].value_counts().items())) for d, g in labels.groupby("dataset")}


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="datasets is not installed (requirements.txt)")
def test_the_docs_hugging_face_example_loads_three_splits_with_rarity_as_a_class_label_in_the_fixed_order(
    demo_pulled, tmp_path: Path
) -> None:
    """The block as written (DEST put in for /data/tuttle), in a fresh interpreter with its cache in tmp and no
    network. Before: `load_dataset(DEST)` gave train and test only (no split is called `validate` for
    `imagefolder`), labels were the folder names in alphabetical order."""
    dest, labels = demo_pulled
    code = docs_block("### Hugging Face `datasets`").replace('"/data/tuttle"', repr(str(dest)))
    code += (
        "\nimport collections, json\n"
        "def seen(s):\n"
        "    counts = collections.Counter(s.features['rarity'].int2str(c) for c in s['rarity'])\n"
        "    return {'names': s.features['rarity'].names, 'counts': dict(sorted(counts.items())),"
        " 'frames': sorted(s['frame'])}\n"
        "print(json.dumps({name: seen(s) for name, s in splits.items()}))\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout.strip().splitlines()
    assert printed[0] == str(CLASSES)
    index, size = printed[1].split(" ", 1)
    assert int(index) in range(5) and re.fullmatch(r"\(\d+, \d+\)", size)
    splits = json.loads(printed[-1])
    assert list(splits) == ["train", "validate", "test"]
    for name, split in splits.items():
        assert split["names"] == CLASSES
        mine = labels[labels["dataset"] == name]
        assert split["counts"] == {r: n for r, n in sorted(mine["rarity"].value_counts().items())}
        assert split["frames"] == sorted(mine["frame"])


def test_the_docs_pytorch_dataset_reads_labels_parquet_paths_and_class_indexes(demo_pulled) -> None:
    """The ten-line Dataset as written, run with Pillow on the pulled demo. torch is not a dependency of this
    project, so `torch.utils.data.Dataset` is given as a plain base class (it is only a protocol there): every
    column and path the example uses is checked for real. Before: labels.parquet had no `file_name` and its
    `rarity` was a string (no `.cat.codes`)."""
    dest, labels = demo_pulled
    code = docs_block("### PyTorch").replace('"/data/tuttle"', repr(str(dest)))
    torch = types.ModuleType("torch")
    torch.utils = types.SimpleNamespace(data=types.SimpleNamespace(Dataset=object))
    scope: dict[str, object] = {}
    saved = sys.modules.get("torch")
    sys.modules["torch"] = torch
    try:
        exec(compile(code, str(DOCS), "exec"), scope)
    finally:
        if saved is None:
            sys.modules.pop("torch")
        else:
            sys.modules["torch"] = saved
    train = scope["train"]
    wanted = labels[labels["dataset"] == "train"]
    assert len(train) == len(wanted) > 0
    seen = []
    for i in range(len(train)):
        image, label = train[i]
        assert image.mode == "RGB" and image.size[0] > 0
        seen.append((train.rows.frame[i], CLASSES[label]))
    assert sorted(seen) == sorted(zip(wanted["frame"], wanted["rarity"], strict=True))
    validate = scope["TuttleFrames"](str(dest), "validate")
    assert len(validate) == (labels["dataset"] == "validate").sum()


def test_every_labels_and_version_file_gives_each_rarity_the_same_class_code() -> None:
    """Two tables holding different rarities (first met in different orders): the same code for the same rarity in
    labels.parquet and in a version, and dataset in TUTTLE_SPLIT's order. Before: labels.parquet held plain
    strings and a version's dictionary followed the order of first appearance (Common was 0 in one, 1 in the
    next)."""

    def labels_of(rarities: list[str], datasets: list[str]) -> pd.DataFrame:
        frames = [f"TT_S01_E01_FRM-00-01-0{i}-12" for i in range(len(rarities))]
        return pd.DataFrame(
            {
                "frame": frames,
                "episode_id": "S01E01",
                "dataset": datasets,
                "rarity": rarities,
                "metadata": "",
                "s3_key": [f"{ML_PREFIX}{d}/{r}/{f}.jpg" for d, r, f in zip(datasets, rarities, frames, strict=True)],
            }
        )

    one = labels_of(["Common", "Trash"], ["test", "train"])
    two = labels_of(["Rare", "Common", "Legendary"], ["validate", "validate", "train"])
    split = ("train", "validate", "test")
    for table in (one, two):
        parquet = pd.read_parquet(io.BytesIO(labels_parquet(table, split)))
        assert list(parquet["rarity"].cat.categories) == CLASSES
        assert list(parquet["dataset"].cat.categories) == list(split)
        assert [CLASSES[c] for c in parquet["rarity"].cat.codes] == list(table["rarity"])
        assert list(parquet["season"]) == ["S01"] * len(table) and list(parquet["seconds"]) == [
            60 + i + 0.5 for i in range(len(table))
        ]
        version = pa.table(
            {
                "frame": table["frame"],
                "episode_id": table["episode_id"],
                "dataset": table["dataset"],
                "rarity": table["rarity"],
                "metadata": table["metadata"],
                "dataset_key": table["s3_key"],
                "source_key": table["s3_key"],
                "source_etag": [None] * len(table),
                "source_size": pa.array([None] * len(table), pa.int64()),
            }
        )
        info = VersionInfo("20261201T000000Z-a", "a", "20261201T000000Z", dict.fromkeys(split, 1 / 3), "s", 0, 2, {})
        stored = pq.read_table(io.BytesIO(version_to_parquet(version, info))).to_pandas()
        assert list(stored["rarity"].cat.categories) == CLASSES
        assert list(stored["dataset"].cat.categories) == list(split)
        assert list(stored["seconds"]) == list(parquet["seconds"]) and list(stored["season"]) == ["S01"] * len(table)


def test_a_version_written_before_the_label_schema_stays_readable() -> None:
    """A version as the job wrote it before (dictionaries in the order of first appearance, no season/seconds)."""
    frames = ["TT_S01_E01_FRM-00-00-01-00", "TT_S01_E01_FRM-00-00-02-00"]
    old = pa.table(
        {
            "frame": frames,
            "episode_id": pa.array(["S01E01"] * 2).dictionary_encode(),
            "dataset": pa.array(["validate", "train"]).dictionary_encode(),
            "rarity": pa.array(["Trash", "Common"]).dictionary_encode(),
            "metadata": ["", ""],
            "dataset_key": [f"{ML_PREFIX}validate/Trash/{frames[0]}.jpg", f"{ML_PREFIX}train/Common/{frames[1]}.jpg"],
            "source_key": ["a", "b"],
            "source_etag": [None, None],
            "source_size": pa.array([None, None], pa.int64()),
        }
    )
    info = VersionInfo("20261101T000000Z-a", "a", "20261101T000000Z", {"train": 0.7}, "s", 0, 2, {})
    sink = io.BytesIO()
    pq.write_table(old.replace_schema_metadata({INFO_KEY: info.to_json().encode()}), sink)
    table, back = version_from_parquet(sink.getvalue(), "old")
    assert back.id == info.id
    assert table["rarity"].to_pylist() == ["Trash", "Common"] and table["dataset"].to_pylist() == ["validate", "train"]


def frame(second: int) -> str:
    return f"TT_S01_E01_FRM-00-00-{second:02d}-00"


def test_pull_never_leaves_one_frame_in_two_places(bucket, tmp_path: Path) -> None:
    """A sync moved a frame from train to validate (and one from Common to Rare within train) after a pull of
    both. Pulling validate alone would put the first frame in two places, pulling train without --delete would
    keep the stale one: both are refused before anything is written, naming the files and the fix. Before: exit 0,
    the frame under two rarities/datasets, `labels.csv` listing it twice."""
    rarities = ["Common", "Rare", "Uncommon", "Trash", "Legendary"]
    upload_season(bucket, {"S01E01": [row(frame(s), rarities[s % 5]) for s in range(20)]})
    assert run_cli("sync").exit_code == 0
    dest = tmp_path / "box"
    assert run_cli("pull", *ALL, str(dest)).exit_code == 0
    train_keys = sorted(k for k in bucket.keys(ML_PREFIX + "train/") if k.endswith(".jpg"))
    moved, recoloured = train_keys[0], train_keys[1]
    to_validate = moved.replace("/train/", "/validate/")
    parts = recoloured.split("/")
    to_rare = "/".join([*parts[:-2], "Rare" if parts[-2] != "Rare" else "Common", parts[-1]])
    for old, new in ((moved, to_validate), (recoloured, to_rare)):
        bucket.client.copy_object(Bucket=bucket.name, Key=new, CopySource={"Bucket": bucket.name, "Key": old})
        bucket.client.delete_object(Bucket=bucket.name, Key=old)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}

    only_validate = run_cli("pull", "--dataset", "validate", "--dest", str(dest))
    assert only_validate.exit_code == 1, only_validate.output
    assert moved[len(ML_PREFIX) :] in only_validate.stderr
    assert "pull --dataset train --delete as well" in only_validate.stderr
    stale = run_cli("pull", "--dataset", "train", "--dest", str(dest))
    assert stale.exit_code == 1, stale.output
    assert recoloured[len(ML_PREFIX) :] in stale.stderr and "rerun with --delete" in stale.stderr
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before

    fixed = run_cli("pull", *ALL[:-1], "--delete", "--dest", str(dest))
    assert fixed.exit_code == 0, fixed.output
    labels = pd.read_csv(dest / "labels.csv", dtype=str, keep_default_na=False)
    assert labels["frame"].is_unique
    on_disk = sorted(p.name for p in dest.rglob("*.jpg"))
    assert on_disk == sorted(f"{f}.jpg" for f in labels["frame"])
    assert (dest / to_validate[len(ML_PREFIX) :]).is_file() and not (dest / moved[len(ML_PREFIX) :]).exists()
    # the marker: these files are not the latest version's (the objects were moved behind the sync's back)
    marker = json.loads((dest / ".tuttle-version.json").read_text())
    assert marker["version"] is None and marker["latest_version"] and "differ" in marker["note"]

    # pull --version keeps the same rule: a frame file the version does not place, without --delete, is refused
    rebuilt = tmp_path / "rebuilt"
    assert run_cli("pull", "--version", "latest", "--dest", str(rebuilt)).exit_code == 0
    stray = rebuilt / "train" / "Common" / f"{frame(59)}.jpg"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"stray")
    again = run_cli("pull", "--version", "latest", "--dest", str(rebuilt))
    assert again.exit_code == 1 and f"train/Common/{frame(59)}.jpg" in again.stderr, again.output
    assert run_cli("pull", "--version", "latest", "--dest", str(rebuilt), "--delete").exit_code == 0
    assert not stray.exists()
