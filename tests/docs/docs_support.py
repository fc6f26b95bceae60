"""Helpers shared by the docs tests: load a docs/scripts generator, list the mkdocs nav pages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def load_script(name: str) -> ModuleType:
    """Import ``docs/scripts/<name>.py`` (not a package) as a module.

    docs/scripts goes on ``sys.path`` as it is when a script runs, so the generators' ``main``
    finds its sibling ``_docgen``.
    """
    scripts = str(DOCS / "scripts")
    if scripts not in sys.path:
        sys.path.append(scripts)
    spec = importlib.util.spec_from_file_location(name, DOCS / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_pages(nav: list | None = None) -> list[str]:
    """The Markdown files named in mkdocs.yml's ``nav`` (or in the given nav list), in order."""
    if nav is None:
        nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages
