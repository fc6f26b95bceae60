"""The documentation site builds with ``mkdocs build --strict`` (no broken links, every page in the nav)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from docs_support import ROOT, nav_pages

pytest.importorskip("mkdocs", reason="mkdocs is installed in the nox session 'docs' (pinned in constraints/ci.txt)")


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for page in nav_pages():
        html = site / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert html.is_file() and html.stat().st_size > 1000, html
