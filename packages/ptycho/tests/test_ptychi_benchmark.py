"""The bridge from ``benchmarks/quality.py --amortised`` to pty-chi (issue 17 item 6), without pty-chi.

pty-chi runs in its own venv (``benchmarks/ptychi_env.py``), so CI never has it. What is tested here
is ours: the scan file quality.py writes, and the pure-NumPy conventions of
``benchmarks/ptychi_runner.py``, against a NumPy model of pty-chi 2.2.0's far-field forward model
(``PlanarPtychographyForwardModel``: patch pixel (r, c) at buffer pixel ``round(p) + o - (N - 1) / 2
+ (r, c)`` (``image_proc.extract_patches_integer``), ``psi = probe * patch``, intensity
``|torch.fft.fft2(psi)|**2`` unnormalised, measured data fft-shifted on load (``fft_shift=True``)).
The same check on pty-chi's own forward model is in docs/benchmarks.md (misfit at the Poisson floor).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ptycho_data.simulate import SimulationConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[3]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scan():
    """A small noiseless scan: integer raster positions, an asymmetric object (pictures)."""
    return simulate_dataset(SimulationConfig(n_positions=16, seed=3, noise=False, nphotons=1e6), progress=False)


def _ptychi_forward(buffer: np.ndarray, probe: np.ndarray, pos_y, pos_x, origin) -> np.ndarray:
    """NumPy model of pty-chi's far-field intensities (unshifted: zero frequency at [0, 0])."""
    runner = _script("ptychi_runner")
    N = probe.shape[-1]
    starts = runner.ptychi_patch_origin(np.stack([pos_y, pos_x], axis=1), origin, N)
    assert np.allclose(starts, np.round(starts))  # integer positions: no sub-pixel shift in pty-chi either
    patches = np.stack([buffer[int(r):int(r) + N, int(c):int(c) + N] for r, c in starts])
    return np.abs(np.fft.fft2(probe[0, 0] * patches)) ** 2


def test_quality_writes_what_the_runner_reads(scan, tmp_path):
    quality, runner = _script("quality"), _script("ptychi_runner")
    path = quality.write_ptychi_input(scan, tmp_path / "scan.npz")
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"diffraction", "xcoords", "ycoords", "probeGuess", "object_shape"}  # no ground truth
        assert z["diffraction"].dtype == np.float32 and z["probeGuess"].dtype == np.complex64
    read = runner.read_input(path)
    assert read["amplitudes"].shape == (16, 64, 64)
    np.testing.assert_array_equal(read["amplitudes"], scan.diffraction)
    np.testing.assert_array_equal(read["positions"], scan.positions)  # (x, y) pairs, object pixels
    np.testing.assert_array_equal(read["probe"], scan.probe)
    assert read["object_shape"] == scan.object.shape


def test_runner_conventions_reproduce_our_measurements(scan):
    """Our object, through the runner's positions, probe and intensities in pty-chi's forward model, gives
    our data back; one pixel off, or x and y swapped, it does not (the check can fail)."""
    runner = _script("ptychi_runner")
    m = runner.MARGIN
    H, W = scan.object.shape
    buffer = np.zeros(runner.buffer_shape((H, W)), np.complex64)
    buffer[m:m + H, m:m + W] = scan.object
    probe = runner.ptychi_probe(scan.probe)
    assert probe.shape == (1, 1, 64, 64)
    measured = np.fft.fftshift(runner.intensities(scan.diffraction), axes=(-2, -1))  # what fft_shift=True does
    pos_y, pos_x, origin = runner.ptychi_positions(scan.positions)

    def misfit(pos_y, pos_x, origin):
        y = _ptychi_forward(buffer, probe, pos_y, pos_x, origin)
        return np.sum((np.sqrt(y) - np.sqrt(measured)) ** 2) / np.sum(measured)

    assert misfit(pos_y, pos_x, origin) < 1e-9
    assert misfit(pos_y, pos_x, [o + 1 for o in origin]) > 1e-3
    assert misfit(pos_x, pos_y, origin) > 1e-3


def test_to_our_grid_crops_the_margin_back(scan):
    runner = _script("ptychi_runner")
    m = runner.MARGIN
    obj = scan.object
    buffer = np.zeros((1, *runner.buffer_shape(obj.shape)), np.complex64)
    buffer[0, m:m + obj.shape[0], m:m + obj.shape[1]] = obj
    np.testing.assert_array_equal(runner.to_our_grid(buffer, obj.shape), obj)  # (1, h, w) as pty-chi returns it
    np.testing.assert_array_equal(runner.to_our_grid(buffer[0], obj.shape), obj)
    with pytest.raises(ValueError, match="buffer"):
        runner.to_our_grid(buffer[0, 1:], obj.shape)
