"""Fixtures for ptycho-core tests: a fake installed distribution providing backends."""

from __future__ import annotations

import pytest
from core_test_support import install_dummy


@pytest.fixture
def installed_dummy(tmp_path, monkeypatch):
    """Install the dummy backend (and a broken and a misspelled one) as a real distribution."""
    yield from install_dummy(tmp_path, monkeypatch)
