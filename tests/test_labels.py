"""The labels index `<ML prefix>labels.csv`: built from the datasets, written by a real sync only when it changed."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from conftest import run_cli
from s3_fault_proxy import Answer, Request, S3FaultProxy, s3_error
from season import ML_PREFIX, dataset_key, row, upload_season

from tuttle_prep.core.labels import (
    LABEL_COLUMNS,
    build_labels,
    catalogue_after_apply,
    is_job_key,
    labels_key,
    labels_parquet_key,
)
from tuttle_prep.core.plan import KeyLayout, plan_changes
from tuttle_prep.edges.s3_sheet_headers import HEADERS_NAME

LABELS = labels_key(ML_PREFIX)
PARQUET = labels_parquet_key(ML_PREFIX)
LAYOUT = KeyLayout(ML_PREFIX, "tuttle_twins/", "thumbnails", ("train", "validate", "test"))
WRITES = ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects")


class S3Calls:
    """Every S3 request of the job (operation, key), seen by the fault proxy; fails the copies to `fail_keys`."""

    def __init__(self, proxy: S3FaultProxy) -> None:
        self.proxy = proxy
        self.fail_keys: set[str] = set()
        proxy.fail = self._answer

    @property
    def calls(self) -> list[tuple[str, str]]:
        return [(r.operation, r.key) for r in list(self.proxy.requests)]

    def clear(self) -> None:
        self.proxy.requests.clear()

    def _answer(self, request: Request) -> Answer | None:
        if request.operation == "CopyObject" and request.key in self.fail_keys:
            return s3_error(500, "InternalError", "injected")
        return None

    def writes(self, prefix: str = "") -> list[tuple[str, str]]:
        """Write requests whose key is under `prefix` (DeleteObjects has no single key: always counted)."""
        return [
            (op, key) for op, key in self.calls if op in WRITES and (key.startswith(prefix) or op == "DeleteObjects")
        ]


@pytest.fixture
def s3_calls(proxied: S3FaultProxy, monkeypatch: pytest.MonkeyPatch) -> S3Calls:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return S3Calls(proxied)


def frame(episode_id: str, second: int) -> str:
    return f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM-00-00-{second:02d}-00"


def season_sheets(metadata_suffix: str = "") -> dict[str, list[dict[str, str]]]:
    """Two episodes of 12 frames; every row has its own METADATA text (with a comma and quotes)."""
    rarities = ["Common", "Rare", "Uncommon", "Trash", "Legendary", "Common"]
    return {
        eid: [
            row(frame(eid, s), rarities[s % 6], METADATA=f'[Emily, "Ethan" {eid} {s}{metadata_suffix}]')
            for s in range(12)
        ]
        for eid in ("S01E01", "S01E02")
    }


def dataset_objects(bucket) -> set[str]:
    """The ML keys but the job's own: labels index (CSV, Parquet), versions, sheet-header memory."""
    return {k for k in bucket.keys(ML_PREFIX) if not is_job_key(k, ML_PREFIX) and k != ML_PREFIX + HEADERS_NAME}


def read_labels(bucket) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(bucket.get(LABELS)), dtype=str, keep_default_na=False)


def assert_index_matches_bucket(bucket, sheets: dict[str, list[dict[str, str]]]) -> pd.DataFrame:
    """The index has exactly the bucket's dataset objects, each row consistent with its key and its sheet row;
    labels.parquet holds the same table in the label schema (fixed class order, season, seconds)."""
    labels = read_labels(bucket)
    parquet = pd.read_parquet(io.BytesIO(bucket.get(PARQUET)))
    assert_label_schema(parquet)
    pd.testing.assert_frame_equal(parquet[LABEL_COLUMNS].astype(object), labels.astype(object))
    assert list(labels.columns) == LABEL_COLUMNS
    assert set(labels["s3_key"]) == dataset_objects(bucket)
    assert len(labels) == len(dataset_objects(bucket))
    metadata = {r["FRAME NUMBER"]: r["METADATA"] for rows in sheets.values() for r in rows}
    for label in labels.itertuples(index=False):
        assert label.s3_key == dataset_key(label.dataset, label.rarity, label.frame)
        assert label.episode_id == label.frame[3:6] + label.frame[7:10]
        assert label.metadata == metadata[label.frame]
    return labels


def assert_label_schema(parquet: pd.DataFrame, datasets: tuple[str, ...] = ("train", "validate", "test")) -> None:
    """The label schema: rarity a category in the fixed class order whatever the file holds, dataset in
    TUTTLE_SPLIT's order, season and seconds from the frame number."""
    assert list(parquet["rarity"].cat.categories) == ["Legendary", "Rare", "Uncommon", "Common", "Trash"]
    assert list(parquet["dataset"].cat.categories)[: len(datasets)] == list(datasets)
    for r in parquet.itertuples(index=False):
        assert r.season == r.frame[3:6] and r.episode_id == r.frame[3:6] + r.frame[7:10]
        hh, mm, ss, ff = (int(x) for x in r.frame[-11:].split("-"))
        assert r.seconds == hh * 3600 + mm * 60 + ss + ff / 24
    assert parquet["seconds"].dtype == "float64"


# ---- pure ----------------------------------------------------------------------------------------


def test_build_labels_joins_metadata_by_frame_and_sorts_by_key() -> None:
    keys = [
        dataset_key("validate", "Rare", frame("S01E01", 2)),
        dataset_key("train", "Common", frame("S01E01", 1)),
        dataset_key("train", "Trash", frame("S02E01", 1)),
    ]
    inventory, _ = LAYOUT.parse_dataset_keys(keys)
    metadata = pd.DataFrame(
        {"episode_id": ["S01E01", "S01E01"], "frame": [frame("S01E01", 1), frame("S01E01", 2)], "metadata": ["a", ""]}
    )
    labels = build_labels(inventory, metadata)
    assert labels.to_dict(orient="records") == [
        {
            "frame": frame("S01E01", 1),
            "episode_id": "S01E01",
            "dataset": "train",
            "rarity": "Common",
            "metadata": "a",
            "s3_key": keys[1],
        },
        {
            "frame": frame("S02E01", 1),
            "episode_id": "S02E01",
            "dataset": "train",
            "rarity": "Trash",
            "metadata": "",
            "s3_key": keys[2],
        },
        {
            "frame": frame("S01E01", 2),
            "episode_id": "S01E01",
            "dataset": "validate",
            "rarity": "Rare",
            "metadata": "",
            "s3_key": keys[0],
        },
    ]


def test_catalogue_after_apply_adds_destinations_and_drops_deleted_sources() -> None:
    kept, moved, deleted, copied = (frame("S01E01", s) for s in range(4))
    other_episode = dataset_key("test", "Rare", frame("S01E02", 0))
    current, _ = LAYOUT.parse_dataset_keys(
        [
            dataset_key("train", "Common", kept),
            dataset_key("train", "Common", moved),
            dataset_key("train", "Common", deleted),
            other_episode,
        ]
    )
    wanted = pd.DataFrame(
        {
            "episode_id": "S01E01",
            "frame": [kept, moved, copied],
            "rarity": ["Common", "Rare", "Trash"],
            "dataset": ["train", "train", "test"],
        }
    )
    sources = pd.DataFrame({"episode_id": "S01E01", "frame": [copied]})
    plan = plan_changes(wanted, current, sources, LAYOUT, {"S01E01"}, {"S01E01", "S01E02"})
    assert (plan.count("keep"), plan.count("move"), plan.count("copy"), plan.count("delete")) == (1, 1, 1, 1)

    after = set(catalogue_after_apply(plan, LAYOUT)["key"])
    assert after == {
        dataset_key("train", "Common", kept),
        dataset_key("train", "Rare", moved),
        dataset_key("test", "Trash", copied),
        other_episode,
    }
    held_back = set(catalogue_after_apply(plan, LAYOUT, plain_deletes_done=False)["key"])
    assert held_back == after | {dataset_key("train", "Common", deleted)}


# ---- against moto --------------------------------------------------------------------------------


def test_real_sync_writes_the_index_of_the_datasets_and_a_dry_run_does_not(bucket) -> None:
    sheets = season_sheets()
    upload_season(bucket, sheets)

    dry = run_cli("sync", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert LABELS not in bucket.keys(ML_PREFIX)

    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    labels = assert_index_matches_bucket(bucket, sheets)
    assert len(labels) == 24
    assert labels["s3_key"].is_monotonic_increasing
    # on the next run the job's own index is not reported as a stray key under the ML prefix
    rerun = run_cli("sync")
    assert rerun.exit_code == 0, rerun.output
    assert "not a dataset object" not in rerun.output


def test_unchanged_rerun_writes_nothing_under_the_ml_prefix(bucket, s3_calls: S3Calls) -> None:
    sheets = season_sheets()
    upload_season(bucket, sheets)
    assert run_cli("sync").exit_code == 0
    before = bucket.etags(ML_PREFIX)

    s3_calls.clear()
    rerun = run_cli("sync")
    assert rerun.exit_code == 0, rerun.output
    assert s3_calls.writes(ML_PREFIX) == []
    assert bucket.etags(ML_PREFIX) == before


def test_metadata_edit_alone_rewrites_only_the_index(bucket, s3_calls: S3Calls) -> None:
    upload_season(bucket, season_sheets())
    assert run_cli("sync").exit_code == 0

    edited = season_sheets(metadata_suffix=", Time Machine")
    upload_season(bucket, edited)
    s3_calls.clear()
    result = run_cli("sync")
    assert result.exit_code == 0, result.output
    # the index (Parquet first, then the CSV: both or neither) and a dataset version, nothing else
    writes = s3_calls.writes(ML_PREFIX)
    assert writes[:2] == [("PutObject", PARQUET), ("PutObject", LABELS)]
    assert [op for op, _ in writes[2:]] == ["PutObject"] and writes[2][1].startswith(f"{ML_PREFIX}_versions/")
    assert_index_matches_bucket(bucket, edited)


def test_single_episode_sync_keeps_the_metadata_of_the_other_episodes(bucket) -> None:
    sheets = season_sheets()
    upload_season(bucket, sheets)
    assert run_cli("sync").exit_code == 0

    # S01E01's first frame becomes Trash; S01E02's sheet is not read in this run
    sheets["S01E01"][0] = row(frame("S01E01", 0), "Trash", METADATA=sheets["S01E01"][0]["METADATA"])
    upload_season(bucket, sheets)
    result = run_cli("sync", "--episode", "S01E01")
    assert result.exit_code == 0, result.output

    labels = assert_index_matches_bucket(bucket, sheets)
    assert labels.loc[labels["frame"] == frame("S01E01", 0), "rarity"].tolist() == ["Trash"]
    assert (labels.loc[labels["episode_id"] == "S01E02", "metadata"] != "").all()


def test_after_a_failed_copy_the_index_describes_what_the_bucket_holds(bucket, s3_calls: S3Calls) -> None:
    sheets = season_sheets()
    upload_season(bucket, sheets)
    assert run_cli("sync").exit_code == 0
    before = read_labels(bucket).set_index("frame")

    # three frames change rarity (three moves) and one is dropped from the sheet (a plain delete)
    changed = [frame("S01E01", s) for s in (0, 1, 2)]
    for s in (0, 1, 2):
        sheets["S01E01"][s] = row(frame("S01E01", s), "Legendary" if s else "Rare", METADATA=f"changed {s}")
    dropped = sheets["S01E02"].pop(0)["FRAME NUMBER"]
    upload_season(bucket, sheets)
    failing = dataset_key(before.loc[changed[0], "dataset"], "Rare", changed[0])
    s3_calls.fail_keys = {failing}

    result = run_cli("sync")
    assert result.exit_code == 1, result.output
    assert failing not in bucket.keys(ML_PREFIX)

    labels = read_labels(bucket)
    assert set(labels["s3_key"]) == dataset_objects(bucket)
    by_frame = labels.set_index("frame")
    # the failed move left its source in place; the others moved; the held-back delete is still there
    assert by_frame.loc[changed[0], "s3_key"] == before.loc[changed[0], "s3_key"]
    assert by_frame.loc[changed[1], "rarity"] == "Legendary"
    assert by_frame.loc[changed[1], "metadata"] == "changed 1"
    assert by_frame.loc[dropped, "metadata"] == before.loc[dropped, "metadata"] != ""


# ---- both or neither (issue 21, point 3) ---------------------------------------------------------


def failing_put(proxy: S3FaultProxy, keys: set[str]) -> None:
    """Fail every PutObject to `keys` (InternalError, before it reaches moto)."""
    proxy.fail = lambda r: (
        s3_error(500, "InternalError", "injected") if r.operation == "PutObject" and r.key in keys else None
    )


def edited_sheets(bucket) -> dict[str, list[dict[str, str]]]:
    """A synced season, then sheets where frames change rarity, one is dropped and one is added: the index changes."""
    sheets = season_sheets()
    upload_season(bucket, sheets)
    assert run_cli("sync").exit_code == 0
    for s in (0, 1, 2):
        sheets["S01E01"][s] = row(frame("S01E01", s), "Legendary", METADATA=f"changed {s}")
    sheets["S01E02"].pop(0)
    sheets["S01E02"].append(row(frame("S01E02", 40), "Common", METADATA="new"))
    upload_season(bucket, sheets)
    return sheets


@pytest.mark.parametrize("failing", ["parquet", "csv"])
def test_the_labels_csv_and_parquet_change_both_or_neither(bucket, s3_calls: S3Calls, failing: str) -> None:
    sheets = edited_sheets(bucket)
    before = {LABELS: bucket.get(LABELS), PARQUET: bucket.get(PARQUET)}
    failing_key = PARQUET if failing == "parquet" else LABELS
    failing_put(s3_calls.proxy, {failing_key})

    result = run_cli("sync")
    assert result.exit_code == 1, result.output
    # the datasets changed, yet neither index object did: they still agree, with each other and the last run
    assert {LABELS: bucket.get(LABELS), PARQUET: bucket.get(PARQUET)} == before
    url = f"s3://{bucket.name}/"
    message = f"labels index: writing {url}{failing_key} failed (InternalError"
    assert message in result.output
    if failing == "parquet":
        assert f"neither {url}{PARQUET} nor {url}{LABELS} was updated: both are as they were" in result.output
    else:  # the Parquet object, written first, was put back
        assert f"{url}{PARQUET}, written first, was put back as it was: neither is updated" in result.output
        assert ("PutObject", PARQUET) in s3_calls.calls

    s3_calls.proxy.fail = None
    assert run_cli("sync").exit_code == 0
    assert_index_matches_bucket(bucket, sheets)


def test_when_the_parquet_cannot_be_put_back_the_message_says_the_two_differ(bucket, s3_calls: S3Calls) -> None:
    edited_sheets(bucket)
    before = {LABELS: bucket.get(LABELS), PARQUET: bucket.get(PARQUET)}
    puts: list[str] = []

    def fail(request: Request) -> Answer | None:
        if request.operation != "PutObject" or request.key not in (LABELS, PARQUET):
            return None
        puts.append(request.key)
        return s3_error(500, "InternalError", "injected") if len(puts) > 1 else None  # all but the first PUT fail

    s3_calls.proxy.fail = fail
    result = run_cli("sync")
    assert result.exit_code == 1 and puts[:3] == [PARQUET, LABELS, PARQUET]
    assert bucket.get(LABELS) == before[LABELS] and bucket.get(PARQUET) != before[PARQUET]
    url = f"s3://{bucket.name}/"
    assert (
        f"{url}{PARQUET} is updated, {url}{LABELS} is not; they differ until the next run rewrites them"
        in result.output
    )
