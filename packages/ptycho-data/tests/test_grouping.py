"""Neighbour grouping (physics.md s6): identity grouping, true neighbours, variety, offsets, errors, normalisation."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from ptycho_core import reference
from ptycho_core.config import DEFAULT_NEIGHBOR_COUNT, InferenceConfig, ModelConfig, TrainingConfig
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


def _nearest_others(pos: np.ndarray, i: int, k: int) -> list[int]:
    """The k nearest other positions of position i (brute force; the fixture has no distance ties)."""
    order = np.argsort(np.hypot(*(pos - pos[i]).T), kind="stable")
    return [int(j) for j in order if j != i][:k]


def test_gridsize2_with_k_equal_c_minus_1_is_the_seed_and_its_nearest_others(dataset):
    g = group_dataset(dataset, gridsize=2, neighbor_count=3, seed=3)
    pos = dataset.positions
    assert g.indices.shape == (dataset.n, 4)
    for seed_point, members in enumerate(g.indices.tolist()):
        # channels: the seed first, then the others by distance to the seed
        assert members == [seed_point, *_nearest_others(pos, seed_point, 3)]


def test_every_group_is_its_seed_plus_members_among_its_k_nearest_others(dataset):
    g = group_dataset(dataset, gridsize=2, neighbor_count=7, seed=3)
    pos = dataset.positions
    for seed_point, members in enumerate(g.indices.tolist()):
        assert members[0] == seed_point
        near = _nearest_others(pos, seed_point, 7)
        assert set(members[1:]) <= set(near) and len(set(members)) == 4
        dist = np.hypot(*(pos[members[1:]] - pos[seed_point]).T)
        assert np.all(np.diff(dist) >= 0)  # the others ordered by distance to the seed


def test_seed_is_always_a_member_for_subsets_and_gridsize3(dataset):
    g = group_dataset(dataset, gridsize=2, n_groups=9, seed=7)  # default K
    assert len(set(g.indices[:, 0].tolist())) == 9  # distinct seeds, each in channel 0
    assert np.all(np.diff(g.indices[:, 0]) > 0)  # seeds in scan order
    pos = dataset.positions
    for members in g.indices.tolist():
        assert set(members[1:]) <= set(_nearest_others(pos, members[0], DEFAULT_NEIGHBOR_COUNT))
    g3 = group_dataset(dataset, gridsize=3, neighbor_count=8)
    for seed_point, members in enumerate(g3.indices.tolist()):
        assert members == [seed_point, *_nearest_others(pos, seed_point, 8)]


def _raster(side: int = 16, step: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:side, 0:side] * step + 40.0
    return xx.ravel(), yy.ravel()


def _shapes(x: np.ndarray, y: np.ndarray, indices: np.ndarray) -> int:
    """Number of distinct groups by relative-offset pattern (translation-invariant shape, as a set)."""
    pos = np.stack([x, y], axis=1)[indices]
    rel = np.round(pos - pos.mean(axis=1, keepdims=True), 6)
    return len({tuple(sorted(map(tuple, r.tolist()))) for r in rel})


def test_default_groups_on_a_raster_have_variety():
    """16 x 16 raster, gridsize 2. Old semantics (K = C = 4, seed counted) was the seed plus 3 of its
    4 equidistant side neighbours, always picked by the same tie-break: a handful of shapes. The default
    K = 8 (side and diagonal neighbours) gives many shapes and, oversampled, far more distinct groups."""
    x, y = _raster()
    n = x.size
    old_style, _, _ = group_coordinates(x, y, gridsize=2, neighbor_count=3, seed=0)  # = old K = C = 4
    default, _, _ = group_coordinates(x, y, gridsize=2, seed=0)
    assert _shapes(x, y, old_style) <= 5
    assert _shapes(x, y, default) >= 40
    assert DEFAULT_NEIGHBOR_COUNT == 8
    # interior seeds: all members within one (diagonal) raster step of the seed
    interior = [i for i in range(n) if 0 < i % 16 < 15 and 0 < i // 16 < 15]
    pos = np.stack([x, y], axis=1)
    d = np.abs(pos[default[interior]] - pos[default[interior]][:, :1]).max(axis=(1, 2))
    assert d.max() == 8.0
    # oversampling: many more distinct groups (as sets) than positions, every one seed + 3 of 8
    over, _, _ = group_coordinates(x, y, gridsize=2, n_groups=8 * n, oversample=True, seed=0)
    assert len({tuple(sorted(r)) for r in over.tolist()}) == 8 * n
    assert _shapes(x, y, over) > _shapes(x, y, default)


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
    for extra in (dict(), dict(n_groups=None), dict(n_groups=90, oversample=True)):  # every seed, oversampling
        one = group_coordinates(dataset.xcoords, dataset.ycoords, seed=11, **{**kwargs, **extra})[0]
        two = group_coordinates(dataset.xcoords, dataset.ycoords, seed=11, **{**kwargs, **extra})[0]
        other = group_coordinates(dataset.xcoords, dataset.ycoords, seed=12, **{**kwargs, **extra})[0]
        np.testing.assert_array_equal(one, two)
        assert not np.array_equal(one, other)


def test_duplicate_positions_never_list_the_seed_among_its_others():
    x = np.array([0.0, 0.0, 0.0, 8.0, 8.0, 16.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 8.0, 0.0])
    idx, _, off = group_coordinates(x, y, gridsize=2, neighbor_count=3, seed=0)
    for i, row in enumerate(idx.tolist()):
        assert row[0] == i and len(set(row)) == 4
    assert set(idx[0, 1:3].tolist()) == {1, 2}  # the co-located patterns come first (distance 0)


def test_n_groups_subset_for_gridsize1_is_sorted_and_distinct(dataset):
    idx, cen, off = group_coordinates(dataset.xcoords, dataset.ycoords, n_groups=10, seed=4)
    assert idx.shape == (10, 1)
    assert len(np.unique(idx)) == 10
    assert np.all(np.diff(idx[:, 0]) > 0)
    np.testing.assert_allclose(cen, dataset.positions[idx[:, 0]])


def test_k_smaller_than_c_minus_1_is_an_error(dataset):
    with pytest.raises(ConfigError, match=r"neighbor_count: expected an integer >= gridsize\*\*2 - 1 = 3 .*got 2"):
        group_dataset(dataset, gridsize=2, neighbor_count=2)
    with pytest.raises(ConfigError, match=r"neighbor_count: expected an integer >= gridsize\*\*2 - 1 = 8 .*got 7"):
        group_dataset(dataset, gridsize=3, neighbor_count=7)
    group_dataset(dataset, gridsize=1, neighbor_count=1)  # K is not used at gridsize 1


def test_k_larger_than_other_positions_is_an_error(dataset):
    with pytest.raises(ConfigError, match="neighbor_count: expected at most .* = 29 .*got 30"):
        group_coordinates(dataset.xcoords, dataset.ycoords, gridsize=2, neighbor_count=30)
    idx, _, _ = group_coordinates(dataset.xcoords, dataset.ycoords, gridsize=2, neighbor_count=29)
    assert idx.shape == (30, 4)


def test_too_many_groups_is_an_error(dataset):
    with pytest.raises(ConfigError, match="n_groups.*at most 30.*oversample"):
        group_dataset(dataset, gridsize=2, n_groups=31)
    with pytest.raises(ConfigError, match="n_groups.*at most 30"):
        group_dataset(dataset, gridsize=1, n_groups=31, oversample=True)


def test_oversampling_gives_more_groups_than_points_all_distinct(dataset):
    g = group_dataset(dataset, gridsize=2, neighbor_count=5, n_groups=100, oversample=True, seed=5)
    assert g.n_groups == 100 > dataset.n
    sets = {tuple(sorted(row)) for row in g.indices.tolist()}
    assert len(sets) == 100
    assert all(len(set(row)) == 4 for row in g.indices.tolist())
    pos = dataset.positions
    for row in g.indices.tolist():  # the seed first, the others among its K nearest, by distance
        assert set(row[1:]) <= set(_nearest_others(pos, row[0], 5))
        assert np.all(np.diff(np.hypot(*(pos[row[1:]] - pos[row[0]]).T)) >= 0)


def test_oversampling_limit_is_the_number_of_distinct_seed_plus_others_groups(dataset):
    pos = dataset.positions
    possible = {tuple(sorted((i, *c))) for i in range(dataset.n) for c in combinations(_nearest_others(pos, i, 5), 3)}
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


def test_groups_per_position_predicts_every_position_in_several_groups(dataset):
    icfg = InferenceConfig(model=ModelConfig(gridsize=2), neighbor_count=5, seed=4, groups_per_position=3)
    g = group_for_inference(dataset, icfg)
    ref = group_dataset(dataset, gridsize=2, n_groups=3 * dataset.n, neighbor_count=5, seed=4, oversample=True)
    np.testing.assert_array_equal(g.indices, ref.indices)
    assert g.n_groups == 3 * dataset.n and len({tuple(sorted(r)) for r in g.indices.tolist()}) == g.n_groups
    assert np.bincount(g.indices.ravel(), minlength=dataset.n).mean() == 3 * 4  # k * C patches per position
    with pytest.raises(ConfigError, match="groups_per_position: 2 needs a model with gridsize > 1"):
        group_for_inference(dataset, InferenceConfig(model=ModelConfig(gridsize=1), groups_per_position=2))
    with pytest.raises(ConfigError, match=r"groups_per_position: 60 x 30 positions = 1800 groups: n_groups: expected "
                                          r"at most"):
        group_for_inference(dataset, InferenceConfig(model=ModelConfig(gridsize=2), neighbor_count=5,
                                                     groups_per_position=60))
    with pytest.raises(ConfigError, match="InferenceConfig.n_groups: expected at most 30 .*set groups_per_position"):
        group_for_inference(dataset, InferenceConfig(model=ModelConfig(gridsize=2), n_groups=31))
    with pytest.raises(ConfigError, match="groups_per_position: 2 .* n_groups = 10 .* set one of the two"):
        InferenceConfig(groups_per_position=2, n_groups=10)


def test_oversampling_by_random_draws_when_the_pool_is_too_large_to_list(dataset, monkeypatch):
    import ptycho_data.grouping as grouping

    monkeypatch.setattr(grouping, "ENUMERATE_LIMIT", 10)
    g = group_dataset(dataset, gridsize=2, neighbor_count=6, n_groups=80, oversample=True, seed=5)
    assert len({tuple(sorted(r)) for r in g.indices.tolist()}) == 80
    pos = dataset.positions
    assert all(set(r[1:]) <= set(_nearest_others(pos, r[0], 6)) for r in g.indices.tolist())
    again = group_dataset(dataset, gridsize=2, neighbor_count=6, n_groups=80, oversample=True, seed=5)
    np.testing.assert_array_equal(g.indices, again.indices)
    with pytest.raises(ConfigError, match="n_groups"):
        group_dataset(dataset, gridsize=2, neighbor_count=3, n_groups=300, oversample=True)
