"""Test support shared by ptycho-core's tests and the repository's workflow tests: a fake installed
distribution providing the NumPy dummy backend (and a broken and a misspelled one)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from ptycho_core import registry

HERE = Path(__file__).parent


def make_distribution(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Write a minimal installed distribution (``*.dist-info`` + modules) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = ["[ptycho.backends]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for mod, source in modules.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(source))
    return root


def install_dummy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Generator for a fixture: install the dummy backend (and a broken and a misspelled one)."""
    root = make_distribution(
        tmp_path / "site",
        "ptycho-dummy",
        {"dummy": "dummy_backend", "broken": "broken_backend", "typo": "typo_backend"},
        {
            "dummy_backend": (HERE / "dummy_backend.py").read_text(),
            "broken_backend": "raise RuntimeError('boom: missing libfoo.so')\n",
            "typo_backend": """
                from ptycho_core import hookimpl

                @hookimpl
                def ptycho_biuld_model(model_config, training_config):
                    return None
            """,
        },
    )
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()
    registry.default_registry.cache_clear()
    yield root
    for mod in ("dummy_backend", "broken_backend", "typo_backend"):
        sys.modules.pop(mod, None)
    registry.refresh()
    registry.default_registry.cache_clear()
