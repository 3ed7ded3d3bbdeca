"""The pure side of dataset versions: the table, its Parquet form, ids, diffs, retention."""

from __future__ import annotations

import io
from collections import Counter

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuttle_prep.core.plan import KeyLayout
from tuttle_prep.core.versions import (
    ABSENT,
    VERSION_COLUMNS,
    VersionError,
    VersionInfo,
    VersionNotFound,
    build_version_table,
    describe_partial,
    diff_versions,
    known_sources_table,
    outcome_digest,
    partial_record,
    resolve_version,
    rows_without_source,
    version_from_parquet,
    version_id_of,
    version_info,
    version_labels,
    version_to_parquet,
    versions_to_delete,
    with_content_hashes,
    with_sources,
)

SPLIT = {"train": 0.7, "validate": 0.2, "test": 0.1}
LAYOUT = KeyLayout("ML/", "tuttle_twins/", "thumbnails", tuple(SPLIT))
IDS = ["20261101T020000Z-aaaa11112222", "20261102T020000Z-bbbb11112222", "20261201T020000Z-cccc11112222"]


def frame(i: int) -> str:
    return f"TT_S01_E01_FRM-00-00-{i // 24:02d}-{i % 24:02d}"


def labels(rows: list[tuple[int, str, str, str]]) -> pd.DataFrame:
    """(frame index, dataset, rarity, metadata) -> a labels index."""
    table = pd.DataFrame(
        {
            "frame": [frame(i) for i, *_ in rows],
            "episode_id": ["S01E01"] * len(rows),
            "dataset": [d for _, d, _, _ in rows],
            "rarity": [r for _, _, r, _ in rows],
            "metadata": [m for *_, m in rows],
            "s3_key": [f"ML/{d}/{r}/{frame(i)}.jpg" for i, d, r, _ in rows],
        },
        dtype=str,
    )
    return table.sort_values("s3_key").reset_index(drop=True)


def listing(etags: dict[int, str], layout: KeyLayout = LAYOUT) -> pa.Table:
    """A source listing of frames {index: ETag} (quoted, as S3 lists them), sizes 100 + index."""
    frames = [frame(i) for i in etags]
    return known_sources_table(
        layout, ["S01E01"] * len(frames), frames, [f'"{e}"' for e in etags.values()], [100 + i for i in etags]
    )


def version(rows: list[tuple[int, str, str, str]], etags: dict[int, str] | None = None) -> pa.Table:
    etags = etags if etags is not None else {i: f"etag{i}" for i, *_ in rows}
    return build_version_table(labels(rows), LAYOUT, listing(etags))


def info_of(table: pa.Table, version_id: str = IDS[0]):
    return version_info(table, version_id, version_id[-12:], SPLIT, "seed", 0, None, {}, outcome_digest(table))


BASE = [
    (0, "train", "Rare", "[Emily]"),
    (1, "train", "Common", ""),
    (2, "test", "Trash", ""),
    (3, "validate", "Rare", ""),
]


def test_the_table_has_every_column_and_the_sources_bare_etags_and_sizes() -> None:
    table = version(BASE, etags={0: "a", 1: "b", 2: "c"})
    assert table.column_names == VERSION_COLUMNS
    rows = {r["frame"]: r for r in table.to_pylist()}
    assert rows[frame(0)]["source_etag"] == "a" and rows[frame(0)]["source_size"] == 100
    assert rows[frame(3)]["source_etag"] is None and rows[frame(3)]["source_size"] is None
    assert rows_without_source(table)["frame"].to_pylist() == [frame(3)]
    assert rows[frame(0)]["source_key"] == LAYOUT.source_keys(pd.Series(["S01E01"]), pd.Series([frame(0)]))[0]
    filled = with_sources(table, listing({3: "d", 0: "x"}))
    rows = {r["frame"]: r for r in filled.to_pylist()}
    assert rows[frame(3)]["source_etag"] == "d" and rows[frame(0)]["source_etag"] == "a"  # known rows keep theirs
    # a listing of another image size is of other objects: its ETags are not taken
    other_size = KeyLayout("ML/", "tuttle_twins/", "high_res", tuple(SPLIT))
    assert rows_without_source(build_version_table(labels(BASE), LAYOUT, listing({0: "a"}, other_size))).num_rows == 4


def test_the_digest_follows_the_outcome_not_the_etags_or_the_chunking() -> None:
    table = version(BASE)
    assert outcome_digest(table) == outcome_digest(version(BASE, etags={}))
    assert outcome_digest(table) == outcome_digest(pa.concat_tables([table.slice(0, 1), table.slice(1)]))
    changed = [(0, "train", "Legendary", "[Emily]"), *BASE[1:]]
    assert outcome_digest(version(changed)) != outcome_digest(table)
    assert outcome_digest(version([(0, "train", "Rare", "[Ethan]"), *BASE[1:]])) != outcome_digest(table)


def test_content_hashes_are_recorded_only_for_the_etag_they_were_computed_from() -> None:
    table = version(BASE, etags={0: "a", 1: "b", 2: "c"})
    keys, etags = table["source_key"].to_pylist(), table["source_etag"].to_pylist()
    assert etags[0] is not None
    known = pa.table(
        {
            "source_key": pa.array([keys[0], keys[1]], pa.string()),
            "source_etag": pa.array([etags[0], "other"], pa.string()),
            "content_hash": pa.array([2**64 - 1, 5], pa.uint64()),
        }
    )
    with_hashes = with_content_hashes(table, known)
    by_key = dict(zip(with_hashes["source_key"].to_pylist(), with_hashes["content_hash"].to_pylist(), strict=True))
    assert by_key[keys[0]] == 2**64 - 1 and by_key[keys[1]] is None  # a hash of other bytes is not this ETag's
    back, _ = version_from_parquet(version_to_parquet(with_hashes, info_of(table)), "v")
    assert back["content_hash"].to_pylist() == with_hashes["content_hash"].to_pylist()


def test_parquet_round_trip_keeps_rows_and_info() -> None:
    table = version(BASE)
    info = info_of(table)
    data = version_to_parquet(table, info)
    assert data == version_to_parquet(table, info)  # deterministic bytes
    back, read_info = version_from_parquet(data, "v")
    assert back.select(VERSION_COLUMNS).to_pylist() == table.to_pylist()
    assert back["content_hash"].null_count == len(table)  # no hashes given: null, never made up
    assert read_info == info
    assert list(read_info.split) == list(SPLIT) and read_info.datasets == {"train": 2, "validate": 1, "test": 1}
    assert read_info.rarities == {"Common": 1, "Rare": 2, "Trash": 1}
    assert list(version_labels(back, ["train"])["frame"]) == [frame(1), frame(0)]


def test_a_bad_version_object_is_named() -> None:
    with pytest.raises(VersionError, match="s3://b/v.parquet: not a Parquet file"):
        version_from_parquet(b"PAR1 not really", "s3://b/v.parquet")
    sink = io.BytesIO()
    pq.write_table(version(BASE).drop_columns(["rarity"]), sink)
    with pytest.raises(VersionError, match="no column rarity"):
        version_from_parquet(sink.getvalue(), "s3://b/v.parquet")
    sink = io.BytesIO()
    pq.write_table(version(BASE), sink)
    with pytest.raises(VersionError, match="no tuttle_prep.version metadata"):
        version_from_parquet(sink.getvalue(), "s3://b/v.parquet")


def test_diff_counts_each_kind_and_the_transitions() -> None:
    after = [
        (0, "train", "Legendary", "[Emily]"),  # reclassified
        (1, "validate", "Common", "x"),  # moved + metadata
        (3, "validate", "Rare", ""),  # unchanged
        (9, "test", "Trash", ""),  # added
    ]  # 2 removed
    diff = diff_versions(version(BASE), version(after))
    assert diff.counts == {"added": 1, "removed": 1, "moved": 1, "reclassified": 1, "metadata": 1}
    assert diff.unchanged == 1
    assert dict(zip(diff.changes["frame"], diff.changes["change"], strict=True)) == {
        frame(0): "reclassified",
        frame(1): "moved+metadata",
        frame(2): "removed",
        frame(9): "added",
    }
    grid = diff.transitions
    assert grid.loc["Rare", "Legendary"] == 1 and grid.loc["Rare", "Rare"] == 1
    assert grid.loc["Trash", ABSENT] == 1 and grid.loc[ABSENT, "Trash"] == 1
    assert int(grid.to_numpy().sum()) == 5
    assert diff_versions(version(BASE), version(BASE)).changes.empty


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.integers(0, 30), st.tuples(st.sampled_from(list(SPLIT)), st.sampled_from(["Rare", "Common"]))),
    st.dictionaries(st.integers(0, 30), st.tuples(st.sampled_from(list(SPLIT)), st.sampled_from(["Rare", "Common"]))),
)
def test_diff_accounts_for_every_frame(a: dict, b: dict) -> None:
    diff = diff_versions(
        version([(i, d, r, "") for i, (d, r) in a.items()]), version([(i, d, r, "") for i, (d, r) in b.items()])
    )
    assert diff.counts["added"] == len(b.keys() - a.keys()) and diff.counts["removed"] == len(a.keys() - b.keys())
    common = a.keys() & b.keys()
    assert diff.counts["moved"] == sum(a[i][0] != b[i][0] for i in common)
    assert diff.counts["reclassified"] == sum(a[i][1] != b[i][1] for i in common)
    assert diff.unchanged == sum(a[i] == b[i] for i in common)
    assert int(diff.transitions.to_numpy().sum()) == len(a.keys() | b.keys())


def test_references_resolve_to_one_id() -> None:
    assert resolve_version(IDS, "latest") == IDS[2]
    assert resolve_version(IDS, "previous") == IDS[1]
    assert resolve_version(IDS, IDS[0]) == IDS[0]
    assert resolve_version(IDS, IDS[0] + ".parquet") == IDS[0]
    assert resolve_version(IDS, "202612") == IDS[2]
    with pytest.raises(VersionNotFound, match="ambiguous: 2 ids start with it"):
        resolve_version(IDS, "202611")
    with pytest.raises(VersionNotFound, match=f"no version matches '20261102T03'; the nearest are {IDS[1]}"):
        resolve_version(IDS, "20261102T03")
    with pytest.raises(VersionNotFound, match="no version yet"):
        resolve_version([], "latest")
    with pytest.raises(VersionNotFound, match="no previous version"):
        resolve_version(IDS[:1], "previous")


def test_only_names_like_a_version_are_versions() -> None:
    assert version_id_of(f"ML/_versions/{IDS[0]}.parquet", "ML/_versions/") == IDS[0]
    assert version_id_of("ML/_versions/notes.txt", "ML/_versions/") is None
    assert version_id_of("ML/_versions/old/x.parquet", "ML/_versions/") is None


def test_retention_keeps_the_newest_the_latest_and_the_pinned() -> None:
    ids = [f"2026110{i}T000000Z-run{i}" for i in range(1, 7)]
    assert versions_to_delete(ids, None) == []
    assert versions_to_delete(ids, 3) == ids[:3]
    assert versions_to_delete(ids, 0) == ids[:5]  # never the latest
    assert versions_to_delete(ids, 2, pinned=[ids[0], "20261103"]) == [ids[1], ids[3]]


def test_retention_neither_counts_nor_deletes_an_unreadable_version() -> None:
    ids = [f"2026110{i}T000000Z-run{i}" for i in range(1, 7)]
    # the two newest are not readable: the newest readable one is kept, the unreadable ones are never deleted
    assert versions_to_delete(ids, 1, unreadable=ids[4:]) == ids[:3]
    assert versions_to_delete(ids, 2, pinned=[ids[0]], unreadable=[ids[1], ids[5]]) == [ids[2]]
    assert versions_to_delete(ids, 1, unreadable=ids) == []


def test_diff_from_or_to_an_empty_version() -> None:
    diff = diff_versions(version([]), version(BASE))
    assert diff.counts["added"] == 4 and diff.counts["removed"] == 0
    diff = diff_versions(version(BASE), version([]))
    assert diff.counts["removed"] == 4 and set(diff.changes["change"]) == {"removed"}


# ---- issue 21: objects, not frames; partial versions ---------------------------------------------------

PLACES = [(d, r) for d in SPLIT for r in ("Rare", "Common", "Trash")]


def brute_force_diff(a: set[tuple[int, str, str]], b: set[tuple[int, str, str]]) -> dict[str, int]:
    """Over sets of (frame, dataset, rarity) objects: a frame's objects only in A and only in B are paired in
    (dataset, rarity) order, the rest removed / added."""
    counts = dict.fromkeys(["added", "removed", "moved", "reclassified"], 0)
    for f in {o[0] for o in a | b}:
        gone = sorted(o[1:] for o in a - b if o[0] == f)
        new = sorted(o[1:] for o in b - a if o[0] == f)
        for i in range(max(len(gone), len(new))):
            if i >= len(gone):
                counts["added"] += 1
            elif i >= len(new):
                counts["removed"] += 1
            else:
                counts["moved"] += gone[i][0] != new[i][0]
                counts["reclassified"] += gone[i][1] != new[i][1]
    return counts


objects = st.sets(st.tuples(st.integers(0, 12), st.sampled_from(PLACES)), max_size=30).map(
    lambda s: {(f, d, r) for f, (d, r) in s}
)


@settings(max_examples=60, deadline=None)
@given(objects, objects)
def test_diff_counts_dataset_objects_as_a_brute_force_does_even_with_frames_in_two_places(a: set, b: set) -> None:
    diff = diff_versions(
        version([(f, d, r, "") for f, d, r in sorted(a)]), version([(f, d, r, "") for f, d, r in sorted(b)])
    )
    expected = brute_force_diff(a, b)
    assert {k: diff.counts[k] for k in expected} == expected and diff.counts["metadata"] == 0
    paired = len(a - b) - expected["removed"]
    assert paired == len(b - a) - expected["added"]  # A = removed + paired + kept, B = added + paired + kept
    assert diff.unchanged == len(a & b) and (diff.objects_a, diff.objects_b) == (len(a), len(b))
    assert diff.doubled_a == sum(n > 1 for n in Counter(f for f, *_ in a).values())
    assert int(diff.transitions.to_numpy().sum()) == len(a & b) + paired + expected["removed"] + expected["added"]
    assert len(diff.changes) == paired + expected["removed"] + expected["added"]


def test_latest_and_previous_skip_partial_versions_and_an_id_names_one() -> None:
    partial = {IDS[2]}
    asked: list[str] = []

    def is_partial(version_id: str) -> bool:
        asked.append(version_id)
        return version_id in partial

    assert resolve_version(IDS, "latest", is_partial) == IDS[1] and asked == [IDS[2], IDS[1]]
    assert resolve_version(IDS, "previous", is_partial) == IDS[0]
    assert resolve_version(IDS, IDS[2], is_partial) == IDS[2]  # named: partial or not
    assert resolve_version(IDS, "latest") == IDS[2]  # --include-partial
    with pytest.raises(VersionNotFound, match=r"no complete version; 3 partial versions .* --include-partial"):
        resolve_version(IDS, "latest", lambda _: True)
    with pytest.raises(VersionNotFound, match="no previous version: 1 complete version"):
        resolve_version(IDS, "previous", lambda v: v != IDS[0])


def test_a_version_without_a_partial_marker_is_complete_and_a_garbled_marker_is_unreadable() -> None:
    old = '{"id":"x","run_id":"r","time":"t","frames":1,"datasets":{}}'
    info = VersionInfo.from_json(old, "old")
    assert info.partial is None and info.counted == "frames"
    with pytest.raises(VersionError, match="field partial is 'yes"):
        VersionInfo.from_json(old[:-1] + ',"partial":"yes\\n"}', "garbled")
    odd = VersionInfo.from_json(old[:-1] + ',"partial":{"failed":"many\\n"}}', "odd")
    assert "'many\\n' failed operations" in describe_partial(odd.partial)
    marker = partial_record(1, 2, 3, 4, ["delete k failed: \u00e9\n"])
    assert marker == {
        "exit_code": 1,
        "failed": 2,
        "held_back": 3,
        "frames_in_two_places": 4,
        "job_failures": 1,
        "reason": "delete k failed: \\xe9\n",
    }
    assert "2 failed operations, 3 deletes held back, 4 frames in two places" in describe_partial(marker)
    assert "\n" not in describe_partial(marker)
