"""Keep the ptycho-ci tests independent of a recording outer session."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_outer_recording(monkeypatch):
    """Nested pytest runs (pytester subprocesses) must not append to the history of the outer run."""
    for name in ("PTYCHO_CI_HISTORY", "PTYCHO_CI_LABEL", "PTYCHO_CI_BACKEND"):
        monkeypatch.delenv(name, raising=False)
