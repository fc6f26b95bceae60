"""Workflow tests run against the NumPy dummy backend of ptycho-core's tests (no framework)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

CORE_TESTS = Path(__file__).resolve().parents[2] / "packages" / "ptycho-core" / "tests"
sys.path.insert(0, str(CORE_TESTS))

from core_test_support import install_dummy  # noqa: E402


@pytest.fixture
def installed_dummy(tmp_path, monkeypatch):
    """The NumPy dummy backend of ptycho-core's tests, installed as a real distribution."""
    yield from install_dummy(tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def small_dataset_path(tmp_path_factory):
    from ptycho_data.npz import save_dataset
    from ptycho_data.simulate import SimulationConfig, simulate_dataset

    path = tmp_path_factory.mktemp("data") / "small.npz"
    save_dataset(simulate_dataset(SimulationConfig(n_positions=36, seed=1), progress=False), path)
    return path
