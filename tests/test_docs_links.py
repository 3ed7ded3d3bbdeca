"""Every relative link in the repository's Markdown resolves: README.md, benchmarks/README.md and docs/*.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([*REPO.glob("*.md"), *REPO.glob("docs/*.md"), *REPO.glob("benchmarks/*.md")])
#: [text](target) and [text](target "title"); images too. Code spans and fenced blocks are not links.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(markdown: str) -> list[str]:
    """The link targets of `markdown` that point into the repository (no scheme, no bare anchor)."""
    text = CODE_SPAN.sub("", FENCE.sub("", markdown))
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def test_the_docs_exist_and_the_readme_links_each() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    pages = {"safety", "google-sheets", "datasets", "operations", "deploy", "performance", "testing"}
    assert {p.stem for p in REPO.glob("docs/*.md")} >= pages
    assert {t for t in relative_links(readme) if t.startswith("docs/")} >= {f"docs/{p}.md" for p in pages}


def test_the_link_finder_finds_links_and_skips_code() -> None:
    sample = (
        "See [a](docs/a.md), ![chart](img/c.png \"title\") and [b](../b.md#part), not [web](https://x.org) "
        "or [here](#top) or `[code](no.md)`.\n```\n[fenced](no2.md)\n```\n"
    )
    assert relative_links(sample) == ["docs/a.md", "img/c.png", "../b.md#part"]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).resolve().exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links to files that do not exist: {broken}"
