"""Neighbour grouping (physics.md s6): identity grouping, true neighbours, offsets, errors, normalisation."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from ptycho_core import reference
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.contracts import Dataset, GroupedData
from ptycho_core.errors import ConfigError
from ptycho_data.grouping import group_coordinates, group_dataset, group_for_inference, group_for_training

N = 64


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    """30 patterns at irregular positions (no distance ties) over a random object."""
    rng = np.random.default_rng(0)
    n = 30
    grid = np.stack(np.meshgrid(np.arange(6), np.arange(5)), axis=-1).reshape(-1, 2) * 9.0
    pos = grid + rng.uniform(-2.0, 2.0, size=(n, 2)) + N / 2 + 3
    obj = (rng.uniform(0.5, 1.0, (110, 110)) * np.exp(1j * rng.uniform(-1, 1, (110, 110)))).astype(np.complex64)
    amps = rng.gamma(2.0, 3.0, size=(n, N, N)).astype(np.float32)
    probe = np.ones((N, N), dtype=np.complex64)
    return Dataset(diffraction=amps, xcoords=pos[:, 0], ycoords=pos[:, 1], probe=probe, object=obj)


def test_gridsize1_is_the_identity_grouping(dataset):
    g = group_dataset(dataset, gridsize=1)
    assert isinstance(g, GroupedData)
    np.testing.assert_array_equal(g.indices[:, 0], np.arange(dataset.n))
    np.testing.assert_array_equal(g.offsets, 0.0)
    np.testing.assert_allclose(g.centroids, dataset.positions)
    np.testing.assert_allclose(g.X[..., 0], dataset.diffraction * g.norm_factor, rtol=1e-6)
    assert g.object_shape == dataset.object.shape
    assert g.X.shape == (dataset.n, N, N, 1)


def test_normalisation_gives_mean_energy_of_half_n_squared(dataset):
    g = group_dataset(dataset, gridsize=1)
    energy = np.mean(np.sum(g.X.astype(np.float64) ** 2, axis=(1, 2, 3)))
    assert energy == pytest.approx((N / 2) ** 2, rel=1e-5)
    assert g.norm_factor == pytest.approx(reference.normalisation_factor(dataset.diffraction))
    raw = group_dataset(dataset, gridsize=1, normalise=False)
    assert raw.norm_factor == 1.0
    np.testing.assert_array_equal(raw.X[..., 0], dataset.diffraction)


def test_norm_factor_is_over_the_whole_dataset_not_the_chosen_groups(dataset):
    g = group_dataset(dataset, gridsize=2, n_groups=5, neighbor_count=4, seed=1)
    assert g.norm_factor == pytest.approx(reference.normalisation_factor(dataset.diffraction))


def test_gridsize2_groups_are_true_nearest_neighbours(dataset):
    g = group_dataset(dataset, gridsize=2, neighbor_count=4, seed=3)
    pos = dataset.positions
    assert g.indices.shape == (dataset.n, 4)
    for seed_point, members in enumerate(g.indices):
        dist = np.hypot(*(pos - pos[seed_point]).T)
        assert set(members.tolist()) == set(np.argsort(dist)[:4].tolist())
        assert members[0] == seed_point  # channels ordered by distance to the seed


def test_members_are_among_k_nearest_when_k_exceeds_c(dataset):
    g = group_dataset(dataset, gridsize=2, neighbor_count=7, seed=3)
    pos = dataset.positions
    for seed_point, members in enumerate(g.indices):
        near = np.argsort(np.hypot(*(pos - pos[seed_point]).T))[:7]
        assert set(members.tolist()) <= set(near.tolist())
        assert len(set(members.tolist())) == 4


def test_offsets_are_relative_to_centroid_and_sum_to_zero(dataset):
    g = group_dataset(dataset, gridsize=2, neighbor_count=6, seed=0)
    np.testing.assert_allclose(g.offsets.sum(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(g.positions, dataset.positions[g.indices])
    np.testing.assert_allclose(g.centroids, dataset.positions[g.indices].mean(axis=1))
    assert np.abs(g.offsets).max() > 1.0


def test_x_and_y_follow_the_indices(dataset):
    g = group_dataset(dataset, gridsize=2, neighbor_count=5, seed=2, n_groups=6)
    np.testing.assert_allclose(g.X, np.moveaxis(dataset.diffraction[g.indices], 1, -1) * g.norm_factor, rtol=1e-6)
    expected = reference.extract_patches(dataset.object, dataset.positions, N)[g.indices]
    np.testing.assert_allclose(g.Y, np.moveaxis(expected, 1, -1), atol=1e-6)


def test_no_ground_truth_without_object(dataset):
    plain = Dataset(diffraction=dataset.diffraction, xcoords=dataset.xcoords, ycoords=dataset.ycoords,
                    probe=dataset.probe)
    g = group_dataset(plain, gridsize=2)
    assert g.Y is None and g.object_shape is None


def test_same_seed_same_groups_other_seed_other_groups(dataset):
    kwargs = dict(gridsize=2, neighbor_count=7, n_groups=20)
    a = group_dataset(dataset, seed=11, **kwargs)
    b = group_dataset(dataset, seed=11, **kwargs)
    c = group_dataset(dataset, seed=12, **kwargs)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.indices, c.indices)


def test_n_groups_subset_for_gridsize1_is_sorted_and_distinct(dataset):
    idx, cen, off = group_coordinates(dataset.xcoords, dataset.ycoords, n_groups=10, seed=4)
    assert idx.shape == (10, 1)
    assert len(np.unique(idx)) == 10
    assert np.all(np.diff(idx[:, 0]) > 0)
    np.testing.assert_allclose(cen, dataset.positions[idx[:, 0]])


def test_k_smaller_than_c_is_an_error(dataset):
    with pytest.raises(ConfigError, match="neighbor_count.*4"):
        group_dataset(dataset, gridsize=2, neighbor_count=3)


def test_k_larger_than_positions_is_an_error(dataset):
    with pytest.raises(ConfigError, match="neighbor_count.*30"):
        group_coordinates(dataset.xcoords, dataset.ycoords, gridsize=2, neighbor_count=31)


def test_too_many_groups_is_an_error(dataset):
    with pytest.raises(ConfigError, match="n_groups.*at most 30.*oversample"):
        group_dataset(dataset, gridsize=2, n_groups=31)
    with pytest.raises(ConfigError, match="n_groups.*at most 30"):
        group_dataset(dataset, gridsize=1, n_groups=31, oversample=True)


def test_oversampling_gives_more_groups_than_points_all_distinct(dataset):
    g = group_dataset(dataset, gridsize=2, neighbor_count=6, n_groups=100, oversample=True, seed=5)
    assert g.n_groups == 100 > dataset.n
    sets = {tuple(sorted(row)) for row in g.indices.tolist()}
    assert len(sets) == 100
    assert all(len(set(row)) == 4 for row in g.indices.tolist())
    pos = dataset.positions
    neighbourhoods = [set(np.argsort(np.hypot(*(pos - p).T))[:6].tolist()) for p in pos]
    for row in g.indices.tolist():  # every group lies in some seed's K-neighbourhood
        assert any(set(row) <= hood for hood in neighbourhoods)


def test_oversampling_limit_is_the_number_of_distinct_combinations(dataset):
    pos = dataset.positions
    possible = {tuple(sorted(c)) for p in pos for c in combinations(np.argsort(np.hypot(*(pos - p).T))[:5], 4)}
    g = group_dataset(dataset, gridsize=2, neighbor_count=5, n_groups=len(possible), oversample=True)
    assert {tuple(sorted(r)) for r in g.indices.tolist()} == possible
    with pytest.raises(ConfigError, match=f"n_groups: expected at most {len(possible)}"):
        group_dataset(dataset, gridsize=2, neighbor_count=5, n_groups=len(possible) + 1, oversample=True)


def test_bad_arguments_name_the_field(dataset):
    with pytest.raises(ConfigError, match="gridsize"):
        group_coordinates(dataset.xcoords, dataset.ycoords, gridsize=0)
    with pytest.raises(ConfigError, match="n_groups"):
        group_coordinates(dataset.xcoords, dataset.ycoords, n_groups=0)
    with pytest.raises(ConfigError, match="gridsize"):
        group_coordinates([0.0, 1.0], [0.0, 1.0], gridsize=2, neighbor_count=4)


def test_config_wrappers_use_config_fields(dataset):
    tcfg = TrainingConfig(model=ModelConfig(gridsize=2), n_groups=12, neighbor_count=5, seed=9)
    g = group_for_training(dataset, tcfg)
    ref = group_dataset(dataset, gridsize=2, n_groups=12, neighbor_count=5, seed=9)
    np.testing.assert_array_equal(g.indices, ref.indices)
    icfg = InferenceConfig(model=ModelConfig(gridsize=1), n_groups=None, seed=9)
    gi = group_for_inference(dataset, icfg)
    np.testing.assert_array_equal(gi.indices[:, 0], np.arange(dataset.n))


def test_oversampling_by_random_draws_when_the_pool_is_too_large_to_list(dataset, monkeypatch):
    import ptycho_data.grouping as grouping

    monkeypatch.setattr(grouping, "ENUMERATE_LIMIT", 10)
    g = group_dataset(dataset, gridsize=2, neighbor_count=6, n_groups=80, oversample=True, seed=5)
    assert len({tuple(sorted(r)) for r in g.indices.tolist()}) == 80
    again = group_dataset(dataset, gridsize=2, neighbor_count=6, n_groups=80, oversample=True, seed=5)
    np.testing.assert_array_equal(g.indices, again.indices)
    with pytest.raises(ConfigError, match="n_groups"):
        group_dataset(dataset, gridsize=2, neighbor_count=4, n_groups=300, oversample=True)
