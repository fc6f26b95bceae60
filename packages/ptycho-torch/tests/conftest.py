"""Shared fixtures: small synthetic grouped datasets built with the NumPy reference physics."""

from __future__ import annotations

import pytest
from torch_testdata import make_grouped

from ptycho_core.contracts import GroupedData


@pytest.fixture(scope="session")
def grouped64() -> GroupedData:
    """64 groups of one 64x64 pattern."""
    return make_grouped(N=64, gridsize=1, n_groups=64)


@pytest.fixture(scope="session")
def grouped64_g2() -> GroupedData:
    """16 groups of four 64x64 patterns."""
    return make_grouped(N=64, gridsize=2, n_groups=16, seed=1)
