"""Fixtures of the end-to-end CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fixture_path() -> Path:
    from ptycho_data.fixtures import canonical_fixture_path

    return canonical_fixture_path()
