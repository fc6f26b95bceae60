"""Data contracts validate shapes, dtypes and values and name the offending field."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core.contracts import Dataset, GroupedData, InferenceResult, Reconstruction, TrainResult
from ptycho_core.errors import DataError


def _ds(**kw):
    n, N = 5, 64
    base = dict(
        diffraction=np.ones((n, N, N)), xcoords=np.arange(n, dtype=float), ycoords=np.arange(n, dtype=float),
        probe=np.ones((N, N), np.complex128),
    )
    base.update(kw)
    return Dataset(**base)


def test_dataset_casts_and_defaults():
    ds = _ds()
    assert ds.diffraction.dtype == np.float32 and ds.probe.dtype == np.complex64
    assert ds.n == 5 and ds.N == 64
    np.testing.assert_array_equal(ds.scan_index, np.zeros(5))
    np.testing.assert_array_equal(ds.xcoords_start, ds.xcoords)
    assert ds.positions.shape == (5, 2)
    sub = ds.subset([0, 2])
    assert sub.n == 2 and sub.xcoords.tolist() == [0.0, 2.0]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(diffraction=np.ones((5, 64, 32))), "diffraction: patterns must be square"),
        (dict(diffraction=np.ones((5, 32, 32))), "diffraction: pattern side N must be one of"),
        (dict(diffraction=-np.ones((5, 64, 64))), "diffraction: amplitudes must be >= 0"),
        (dict(diffraction=np.full((5, 64, 64), np.nan)), "diffraction: contains"),
        (dict(diffraction=np.ones((64, 64))), "diffraction: expected 3 dimensions"),
        (dict(diffraction=np.ones((5, 64, 64), complex)), "diffraction: expected a numeric array of dtype float32"),
        (dict(diffraction=np.array([object()] * 5, dtype=object)), "diffraction"),
        (dict(xcoords=np.arange(4.0)), "xcoords: expected length 5"),
        (dict(ycoords=np.array([0, 1, np.inf, 3, 4.0])), "ycoords: contains"),
        (dict(probe=np.ones((32, 32))), r"probeGuess: expected shape \(64, 64\)"),
        (dict(scan_index=np.zeros(5, float)), "scan_index: expected a numeric array of dtype int64"),
        (dict(object=np.ones((0, 0))), "objectGuess"),
    ],
)
def test_dataset_errors_name_the_key(kw, match):
    with pytest.raises(DataError, match=match):
        _ds(**kw)


def test_grouped_data_shapes():
    B, N, C = 3, 64, 4
    g = GroupedData(X=np.ones((B, N, N, C)), offsets=np.zeros((B, C, 2)), centroids=np.ones((B, 2)),
                    indices=np.zeros((B, C), int), probe=np.ones((N, N)))
    assert (g.n_groups, g.N, g.channels) == (B, N, C)
    np.testing.assert_array_equal(g.positions, np.ones((B, C, 2)))
    assert g.batch(slice(0, 2)).n_groups == 2
    with pytest.raises(DataError, match=r"offsets: expected shape \(3, 4, 2\)"):
        GroupedData(X=np.ones((B, N, N, C)), offsets=np.zeros((B, 1, 2)), centroids=np.ones((B, 2)),
                    indices=np.zeros((B, C), int), probe=np.ones((N, N)))


def test_grouped_data_checks_that_it_fits_a_model():
    from ptycho_core.config import ModelConfig
    from ptycho_core.errors import ConfigError

    B, N, C = 3, 64, 4
    g = GroupedData(X=np.ones((B, N, N, C)), offsets=np.zeros((B, C, 2)), centroids=np.ones((B, 2)),
                    indices=np.zeros((B, C), int), probe=np.ones((N, N)))
    g.check_fits(ModelConfig(N=64, gridsize=2))  # fits: no error
    with pytest.raises(ConfigError, match=r"groups of 4 patterns of 64 x 64 do not fit the model "
                                          r"\(ModelConfig.N = 64, gridsize = 1 -> 1 channels\)"):
        g.check_fits(ModelConfig(N=64, gridsize=1))
    with pytest.raises(ConfigError, match=r"ModelConfig.N = 128"):
        g.check_fits(ModelConfig(N=128, gridsize=2))


def test_results_validate():
    with pytest.raises(DataError, match="positions: expected shape"):
        InferenceResult(patches=np.ones((4, 64, 64)), positions=np.ones((3, 2)))
    with pytest.raises(DataError, match="'backend'"):
        Reconstruction(object=np.ones((10, 10)), metadata={})
    rec = Reconstruction(object=np.full((2, 2), 2j), metadata={"backend": "x"})
    np.testing.assert_allclose(rec.amplitude, 2.0)
    np.testing.assert_allclose(rec.phase, np.pi / 2)
    assert rec.metadata.backend == "x" and rec.metadata.refine is None and rec.metadata.summary() == {
        "backend": "x", "timings": {}, "paths": {}}
    with pytest.raises(DataError, match="'loss'"):
        TrainResult(model=None, history={}, epochs=1)


def test_reconstruction_record_is_typed_and_names_what_is_wrong():
    from ptycho_core.contracts import Refinement

    with pytest.raises(DataError, match=r"unknown entries \['timing'\]; expected some of \['backend', 'timings'"):
        Reconstruction(object=np.ones((2, 2)), metadata={"backend": "x", "timing": {}})
    with pytest.raises(DataError, match="expected a ReconstructionRecord or a dict"):
        Reconstruction(object=np.ones((2, 2)), metadata="x")
    with pytest.raises(DataError, match="backend"):
        Reconstruction(object=np.ones((2, 2)), metadata={"backend": ""})
    with pytest.raises(DataError, match="refine"):
        Reconstruction(object=np.ones((2, 2)), metadata={"backend": "x", "refine": {"iterations": 2}})
    refined = Refinement(iterations=2, misfit=[0.5, 0.2, 0.1], scale=1.5, seconds=0.25,
                         network_object=np.ones((2, 2)))
    rec = Reconstruction(object=np.ones((2, 2)), metadata={
        "backend": "x", "timings": {"infer_s": 1}, "history": {"loss": [2, 1]}, "epochs": 2.0, "refine": refined})
    assert rec.metadata.history == {"loss": [2.0, 1.0]} and rec.metadata.epochs == 2
    assert rec.metadata.summary() == {"backend": "x", "timings": {"infer_s": 1.0}, "paths": {}, "epochs": 2}
    assert rec.metadata.refine.summary() == {"iterations": 2, "misfit": [0.5, 0.2, 0.1], "scale": 1.5,
                                             "seconds": 0.25}
    assert rec.metadata.refine.network_object.dtype == np.complex64
