"""Grouping several datasets: each on its own, concatenated (issue 17 item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core import reference
from ptycho_core.errors import ConfigError, DataError
from ptycho_data.grouping import ConcatenatedRows, group_dataset, group_datasets
from ptycho_data.lazy import open_lazy_dataset
from ptycho_data.lazy_write import save_lazy_dataset
from ptycho_data.simulate import SimulationConfig, simulate_dataset


@pytest.fixture(scope="module")
def two():
    a = simulate_dataset(SimulationConfig(n_positions=25, seed=1, object_kind="grf", nphotons=1e6), progress=False)
    b = simulate_dataset(SimulationConfig(n_positions=16, seed=2, object_kind="lines", nphotons=1e9), progress=False)
    return a, b


def _check_no_mixing(g, sizes):
    starts = np.cumsum([0, *sizes])
    for d in range(len(sizes)):
        rows = g.indices[g.dataset_index == d]
        assert rows.size and rows.min() >= starts[d] and rows.max() < starts[d + 1]


@pytest.mark.parametrize("gridsize", [1, 2])
def test_groups_never_span_two_datasets(two, gridsize):
    a, b = two
    g = group_datasets([a, b], gridsize=gridsize, seed=3)
    assert g.n_groups == a.n + b.n
    np.testing.assert_array_equal(g.dataset_index, [0] * a.n + [1] * b.n)
    _check_no_mixing(g, [a.n, b.n])
    # each part is exactly the grouping of its own dataset (seed + d), indices shifted by the offset
    ga, gb = group_dataset(a, gridsize=gridsize, seed=3), group_dataset(b, gridsize=gridsize, seed=4)
    np.testing.assert_array_equal(g.indices, np.concatenate([ga.indices, gb.indices + a.n]))
    np.testing.assert_allclose(g.offsets, np.concatenate([ga.offsets, gb.offsets]))
    np.testing.assert_array_equal(g.X, np.concatenate([ga.X, gb.X]))
    # offsets are relative to each group's own centroid, within its own scan
    np.testing.assert_allclose(g.offsets.sum(axis=1), 0, atol=1e-9)


def test_each_dataset_has_its_own_normalisation(two):
    a, b = two
    g = group_datasets([a, b])
    ka, kb = (float(reference.normalisation_factor(d.diffraction)) for d in (a, b))
    assert g.norm_factors == pytest.approx((ka, kb), rel=1e-12)
    assert ka / kb > 10  # 1e6 vs 1e9 photons: a thousandfold intensity, ~30x amplitude
    np.testing.assert_allclose(g.group_norm_factors, [ka] * a.n + [kb] * b.n)
    # after normalisation both photon levels hold (N/2)^2 per pattern on average
    for d in (0, 1):
        energy = np.mean(np.sum(g.X[g.dataset_index == d].astype(np.float64) ** 2, axis=(1, 2, 3)))
        assert energy == pytest.approx((a.N / 2) ** 2, rel=1e-5)


def test_lazy_and_in_memory_datasets_mix(two, tmp_path):
    a, b = two
    lazy_b = open_lazy_dataset(save_lazy_dataset(b, tmp_path / "b"))
    g = group_datasets([a, lazy_b], gridsize=2, seed=0)
    eager = group_datasets([a, b], gridsize=2, seed=0)
    assert isinstance(g.X, ConcatenatedRows) and g.is_lazy
    rows = np.array([0, a.n + 3, 2, a.n])  # across both parts, out of order
    np.testing.assert_array_equal(g.X[rows], eager.X[rows])
    np.testing.assert_array_equal(g.Y[rows], eager.Y[rows])
    np.testing.assert_array_equal(g.batch(slice(a.n - 2, a.n + 2)).dataset_index, [0, 0, 1, 1])


def test_n_groups_is_shared_in_proportion(two):
    a, b = two
    g = group_datasets([a, b], n_groups=20, seed=1)
    assert g.n_groups == 20
    counts = np.bincount(g.dataset_index)
    assert counts.tolist() == [12, 8]  # 25 : 16 patterns
    with pytest.raises(ConfigError, match="at least one group per dataset"):
        group_datasets([a, b], n_groups=1)


def test_different_N_is_an_error(two):
    a, _ = two
    big = simulate_dataset(SimulationConfig(N=128, n_positions=4, seed=1), progress=False)
    with pytest.raises(DataError, match=r"big\.npz: patterns of side N = 128, but a\.npz has N = 64"):
        group_datasets([a, big], names=["a.npz", "big.npz"])


def test_different_probe_is_an_error_but_a_scaled_one_is_not(two):
    a, b = two
    group_datasets([a, b])  # probes stored at different photon scales: same shape, fine
    other = simulate_dataset(SimulationConfig(n_positions=16, seed=2, probe_kind="gaussian"), progress=False)
    with pytest.raises(DataError, match=r"g\.npz: probeGuess differs from that of a\.npz"):
        group_datasets([a, other], names=["a.npz", "g.npz"])
