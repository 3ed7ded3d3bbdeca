"""The Makefile on a host whose python3 is too old (Amazon Linux 2023: 3.9): one sentence, and no stale .venv.

Each test runs `make check-python` on a copy of the Makefile in a temporary folder; the old interpreter is a
stand-in that answers as Python 3.9 would (its version, and `sys.version_info` for the check).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def old_python(path: Path) -> Path:
    """An interpreter that says it is 3.9.16 (`--version`, and to code run with `-c`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "Python 3.9.16"; exit 0; fi\n'
        f'exec {sys.executable} -c "import sys; sys.version_info = (3, 9, 16, \'final\', 0); exec(sys.argv[1])" "$2"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "Makefile", folder / "Makefile")
    (folder / "requirements.txt").write_text("", encoding="utf-8")
    return subprocess.run(["make", "-s", "-C", str(folder), *args], capture_output=True, text=True, timeout=60)


def test_an_interpreter_older_than_3_11_is_one_sentence(tmp_path):
    old = old_python(tmp_path / "bin" / "python3")

    result = make(tmp_path, "check-python", f"PYTHON={old}")

    assert result.returncode != 0
    [line] = [x for x in result.stderr.splitlines() if x.strip() and not x.startswith("make")]
    assert "tuttle-prep needs Python 3.11 or newer" in line and "Python 3.9.16" in line
    assert "Traceback" not in result.stderr and "SyntaxError" not in result.stderr


def test_a_venv_built_by_an_old_interpreter_is_removed_to_be_rebuilt(tmp_path):
    old_python(tmp_path / ".venv" / "bin" / "python")
    (tmp_path / ".venv" / "bin" / ".installed").write_text("", encoding="utf-8")

    result = make(tmp_path, "check-python", f"PYTHON={sys.executable}")

    assert result.returncode == 0, result.stderr
    assert ".venv was built by Python 3.9.16; removing it" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_a_good_venv_is_left_alone(tmp_path):
    good = tmp_path / ".venv" / "bin" / "python"
    good.parent.mkdir(parents=True)
    good.symlink_to(sys.executable)

    result = make(tmp_path, "check-python", f"PYTHON={sys.executable}")

    assert result.returncode == 0 and result.stderr == ""
    assert good.exists()
