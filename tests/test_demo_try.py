"""Trying the CLI beyond the demo: `demo --keep` says how to point the CLI at its S3, `demo load-season` fills it."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

from conftest import AWS_TEST_ENV, run_cli
from season import MANIFESTS_PREFIX, dataset_keys

REPO = Path(__file__).resolve().parents[1]


def test_load_season_uploads_a_generated_season_that_sync_places(bucket):
    loaded = run_cli("demo", "load-season", "--season", "S02", "--episodes", "2", "--seconds", "3")

    assert loaded.exit_code == 0, loaded.output
    assert "uploaded S02" in loaded.stdout and "2 episodes, 24 sheet rows" in loaded.stdout
    assert bucket.keys(MANIFESTS_PREFIX) == {f"{MANIFESTS_PREFIX}S02-episodes.json"}
    assert len(bucket.keys("tuttle_twins/s02e01/")) == len(bucket.keys("tuttle_twins/s02e02/")) == 12 + 2
    synced = run_cli("sync")
    assert synced.exit_code == 0, synced.output
    placed = dataset_keys(bucket)
    assert len(placed) == 24 and {frame[:10] for frame in placed} == {"TT_S02_E01", "TT_S02_E02"}


def test_load_season_writes_only_to_an_s3_on_this_machine(bucket, monkeypatch):
    for endpoint in ("https://s3.us-east-1.amazonaws.com", "http://10.0.0.5:9000", "not a url"):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        refused = run_cli("demo", "load-season")
        assert refused.exit_code == 2, refused.output
        assert "writes only to an S3 on this machine" in refused.stderr and "Traceback" not in refused.output
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert run_cli("demo", "load-season").exit_code == 2
    assert bucket.keys() == set()


def _exports(lines: list[str]) -> dict[str, str]:
    env = {}
    for line in lines:
        if not line.strip().startswith(("export ", "unset ")):
            continue
        for command in line.split(";"):
            words = shlex.split(command.strip())
            if words and words[0] == "export":
                env.update(word.split("=", 1) for word in words[1:])
    return env


def test_demo_keep_prints_the_lines_that_point_the_cli_at_its_s3(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TUTTLE_", "GOOGLE_"))}
    env.update(AWS_TEST_ENV)
    demo = subprocess.Popen(
        [sys.executable, str(REPO / "data_preparation.py"), "demo", "--keep"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines: list[str] = []
        queue: Queue[str] = Queue()
        threading.Thread(target=lambda: [queue.put(line) for line in demo.stdout], daemon=True).start()
        deadline = time.monotonic() + 120
        while "still running" not in "".join(lines) and time.monotonic() < deadline:
            with contextlib.suppress(Empty):
                lines.append(queue.get(timeout=1))
        time.sleep(1)  # the lines printed right after it
        while not queue.empty():
            lines.append(queue.get())
        exports = _exports(lines)
        assert {"AWS_ENDPOINT_URL", "TUTTLE_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(exports)
        assert exports["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        pointed = {**env, **exports}

        versions = subprocess.run(
            [sys.executable, str(REPO / "data_preparation.py"), "versions", "list"],
            cwd=elsewhere,
            env=pointed,
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert versions.returncode == 0, versions.stderr
        assert versions.stdout.count("Z-") >= 2  # the demo's two syncs that changed the datasets
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
