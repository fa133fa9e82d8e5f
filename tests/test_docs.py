"""The README and docs/ stay a short entry point with working links and no history.

Pure text checks, no Flink: they run in the fast tier.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]

# [text](target): a markdown link or image; the target ends at whitespace or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, https:, mailto:, ...
# Lab-notebook phrases: a page describes the code as it is, not how it got there.
HISTORY = re.compile(r"\bsessions?\s*\d|\bprevious release\b", re.IGNORECASE)


def _relative_links(page: Path) -> list[str]:
    text = page.read_text()
    # Code blocks and inline code may show link syntax without meaning a link.
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in LINK.findall(text) if not SCHEME.match(t) and not t.startswith("#")]


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move detail into a docs/ page"


def test_every_docs_page_is_linked_from_the_readme():
    targets = {(ROOT / t.split("#", 1)[0]).resolve() for t in _relative_links(README)}
    missing = [p.name for p in DOCS if p.resolve() not in targets]
    assert not missing, f"add these pages to the README's documentation table: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(page):
    broken = [t for t in _relative_links(page)
              if not (page.parent / t.split("#", 1)[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_tell_no_history(page):
    found = [m.group(0) for m in HISTORY.finditer(page.read_text())]
    assert not found, f"{page.relative_to(ROOT)} narrates history: {found}"
