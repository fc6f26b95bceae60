"""Shared fixtures of the ptycho-tf tests: small synthetic grouped datasets."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tf_testdata import make_grouped  # noqa: E402

from ptycho_core.contracts import GroupedData  # noqa: E402


@pytest.fixture(scope="session")
def grouped64() -> GroupedData:
    """64 groups of one 64x64 pattern."""
    return make_grouped(N=64, gridsize=1, n_groups=64)


@pytest.fixture(scope="session")
def grouped64_g2() -> GroupedData:
    """16 groups of four 64x64 patterns."""
    return make_grouped(N=64, gridsize=2, n_groups=16, seed=1)
