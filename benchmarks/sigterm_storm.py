#!/usr/bin/env python3
"""SIGTERM a real `python data_preparation.py sync` at random points, many times, and check how each run ended.

    python benchmarks/sigterm_storm.py                   # 50 runs, 120 frames, copies held 0.3 s by the proxy
    python benchmarks/sigterm_storm.py --runs 20 --frames 200 --copy-delay 0.5 --signal INT

Each run gets a fresh bucket on a moto server on 127.0.0.1, behind the tests' fault proxy (it delays every
CopyObject, so copies are in flight when the signal comes). The signal is sent at a uniformly random moment
between the start of the process and the measured length of an undisturbed run. For each run it checks: the
exit status (143 expected; a negative status is a death by signal: SIGABRT/SIGSEGV/the default action), no
traceback or fatal error on stderr, the last stderr line names the signal, the run lock is gone, the summary's
exit code (CloudWatch Logs on moto) equals the exit status, no delete was sent after the signal, and every
copy the proxy received had landed when the process ended (none lands afterwards). Not a test: nothing is timed
by pytest; it prints a table and exits 1 if any run broke a rule.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from s3_fault_proxy import S3FaultProxy  # noqa: E402
from season import ML_PREFIX, sheet_rows, upload_season  # noqa: E402

from tuttle_prep.settings import Settings  # noqa: E402

RARITIES = ["Common", "Rare", "Uncommon", "Common", "Trash", "Legendary", "Common", "Uncommon"]
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


class Bucket:
    """The few bucket helpers `season.upload_season` needs."""

    def __init__(self, client: object, name: str) -> None:
        self.client, self.name = client, name

    def put(self, key: str, body: bytes | str = b"\xff\xd8\xff\xe0jpeg\xff\xd9") -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)  # type: ignore[attr-defined]

    def keys(self, prefix: str = "") -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)  # type: ignore[attr-defined]
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def summary_code(logs: object, group: str) -> int | None:
    """The exit code of the run summary shipped to `group`, or None (no summary: stopped before the run began)."""
    try:
        streams = logs.describe_log_streams(logGroupName=group)["logStreams"]  # type: ignore[attr-defined]
    except logs.exceptions.ResourceNotFoundException:  # type: ignore[attr-defined]
        return None
    for stream in streams:
        events = logs.get_log_events(  # type: ignore[attr-defined]
            logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
        )["events"]
        for event in events:
            if event["message"].startswith("{"):
                record = json.loads(event["message"])
                if record.get("event") == "run_summary":
                    return int(record["exit_code"])
    return None


def one_run(args: argparse.Namespace, proxy: S3FaultProxy, s3: object, logs: object, n: int, at: float | None) -> dict:
    """One sync; SIGTERM (or --signal) `at` seconds after the start (None: undisturbed). Returns what was seen."""
    name = f"storm-{os.getpid()}-{n}"
    s3.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    bucket = Bucket(s3, name)
    upload_season(bucket, {"S01E01": sheet_rows("S01E01", [RARITIES[i % 8] for i in range(args.frames)])})
    stray = f"{ML_PREFIX}train/Rare/TT_S01_E01_FRM-09-09-09-09.jpg"  # a delete the run would make, last
    bucket.put(stray)
    proxy.reset()
    proxy.delay = {"CopyObject": args.copy_delay}
    group = f"/tuttle-twins/{name}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUTTLE_", "GOOGLE_", "AWS_"))}
    env |= {**TEST_ENV, "AWS_ENDPOINT_URL": proxy.endpoint, "TUTTLE_BUCKET": name, "TUTTLE_LOG_GROUP": group}
    signum = signal.Signals[f"SIG{args.signal}"]
    with tempfile.TemporaryDirectory() as cwd:
        err_path = Path(cwd) / "stderr.txt"
        command = [sys.executable, str(args.repo / "data_preparation.py"), "sync", "--workers", str(args.workers)]
        started = time.monotonic()
        with err_path.open("wb") as err:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        sent_at = None
        try:
            if at is not None:
                while process.poll() is None and time.monotonic() - started < at:
                    time.sleep(0.005)
                if process.poll() is None:
                    sent_at = len(proxy.requests)
                    process.send_signal(signum)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        elapsed = time.monotonic() - started
        at_exit = bucket.keys(ML_PREFIX)
        stderr = err_path.read_text(errors="replace")
    time.sleep(args.copy_delay + 0.3)  # a copy the process let go of lands now
    later = bucket.keys(ML_PREFIX)
    requests = list(proxy.requests)
    copies = {r.key for r in requests if r.operation == "CopyObject"}
    after_signal = requests[sent_at:] if sent_at is not None else []
    deletes_after = [r for r in after_signal if r.operation == "DeleteObjects"]
    deletes_after += [r for r in after_signal if r.operation == "DeleteObject" and r.key != Settings().lock_key]
    lines = stderr.splitlines()
    return {
        "code": code,
        "signalled": sent_at is not None,
        "elapsed": elapsed,
        "copies_sent": len(copies),
        "landed_after_exit": len(later - at_exit),
        "copies_missing_at_exit": len(copies - at_exit),
        "deletes_after_signal": len(deletes_after),
        "stray_kept": stray in at_exit,
        "lock_left": bool(bucket.keys(Settings().lock_key)),
        "traceback": "Traceback" in stderr or "Fatal Python error" in stderr or "Exception ignored" in stderr,
        "last_line": lines[-1] if lines else "",
        "stop_lines": sum(line.startswith("stopped by ") for line in lines),
        "summary_code": summary_code(logs, group),
        "signum": int(signum),
    }


def verdict(run: dict) -> list[str]:
    """The rules a signalled run broke (empty: none)."""
    expected = 128 + run["signum"]
    broken = []
    if run["code"] == run["summary_code"] == 0 and "arrived as the run was ending" in run["last_line"]:
        return []  # the signal came while the run wrote its outcome: it stands, as the summary says
    if run["code"] != expected:
        broken.append(f"exit {run['code']}")
    if run["traceback"]:
        broken.append("traceback")
    if run["stop_lines"] != 1 or not run["last_line"].startswith("stopped by "):
        broken.append(f"stderr ends {run['last_line'][:60]!r}")
    if run["lock_left"]:
        broken.append("lock left")
    if run["summary_code"] not in (None, run["code"]):
        broken.append(f"summary says {run['summary_code']}")
    if run["landed_after_exit"] or run["copies_missing_at_exit"]:
        broken.append(f"{run['landed_after_exit']} copies landed after the exit")
    if run["deletes_after_signal"]:
        broken.append("a delete after the signal")
    return broken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--copy-delay", type=float, default=0.3, help="seconds the proxy holds each CopyObject")
    parser.add_argument("--signal", default="TERM", choices=["TERM", "INT"])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose data_preparation.py runs")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    rng = random.Random(args.seed)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    clients = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    clients |= {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3, logs = boto3.client("s3", **clients), boto3.client("logs", **clients)
    try:
        with S3FaultProxy(endpoint) as proxy:
            baseline = one_run(args, proxy, s3, logs, 0, None)
            length = baseline["elapsed"]
            print(f"undisturbed run: exit {baseline['code']}, {length:.2f} s, {baseline['copies_sent']} copies")
            runs = []
            for n in range(1, args.runs + 1):
                at = rng.uniform(0, length)
                run = one_run(args, proxy, s3, logs, n, at)
                run["at"] = at
                runs.append(run)
                broken = verdict(run) if run["signalled"] else ["finished before the signal"]
                print(
                    f"{n:3d} signal at {at:5.2f} s: exit {run['code']:4d} after {run['elapsed']:5.2f} s, "
                    f"{run['copies_sent']:4d} copies sent, {run['landed_after_exit']} landed after the exit, "
                    f"summary {run['summary_code']}; " + ("; ".join(broken) or "ok"),
                    flush=True,
                )
    finally:
        server.stop()
    signalled = [r for r in runs if r["signalled"]]
    bad = [r for r in signalled if verdict(r)]
    codes = Counter(r["code"] for r in signalled)
    mid_copy = sum(1 for r in signalled if 0 < r["copies_sent"] < args.frames)
    print(
        f"\n{len(signalled)} of {len(runs)} runs signalled; exit codes {dict(codes)}; {mid_copy} stopped mid-copy; "
        f"{sum(r['summary_code'] is not None for r in signalled)} with a summary; "
        f"copies landed after an exit: {sum(r['landed_after_exit'] for r in signalled)}; "
        f"runs breaking a rule: {len(bad)}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
