"""The deploy files do what docs/deploy.md says: installing crontab.txt twice leaves one entry.

The install line is taken from docs/deploy.md itself (and must be the one crontab.txt's header shows), then run
twice by bash against a stand-in `crontab` command that keeps the user's crontab in a file.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALLED = "/opt/tuttle-prep/crontab.txt"


def _install_line(text: str) -> str:
    found = re.finditer(r"^.*crontab -l 2>/dev/null.*\| crontab -$", text, re.M)
    lines = {m.group(0).strip().lstrip("# ").strip() for m in found}
    [line] = lines  # one install line, however often the page shows it
    return line


def test_the_documented_crontab_install_is_idempotent_and_keeps_other_entries(tmp_path):
    line = _install_line((REPO / "docs" / "deploy.md").read_text(encoding="utf-8"))
    assert line == _install_line((REPO / "crontab.txt").read_text(encoding="utf-8"))
    store = tmp_path / "crontab.store"
    store.write_text("# the user's own\n0 * * * * /usr/bin/true\n", encoding="utf-8")
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    fake.write_text(
        # as crontab(1): `-` reads the whole new table, then replaces the old one (never truncated while read)
        '#!/bin/sh\nif [ "$1" = "-l" ]; then cat "$STORE"; else cat > "$STORE.new" && mv "$STORE.new" "$STORE"; fi\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "STORE": str(store)}
    command = line.replace(INSTALLED, str(REPO / "crontab.txt"))

    for _ in range(2):
        subprocess.run(["bash", "-c", command], env=env, check=True, timeout=30)

    installed = store.read_text(encoding="utf-8")
    job = [entry for entry in installed.splitlines() if "data_preparation.py" in entry and not entry.startswith("#")]
    assert len(job) == 1 and "sync" in job[0]
    lines = installed.splitlines()
    assert sum(x.startswith("# >>> tuttle-prep >>>") for x in lines) == 1
    assert sum(x.startswith("# <<< tuttle-prep <<<") for x in lines) == 1
    assert installed.startswith("# the user's own\n0 * * * * /usr/bin/true\n")


def test_the_google_key_path_is_given_one_way_everywhere():
    pages = [REPO / ".env.example", REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    paths = {
        match.group(1)
        for page in pages
        for match in re.finditer(r"GOOGLE_DRIVE_CREDENTIALS_FILE=(\S+?)[`\s]", page.read_text(encoding="utf-8"))
    }
    assert len(paths) == 1, paths


def test_the_readme_layout_lists_every_module():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout") :]
    modules = [p for p in (REPO / "tuttle_prep").rglob("*.py") if p.name != "__init__.py"]
    missing = [str(p.relative_to(REPO)) for p in modules if not re.search(rf"^\s+{re.escape(p.name)}\s", layout, re.M)]
    assert missing == []
    assert re.search(r"local_s3\.py", layout)
