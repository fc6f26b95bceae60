"""Simulation: forward-model consistency, reproducibility, geometry, config validation and the CLI."""

from __future__ import annotations

import argparse

import attrs
import numpy as np
import pytest

from ptycho_core import reference
from ptycho_core.errors import ConfigError
from ptycho_data.npz import load_dataset, save_dataset
from ptycho_data.simulate import SimulationConfig, simulate_dataset, simulate_to_npz
from ptycho_data.simulate_objects import disk_probe, gaussian_probe, make_object, scan_pattern

TINY = dict(n_positions=16, nphotons=1e6, seed=3)


def test_noiseless_patterns_are_reproduced_by_the_reference_forward_model(tmp_path):
    cfg = SimulationConfig(noise=False, scan="fermat", jitter=0.7, **TINY)
    path = save_dataset(simulate_dataset(cfg, progress=False), tmp_path / "sim.npz")
    ds = load_dataset(path)
    patches = reference.extract_patches(ds.object, ds.positions, ds.N)
    again = reference.diffract(patches * ds.probe)
    scale = float(ds.diffraction.max())
    np.testing.assert_allclose(again, ds.diffraction, rtol=2e-6, atol=2e-6 * scale)
    assert np.mean(np.sum(ds.diffraction.astype(np.float64) ** 2, axis=(1, 2))) == pytest.approx(1e6, rel=1e-5)


def test_noisy_amplitudes_are_square_roots_of_poisson_counts():
    clean = simulate_dataset(SimulationConfig(noise=False, **TINY), progress=False)
    noisy = simulate_dataset(SimulationConfig(noise=True, **TINY), progress=False)
    counts = noisy.diffraction.astype(np.float64) ** 2
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-2 * np.sqrt(counts.max()))
    assert counts.sum() / 16 == pytest.approx(1e6, rel=0.01)
    np.testing.assert_array_equal(noisy.object, clean.object)  # noise has its own random stream
    np.testing.assert_array_equal(noisy.xcoords, clean.xcoords)
    assert not np.array_equal(noisy.diffraction, clean.diffraction)


@pytest.mark.parametrize("kind", ["images", "lines", "grf"])
def test_seeded_runs_are_reproducible(kind):
    cfg = SimulationConfig(object_kind=kind, scan="random", jitter=0.5, **TINY)
    a, b = simulate_dataset(cfg, progress=False), simulate_dataset(cfg, progress=False)
    for key in ("diffraction", "xcoords", "ycoords", "probe", "object", "xcoords_start"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    c = simulate_dataset(attrs.evolve(cfg, seed=4), progress=False)
    assert not np.array_equal(a.diffraction, c.diffraction)
    assert not np.array_equal(a.xcoords, c.xcoords)


@pytest.mark.parametrize("scan", ["raster", "fermat", "random"])
def test_every_patch_lies_inside_the_object(scan):
    cfg = SimulationConfig(scan=scan, n_positions=40, jitter=2.0, noise=False, object_kind="grf", seed=1)
    ds = simulate_dataset(cfg, progress=False)
    h, w = ds.object.shape
    half = ds.N / 2
    assert ds.xcoords.min() - half >= 0 and ds.ycoords.min() - half >= 0
    assert ds.xcoords.max() + half <= w - 1 and ds.ycoords.max() + half <= h - 1
    assert not np.allclose(ds.xcoords, ds.xcoords_start)  # true (jittered) vs nominal positions
    assert np.std(ds.xcoords - ds.xcoords_start) == pytest.approx(2.0, rel=0.5)


def test_object_size_too_small_is_an_error_and_large_enough_is_centred():
    with pytest.raises(ConfigError, match="object_size.*at least"):
        simulate_dataset(SimulationConfig(object_size=70, **TINY), progress=False)
    ds = simulate_dataset(SimulationConfig(object_size=200, noise=False, **TINY), progress=False)
    assert ds.object.shape == (200, 200)
    assert ds.xcoords.min() + ds.xcoords.max() == pytest.approx(200, abs=1e-9)


def test_scan_patterns_have_the_requested_density():
    rng = np.random.default_rng(0)
    raster = scan_pattern("raster", 25, 10.0, rng)
    assert sorted(set(np.round(np.diff(np.unique(raster[:, 0])), 9))) == [10.0]
    fermat = scan_pattern("fermat", 400, 10.0, rng)
    nn = np.sort(np.hypot(*(fermat[:, None, :] - fermat[None, :, :]).transpose(2, 0, 1)), axis=1)[:, 1]
    assert 7.0 < np.median(nn) < 12.0
    rand = scan_pattern("random", 100, 10.0, rng)
    assert np.ptp(rand, axis=0) == pytest.approx([100.0, 100.0], rel=0.1)
    for pos in (raster, fermat, rand):
        np.testing.assert_allclose(pos.min(axis=0) + pos.max(axis=0), 0.0, atol=1e-9)


def test_objects_respect_amplitude_and_phase_ranges():
    rng = np.random.default_rng(0)
    for kind in ("images", "lines", "grf"):
        obj = make_object(kind, (60, 80), rng, amplitude_range=(0.2, 0.9), phase_range=(-1.0, 0.5))
        assert obj.shape == (60, 80) and obj.dtype == np.complex64
        amp, phase = np.abs(obj), np.angle(obj)
        assert amp.min() >= 0.2 - 1e-5 and amp.max() <= 0.9 + 1e-5
        assert phase.min() >= -1.0 - 1e-5 and phase.max() <= 0.5 + 1e-5
        assert np.ptp(amp) > 0.3 and np.ptp(phase) > 0.7


def test_probes_are_centred_and_the_disk_probe_has_a_defocus_phase():
    N = 64
    for probe in (disk_probe(N, 8.0, 6.0), gaussian_probe(N, 6.0)):
        power = np.abs(probe) ** 2
        rows, cols = np.mgrid[0:N, 0:N]
        assert (power * rows).sum() / power.sum() == pytest.approx(N / 2, abs=0.05)
        assert (power * cols).sum() / power.sum() == pytest.approx(N / 2, abs=0.05)
        assert np.abs(probe).max() == pytest.approx(1.0)
    focused, defocused = disk_probe(N, 8.0, 0.0), disk_probe(N, 8.0, 6.0)
    assert np.ptp(np.angle(defocused[28:36, 28:36])) > 0.5
    width = [np.sum(np.abs(p) ** 2 > 0.1 * np.abs(p).max() ** 2) for p in (focused, defocused)]
    assert width[1] > 2 * width[0]


def test_config_validators_name_the_field():
    for field, value in [("nphotons", -1.0), ("N", 100), ("scan", "spiral"), ("n_positions", 0),
                         ("amplitude_range", (1.0, 0.5)), ("amplitude_range", (0.0, 0.0)),
                         ("amplitude_range", (-0.1, 1.0)), ("phase_range", (0.0, float("nan"))),
                         ("noise", "yes"), ("jitter", -0.1), ("amplitude_image", "nope")]:
        with pytest.raises(ConfigError, match=f"SimulationConfig.{field}"):
            SimulationConfig(**{field: value})
    assert SimulationConfig(phase_range=(-1.0, 0.0)).phase_range == (-1.0, 0.0)
    assert SimulationConfig(amplitude_range=[0, 1]).amplitude_range == (0.0, 1.0)


def test_config_from_dict_round_trip_and_unknown_keys():
    cfg = SimulationConfig(scan="fermat", amplitude_range=(0.3, 0.8), step=9.0)
    assert SimulationConfig.from_dict(cfg.to_dict()) == cfg
    assert SimulationConfig.from_dict({"simulation": {"nphotons": 1e4}}).nphotons == 1e4
    with pytest.raises(ConfigError, match="nphoton.*did you mean 'nphotons'"):
        SimulationConfig.from_dict({"nphoton": 10})


def test_progress_bar_is_shown_only_when_asked(capsys):
    simulate_dataset(SimulationConfig(**TINY), progress=True)
    assert "simulate" in capsys.readouterr().err
    simulate_dataset(SimulationConfig(**TINY), progress=False)
    assert capsys.readouterr().err == ""


def test_simulate_to_npz_writes_a_loadable_file(tmp_path):
    path = simulate_to_npz(SimulationConfig(**TINY), tmp_path / "out.npz", progress=False)
    ds = load_dataset(path)
    assert ds.n == 16 and ds.object is not None and ds.probe.shape == (64, 64)


def _parser() -> argparse.ArgumentParser:
    from ptycho_data.cli_simulate import register

    parser = argparse.ArgumentParser(prog="ptycho")
    register(parser.add_subparsers())
    return parser


def test_cli_handler_writes_npz_and_preview(tmp_path, capsys):
    config = tmp_path / "sim.toml"
    config.write_text('[simulation]\nscan = "fermat"\nnphotons = 1e5\nseed = 7\n')
    out = tmp_path / "data" / "sim.npz"
    args = _parser().parse_args(["simulate", "--output", str(out), "--config", str(config), "--n-positions", "9",
                                 "--object", "lines", "--probe", "gaussian", "--amplitude-range", "0.4", "0.9"])
    assert args.func(args) == 0
    ds = load_dataset(out)
    assert ds.n == 9
    assert np.abs(ds.object).min() >= 0.4 - 1e-5
    expected = simulate_dataset(SimulationConfig(scan="fermat", nphotons=1e5, seed=7, n_positions=9,
                                                 object_kind="lines", probe_kind="gaussian",
                                                 amplitude_range=(0.4, 0.9)), progress=False)
    np.testing.assert_array_equal(ds.diffraction, expected.diffraction)
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_cli_bad_value_is_a_config_error(tmp_path):
    args = _parser().parse_args(["simulate", "-o", str(tmp_path / "x.npz"), "--nphotons", "-5", "--no-preview"])
    with pytest.raises(ConfigError, match="nphotons"):
        args.func(args)


def test_ptycho_simulate_help_lists_every_option(capsys):
    from ptycho_core.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    text = capsys.readouterr().out
    for field in attrs.fields(SimulationConfig):
        assert f"--{field.name.replace('_', '-')}" in text
    for flag in ("--output", "--config", "--preview", "--no-preview", "--progress", "--object", "--probe"):
        assert flag in text


def test_probe_window_zeroes_the_probe_outside_the_central_window_only():
    full = simulate_dataset(SimulationConfig(noise=False, **TINY), progress=False).probe
    windowed = simulate_dataset(SimulationConfig(noise=False, probe_window=True, **TINY), progress=False).probe
    N, lo, hi = full.shape[0], full.shape[0] // 4, 3 * full.shape[0] // 4
    outside = np.ones((N, N), dtype=bool)
    outside[lo:hi, lo:hi] = False
    assert not np.any(windowed[outside]) and np.all(np.abs(full[outside]) > 0)
    # inside the window the two probes differ only by the photon scaling (a positive factor)
    ratio = windowed[lo:hi, lo:hi] / full[lo:hi, lo:hi]
    np.testing.assert_allclose(ratio, np.full(ratio.shape, ratio.real.mean()), rtol=1e-5)


@pytest.mark.parametrize(("window", "object_window"), [(True, 0.5), (False, 0.5), (False, 1.0)])
def test_true_object_fits_the_training_physics_exactly_only_inside_its_support(window, object_window):
    """The physics layer of training (merge of the groups' central windows, physics.md s5) reproduces the
    noiseless data from the true patches, up to the one scale of the normalisations, when the probe lies in
    the window; the default probe's tails outside the N/2 window are a misfit no object can remove, unless the
    merge keeps the whole patch (``ModelConfig.object_window`` 1.0)."""
    from ptycho_data.grouping import group_dataset

    ds = simulate_dataset(SimulationConfig(noise=False, n_positions=64, probe_window=window, seed=5), progress=False)
    g = group_dataset(ds, gridsize=2, seed=1)
    probe_n = reference.normalize_probe(ds.probe)
    side = int(object_window * ds.probe.shape[0])
    lam = reference.physics_forward(g.Y, g.offsets, probe_n, gridsize=2, object_big=True, scale=1.0,
                                    window=side)["lam"]
    k = np.asarray(g.X, dtype=np.float64) ** 2
    amp = np.sqrt(lam.astype(np.float64))
    c = float(np.sum(amp * np.sqrt(k)) / np.sum(amp**2))  # the best single scale
    misfit = reference.amplitude_misfit(c * c * lam.astype(np.float64), k)
    # window or whole patch: float32 rounding only, below the Poisson noise of a pattern of 1e9 photons (misfit
    # ~ N^2 / 4e9); N/2 window and the default probe: the ~0.8 % of the probe's energy outside the window
    assert misfit < 1e-6 if window or object_window == 1.0 else misfit > 1e-3
