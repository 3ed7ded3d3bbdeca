"""Measure the content hashes (issue 25): a script, never a timed test.

    python benchmarks/bench_content.py threshold            # dHash distances of generated variants: the k table
    python benchmarks/bench_content.py pairs --hashes 1000000
    python benchmarks/bench_content.py precision --scenes 400
    python benchmarks/bench_content.py hash --latency-ms 20 --frames 20000   # against benchmarks/local_s3.py

- `threshold`: for N generated scenes, the Hamming distance between each scene's dHash and its variants'
  (re-encoded, resized, brightness-shifted, cropped) and between different scenes; the share within each k.
- `pairs`: pair search + clustering (`near_duplicate_clusters`) and the full pair list (`near_pairs` chunks
  counted) at N hashes shaped like a show: shots of 1–10 s whose frames are the shot's drawing with 0–3 bits
  flipped (animation holds a drawing over 2 frames: half the frames repeat the one before), a 240-frame title
  sequence repeated in every episode; wall time and peak RSS (in a fresh process).
- `precision`: precision and recall of the pair search at k against the known groups of a generated corpus.
- `hash`: frames hashed per second (GET + decode) through the obstore data plane against an endpoint with
  `--latency-ms` per request (the fast in-memory endpoint; measuring only).
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from content_corpus import VARIANTS, jpeg, scene  # noqa: E402

from tuttle_prep.core.content import (  # noqa: E402
    DEFAULT_DISTANCE,
    dhash_bytes,
    iter_near_pairs,
    near_duplicate_clusters,
)


def threshold(scenes: int) -> None:
    distances: dict[str, list[int]] = {name: [] for name in VARIANTS}
    hashes = []
    for seed in range(scenes):
        image = scene(seed)
        base = dhash_bytes(jpeg(image))
        hashes.append(base)
        for name, make in VARIANTS.items():
            distances[name].append(bin(base ^ dhash_bytes(jpeg(make(image)))).count("1"))
    h = np.asarray(hashes, dtype=np.uint64)
    different = np.bitwise_count(h[:, None] ^ h[None, :])[np.triu_indices(len(h), 1)]
    ks = [2, 4, 5, 6, 8, 10, 12]
    print(f"{scenes} scenes 640x360, JPEG q90; share of pairs within k bits (of 64)\n")
    print("| pair | median | max | " + " | ".join(f"k={k}" for k in ks) + " |")
    print("|---|---|---|" + "---|" * len(ks))
    for name, values in distances.items():
        v = np.asarray(values)
        shares = " | ".join(f"{(v <= k).mean():.1%}" for k in ks)
        print(f"| {name} | {np.median(v):.0f} | {v.max()} | {shares} |")
    shares = " | ".join(f"{(different <= k).mean():.3%}" for k in ks)
    label = f"different scenes ({len(different):,} pairs)"
    print(f"| {label} | {np.median(different):.0f} | min {different.min()} | {shares} |")


def show_hashes(n: int, seed: int = 7) -> np.ndarray:
    """n hashes shaped like a show (see the module docstring)."""
    rng = np.random.default_rng(seed)
    title = rng.integers(0, 2**63, size=10, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    out = []
    total = 0
    episode_frames = 28_800
    while total < n:
        frames = []
        frames.append(np.repeat(title, 24))  # the title sequence: 10 drawings of 1 s each
        made = 240
        while made < episode_frames:
            length = int(rng.integers(24, 241))
            base = rng.integers(0, 2**63, dtype=np.uint64) * np.uint64(2)
            shot = np.full(length, base, dtype=np.uint64)
            flips = rng.integers(0, 4, size=length)
            for f in range(3):
                on = flips > f
                shot[on] ^= np.uint64(1) << rng.integers(0, 64, size=int(on.sum())).astype(np.uint64)
            shot[1::2] = shot[0::2][: len(shot[1::2])]  # on twos: each drawing held for two frames
            frames.append(shot)
            made += length
        episode = np.concatenate(frames)[:episode_frames]
        out.append(episode)
        total += len(episode)
    return np.concatenate(out)[:n]


def pairs(n: int, k: int, child: bool) -> None:
    if not child:  # a fresh process: its peak RSS is this measurement's
        subprocess.run([sys.executable, __file__, "pairs", "--hashes", str(n), "--k", str(k), "--child"], check=True)
        return
    hashes = show_hashes(n)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start, cpu = time.perf_counter(), time.process_time()
    labels = near_duplicate_clusters(hashes, k)
    cluster_seconds, cluster_cpu = time.perf_counter() - start, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    clusters = np.unique(labels)
    sizes = np.bincount(np.searchsorted(clusters, labels))
    distinct = len(np.unique(hashes))
    start = time.perf_counter()
    count = sum(len(i) for i, _ in iter_near_pairs(np.unique(hashes), k))
    distinct_seconds = time.perf_counter() - start
    print(
        f"{n:,} hashes ({distinct:,} distinct), k={k}: pair search + clustering {cluster_seconds:.2f} s wall, "
        f"{cluster_cpu:.2f} s CPU (load average {os.getloadavg()[0]:.1f}), "
        f"peak RSS {rss:.0f} MB (inputs {base_rss:.0f} MB); {len(clusters):,} clusters, largest {sizes.max():,}, "
        f"{int((sizes > 1).sum()):,} with 2+ frames; {count:,} pairs among the distinct hashes "
        f"(listed again in {distinct_seconds:.2f} s)"
    )


def precision(scenes: int, k: int) -> None:
    """Each scene appears 3 times (original + 2 random variants): the true pairs are those within a scene."""
    rng = np.random.default_rng(3)
    names = list(VARIANTS)
    hashes, group = [], []
    for seed in range(scenes):
        image = scene(10_000 + seed)
        hashes.append(dhash_bytes(jpeg(image)))
        group.append(seed)
        for name in rng.choice(names, size=2, replace=False):
            hashes.append(dhash_bytes(jpeg(VARIANTS[name](image))))
            group.append(seed)
    h, g = np.asarray(hashes, dtype=np.uint64), np.asarray(group)
    found = set()
    for i, j in iter_near_pairs(h, k):
        found.update(zip(i.tolist(), j.tolist(), strict=True))
    true = {(i, j) for i, j in itertools.combinations(range(len(h)), 2) if g[i] == g[j]}
    tp = len(found & true)
    print(
        f"{scenes} scenes x 3 pictures ({len(h):,} frames, {len(true):,} true pairs) at k={k}: "
        f"found {len(found):,}, precision {tp / max(len(found), 1):.4f}, recall {tp / len(true):.4f}"
    )


def hash_rate(fast_s3: str, latency: float, frames: int, in_flight: int, server_python: str) -> None:
    import socket

    import boto3

    from tuttle_prep.edges import aws
    from tuttle_prep.edges.s3_bucket import S3Bucket
    from tuttle_prep.edges.s3_content import fetch_hashes

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [server_python, fast_s3, "--port", str(port), "--latency-ms", str(latency)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for _ in range(50):
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:  # noqa: BLE001 - the endpoint is starting
                time.sleep(0.1)
        bodies = [jpeg(scene(s), 85) for s in range(50)]  # 640x360 thumbnails, ~30 KB each
        keys = [f"tuttle_twins/s01e01/default_eng/v1/frames/thumbnails/F{i:06d}.jpg" for i in range(frames)]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i: client.put_object(Bucket="bench", Key=keys[i], Body=bodies[i % 50]), range(frames)))
        session = aws.new_session()
        store = S3Bucket(aws.make_client("s3", session=session), "bench", workers=in_flight, session=session)
        start, cpu = time.perf_counter(), time.process_time()
        results = fetch_hashes(store.data_plane, keys, in_flight)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        bad = sum(1 for r in results if r.hash is None)
        size = sum(len(b) for b in bodies) / len(bodies) / 1024
        print(
            f"{frames:,} frames of {size:.0f} KB at {latency:g} ms, {in_flight} in flight: {seconds:.2f} s, "
            f"{frames / seconds:,.0f} frames/s; client CPU {cpu:.2f} s = {frames / cpu:,.0f} frames per CPU-second "
            f"(load average {os.getloadavg()[0]:.1f}; {bad} not hashed)"
        )
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["threshold", "pairs", "precision", "hash"])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--hashes", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=DEFAULT_DISTANCE)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--fast-s3",
        default=str(Path(__file__).resolve().with_name("local_s3.py")),
        help="the S3 endpoint script to start (default: the repository's own benchmarks/local_s3.py)",
    )
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=128)
    parser.add_argument("--server-python", default=sys.executable, help="the Python that runs the endpoint script")
    args = parser.parse_args()
    if args.what == "threshold":
        threshold(args.scenes)
    elif args.what == "pairs":
        pairs(args.hashes, args.k, args.child)
    elif args.what == "precision":
        precision(args.scenes, args.k)
    else:
        hash_rate(args.fast_s3, args.latency_ms, args.frames, args.in_flight, args.server_python)


if __name__ == "__main__":
    main()
