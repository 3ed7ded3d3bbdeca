"""Start-up: `--help` and `status` import only what they need (issue 26).

Each test runs the real entry script in a new interpreter under `python -X importtime`, which writes one line
on stderr per module the process imported, and asserts on that set of modules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data_preparation.py"
#: what printing help must never import (each costs tens of MB and a good part of a second)
HEAVY = ("pandas", "pyarrow", "boto3", "botocore", "obstore")


def run_script(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `data_preparation.py ARGS` under `-X importtime`: the process and the modules it imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    modules = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert "tuttle_prep.cli" in modules or "--version" in args, done.stderr[-2000:]
    return done, modules


def heavy_in(modules: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The modules of `modules` that are (or are inside) one of `heavy`, sorted."""
    return sorted(m for m in modules if m.split(".")[0] in heavy)


def test_help_imports_no_pandas_pyarrow_boto3_or_obstore():
    done, modules = run_script("--help")

    assert done.returncode == 0, done.stderr[-2000:]
    assert "Commands:" in done.stdout and "sync" in done.stdout
    assert heavy_in(modules) == []


def test_status_help_imports_no_pandas_pyarrow_boto3_or_obstore():
    done, modules = run_script("status", "--help")

    assert done.returncode == 0, done.stderr[-2000:]
    assert "--runs N" in done.stdout
    assert heavy_in(modules) == []


def test_status_imports_boto3_but_no_pandas_pyarrow_or_obstore(bucket):
    done, modules = run_script("status")

    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert f"run lock s3://{bucket.name}/tuttle_twins/locks/data-prep.lock: free" in done.stdout
    assert "boto3" in modules  # it does read S3
    assert heavy_in(modules, ("pandas", "pyarrow", "numpy", "obstore")) == []


COMMANDS = ["alarm", "config", "demo", "manifests", "pull", "report", "split", "status", "sync", "versions"]


@pytest.mark.parametrize("name", COMMANDS)
def test_the_command_list_shows_what_each_command_says_of_itself(name):
    """The summaries `--help` lists without importing the commands are the commands' own first paragraphs."""
    from tuttle_prep.cli import LAZY_COMMANDS, main

    module, attribute, summary = LAZY_COMMANDS[name]
    command = main.get_command(click.Context(main), name)

    assert command is not None and command.name == name
    assert command is getattr(sys.modules[module], attribute)
    for limit in (30, 45, 80, 1000):
        assert click.Command(name, help=summary).get_short_help_str(limit) == command.get_short_help_str(limit)


def test_every_command_is_listed():
    from tuttle_prep.cli import LAZY_COMMANDS, main

    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(LAZY_COMMANDS) == COMMANDS
    assert all(main.get_command(ctx, name) is not None for name in LAZY_COMMANDS)
    assert main.get_command(ctx, "no-such-command") is None


def test_a_mistyped_command_is_told_the_name_it_was_close_to():
    done, modules = run_script("syn")

    assert done.returncode == 2
    assert "Error: No such command 'syn'. Did you mean 'sync'?" in done.stderr
    assert "tuttle_prep.commands.sync" not in modules
