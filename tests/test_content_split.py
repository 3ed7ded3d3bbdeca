"""TUTTLE_SPLIT_GROUP=content (issue 25): each near-duplicate cluster in one dataset.

On moto server with real JPEG sources (tests/pictures.py: a title picture in both episodes, shots re-encoded
and cropped): no near-duplicate pair is split between datasets, a run of one episode places its frames as a
full run does, `split preview --group content` says exactly what the switch moves. In the core (hypothesis):
stable under input order, and one frame added moves at most (r + 1)·(D − 1) units besides its own cluster,
where r is the number of clusters it joins or merges.
"""

from __future__ import annotations

import json

import numpy as np
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from pictures import LAYOUT, groups_of, upload_leaky_season
from season import dataset_keys, frame_number

from tuttle_prep.core.content import canonical_members
from tuttle_prep.core.frame_table import RARITIES
from tuttle_prep.core.split import split_frames

SHARES = {"train": 0.7, "validate": 0.2, "test": 0.1}


def test_the_content_split_leaves_no_near_duplicate_pair_across_datasets(bucket, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "on")
    monkeypatch.setenv("TUTTLE_SPLIT_GROUP", "content")
    upload_leaky_season(bucket)
    assert run_cli("sync").exit_code == 0
    placed = dataset_keys(bucket)
    assert len(placed) == len(LAYOUT)
    assert all(len(datasets) == 1 for datasets in groups_of(placed).values()), groups_of(placed)
    report = json.loads(run_cli("report", "--out", str(tmp_path), "--format", "json").stdout)
    leaking = [r for r in report["content_leakage"]["table"] if r["leaking"]]
    assert leaking == []


def test_a_run_of_one_episode_places_its_frames_as_a_full_run(bucket, monkeypatch) -> None:
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "on")
    monkeypatch.setenv("TUTTLE_SPLIT_GROUP", "content")
    upload_leaky_season(bucket)
    monkeypatch.setenv("TUTTLE_ML_PREFIX", "full/")
    assert run_cli("sync").exit_code == 0
    full = dataset_keys(bucket, "full/")
    monkeypatch.setenv("TUTTLE_ML_PREFIX", "part/")
    assert run_cli("sync", "--episode", "S01E02").exit_code == 0
    part = dataset_keys(bucket, "part/")
    assert part and all(f.startswith("TT_S01_E02") for f in part)
    assert part == {f: placed for f, placed in full.items() if f.startswith("TT_S01_E02")}


def test_split_preview_says_what_the_content_split_would_move(bucket, monkeypatch) -> None:
    monkeypatch.setenv("TUTTLE_CONTENT_HASH", "on")
    upload_leaky_season(bucket)
    assert run_cli("sync").exit_code == 0  # today's split; the hashes are kept
    before = dataset_keys(bucket)
    assert any(len(d) > 1 for d in groups_of(before).values())  # it splits a group: a leak
    result = run_cli("split", "preview", "--group", "content", "--format", "json")
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)["preview"]
    monkeypatch.setenv("TUTTLE_SPLIT_GROUP", "content")
    assert run_cli("sync").exit_code == 0
    after = dataset_keys(bucket)
    moved = {f for f in before if before[f][0] != after[f][0]}
    assert preview["moved"] == len(moved) > 0
    pairs: dict[str, int] = {}
    for f in moved:
        pair = f"{before[f][0]} -> {after[f][0]}"
        pairs[pair] = pairs.get(pair, 0) + 1
    assert preview["moves"] == pairs


# ---- the core: stability and bounded movement ------------------------------------------------------------

FRAMES = [frame_number(e, i) for e in ("S01E01", "S01E02", "S01E03") for i in range(40)]


@st.composite
def catalogues(draw):
    n = draw(st.integers(5, 60))
    chosen = draw(st.lists(st.sampled_from(FRAMES), min_size=n, max_size=n, unique=True))
    bases = draw(st.lists(st.integers(0, 2**64 - 1), min_size=4, max_size=12))
    hashes = []
    for _ in chosen:  # a few pictures, each frame one of them with up to 2 bits changed, or a picture of its own
        if draw(st.booleans()):
            value = draw(st.sampled_from(bases))
            for bit in draw(st.lists(st.integers(0, 63), max_size=2)):
                value ^= 1 << bit
        else:
            value = draw(st.integers(0, 2**64 - 1))
        hashes.append(value)
    rarities = draw(st.lists(st.sampled_from(RARITIES), min_size=n, max_size=n))
    return chosen, np.asarray(hashes, dtype=np.uint64), rarities


def content_split(frames, hashes, rarities, seed="s"):
    canonical = canonical_members(frames, hashes, 6)
    episodes = [f[3:6] + f[7:10] for f in frames]
    datasets = split_frames(episodes, frames, rarities, SHARES, seed, canonical=[canonical.get(f, "") for f in frames])
    return dict(zip(frames, datasets.tolist(), strict=True)), canonical


@settings(max_examples=60, deadline=None)
@given(catalogues(), st.randoms())
def test_the_content_split_is_stable_and_keeps_every_cluster_together(catalogue, rnd) -> None:
    frames, hashes, rarities = catalogue
    placed, canonical = content_split(frames, hashes, rarities)
    order = list(range(len(frames)))
    rnd.shuffle(order)
    shuffled, _ = content_split([frames[i] for i in order], hashes[order], [rarities[i] for i in order])
    assert shuffled == placed  # not the order of the rows: the canonical member and the seed
    for frame, canon in canonical.items():
        assert placed[frame] == placed.get(canon, placed[frame])
    clusters: dict[str, set[str]] = {}
    for frame, canon in canonical.items():
        clusters.setdefault(canon, set()).add(placed[frame])
    assert all(len(d) == 1 for d in clusters.values())


@settings(max_examples=80, deadline=None)
@given(catalogues(), st.integers(0, 2**64 - 1), st.sampled_from(RARITIES), st.data())
def test_one_frame_added_moves_at_most_r_plus_1_times_d_minus_1_other_units(catalogue, value, rarity, data) -> None:
    frames, hashes, rarities = catalogue
    new = data.draw(st.sampled_from([f for f in FRAMES if f not in frames]))
    if data.draw(st.booleans()):  # often a near-duplicate of one already there
        value = int(hashes[data.draw(st.integers(0, len(frames) - 1))]) ^ (1 << data.draw(st.integers(0, 63)))
    before, canon_before = content_split(frames, hashes, rarities)
    after, canon_after = content_split([*frames, new], np.append(hashes, np.uint64(value)), [*rarities, rarity])

    def unit(frame, canonical):
        return canonical.get(frame, frame)

    joined = {f for f in frames if canon_after.get(f) is not None and canon_after.get(f) == canon_after.get(new)}
    merged = {unit(f, canon_before) for f in joined}  # the units the new frame joins or merges
    others = {}
    for f in frames:
        if f in joined:
            continue
        others.setdefault(unit(f, canon_before), set()).add(before[f] != after[f])
    moved = sum(1 for changes in others.values() if any(changes))
    assert moved <= (len(merged) + 1) * (len(SHARES) - 1)
    # the new frame's whole cluster is in one dataset
    assert len({after[f] for f in joined | {new}}) == 1
