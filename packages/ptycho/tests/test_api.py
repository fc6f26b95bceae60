"""The notebook API (ptycho.reconstruct, ptycho.train) without a backend: lazy import, input checks, doctests.

Runs that need a backend are in tests/workflow/test_api_runs.py.
"""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest

import ptycho
from ptycho import api
from ptycho_core.errors import ConfigError, DataError

N = 64


def _arrays(n=4):
    return np.ones((n, N, N), np.float32), np.zeros((n, 2)), np.ones((N, N), np.complex64)


def test_import_ptycho_imports_neither_numpy_nor_a_framework():
    code = ("import sys, ptycho; assert callable(ptycho.__getattr__); "
            "bad = [m for m in ('numpy', 'torch', 'tensorflow', 'keras', 'ptycho.api') if m in sys.modules]; "
            "sys.exit(f'imported by `import ptycho`: {bad}' if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_package_exports_the_api_lazily():
    assert ptycho.reconstruct is api.reconstruct and ptycho.train is api.train
    assert {"reconstruct", "train"} <= set(dir(ptycho)) and {"reconstruct", "train"} <= set(ptycho.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ptycho.nope  # noqa: B018


@pytest.mark.parametrize(("change", "message"), [
    ({"diffraction": np.ones((N, N))}, r"diffraction: expected shape \(n, N, N\).*got \(64, 64\).*diffraction\[None\]"),
    ({"diffraction": np.ones((4, 60, 60))}, r"diffraction: expected square patterns of side N in \(64, 128, 256\)"),
    ({"diffraction": np.ones((4, N, N), complex)}, "diffraction: expected real, non-negative amplitudes"),
    ({"diffraction": -np.ones((4, N, N))}, "diffraction: amplitudes must be >= 0"),
    ({"diffraction": np.full((4, N, N), np.nan)}, "diffraction: contains NaN"),
    ({"positions": np.zeros((3, 2))}, r"positions: expected shape \(4, 2\), the scan centre \(x, y\).*got \(3, 2\)"),
    ({"positions": np.zeros((2, 4))}, r"positions: expected shape \(4, 2\).*transposed: pass positions.T"),
    ({"probe": np.ones((32, 32))}, r"probe: expected shape \(64, 64\)"),
])
@pytest.mark.parametrize("function", ["reconstruct", "train"])
def test_bad_inputs_name_the_argument_and_the_expected_shape(function, change, message):
    diffraction, positions, probe = _arrays()
    args = {"diffraction": diffraction, "positions": positions, "probe": probe, **change}
    kwargs = {"model": "no-such-bundle"} if function == "reconstruct" else {}
    with pytest.raises(DataError, match=message):
        getattr(ptycho, function)(args["diffraction"], args["positions"], args["probe"], **kwargs)


def test_intensities_are_square_rooted():
    diffraction, positions, probe = _arrays()
    ds = api.as_dataset(diffraction * 9.0, positions, probe, intensities=True)
    np.testing.assert_allclose(ds.diffraction, 3.0)
    with pytest.raises(DataError, match=r"intensities \(counts\) must be >= 0"):
        api.as_dataset(-diffraction, positions, probe, intensities=True)


def test_ground_truth_and_pixel_size_are_checked():
    diffraction, positions, probe = _arrays()
    with pytest.raises(DataError, match=r"ground_truth: expected a complex 2-D object"):
        api.as_dataset(diffraction, positions, probe, ground_truth=np.ones(10))
    with pytest.raises(ConfigError, match="pixel_size_m"):
        api.as_dataset(diffraction, positions, probe, pixel_size_m=-1.0)
    assert api.as_dataset(diffraction, positions, probe, pixel_size_m=1e-8).metadata["pixel_size_m"] == 1e-8


def test_unknown_settings_and_models_are_clear_errors():
    diffraction, positions, probe = _arrays()
    with pytest.raises(ConfigError, match=r"train: unknown setting 'epochs'; expected one of .*nepochs"):
        ptycho.train(diffraction, positions, probe, epochs=3)
    with pytest.raises(ConfigError, match=r"unknown setting 'N' \(N comes from the patterns\)"):
        ptycho.train(diffraction, positions, probe, N=128)
    with pytest.raises(ConfigError, match="unknown setting 'output_dir'"):  # it is an argument, not an override
        api._split_overrides({"output_dir": "x"}, (api.InferenceConfig,), "reconstruct")
    with pytest.raises(ConfigError, match="model: expected a model bundle path"):
        ptycho.reconstruct(diffraction, positions, probe, model=42)
    with pytest.raises(ConfigError, match="refine: expected a number of passes"):
        ptycho.reconstruct(diffraction, positions, probe, model="x", refine=-1)


def test_docstring_examples_run():
    results = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert results.failed == 0 and results.attempted >= 4
