"""Fixture generator: stratified selection, byte-identical regeneration, sidecar and the CLI."""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pytest

from ptycho_core.contracts import Dataset
from ptycho_core.errors import DataError
from ptycho_data import __version__, cli_fixture
from ptycho_data.fixtures import make_fixture, sidecar_path, stratified_indices
from ptycho_data.lazy import save_lazy_dataset
from ptycho_data.npz import load_dataset, save_dataset

N = 64


def grid_dataset(side: int = 10, seed: int = 0) -> Dataset:
    """A raster scan of side x side positions, 5 px apart, with random patterns."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:side, 0:side] * 5.0 + 40.0
    n = side * side
    return Dataset(
        diffraction=rng.random((n, N, N), dtype=np.float32),
        xcoords=xs.ravel() + rng.uniform(-0.5, 0.5, n),
        ycoords=ys.ravel() + rng.uniform(-0.5, 0.5, n),
        probe=np.exp(1j * rng.random((N, N))).astype(np.complex64),
        object=np.ones((140, 140), np.complex64),
    )


@pytest.fixture
def source(tmp_path):
    ds = grid_dataset()
    return ds, save_dataset(ds, tmp_path / "source.npz")


def test_fixture_contents_and_sidecar(source, tmp_path):
    ds, src = source
    out = make_fixture(src, tmp_path / "fix.npz", 16, seed=3)
    fixture = load_dataset(out)
    side = json.loads(sidecar_path(out).read_text())
    assert sidecar_path(out).name == "fix.npz.json"
    idx = np.array(side["indices"])
    assert len(idx) == 16 == fixture.n and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(fixture.diffraction, ds.diffraction[idx])
    np.testing.assert_array_equal(fixture.xcoords, ds.xcoords[idx])
    np.testing.assert_array_equal(fixture.probe, ds.probe)
    np.testing.assert_array_equal(fixture.object, ds.object)
    assert fixture.diffraction.dtype == np.float32 and fixture.xcoords.dtype == np.float64
    assert side["source"] == str(src)
    assert side["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert side["output_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (side["seed"], side["n_positions"], side["n_source"]) == (3, 16, 100)
    assert side["package_version"] == __version__ and side["format"] == "ptycho-fixture"


def test_regeneration_is_byte_identical(source, tmp_path):
    _, src = source
    first = make_fixture(src, tmp_path / "a.npz", 25, seed=1).read_bytes()
    first_side = sidecar_path(tmp_path / "a.npz").read_text()
    second = make_fixture(src, tmp_path / "a.npz", 25, seed=1).read_bytes()
    assert first == second
    assert sidecar_path(tmp_path / "a.npz").read_text() == first_side
    other_name = make_fixture(src, tmp_path / "b.npz", 25, seed=1).read_bytes()
    assert other_name == first
    different_seed = make_fixture(src, tmp_path / "c.npz", 25, seed=2).read_bytes()
    assert different_seed != first


def test_bytes_do_not_depend_on_the_clock(source, tmp_path, monkeypatch):
    import time

    _, src = source
    today = make_fixture(src, tmp_path / "t1.npz", 9).read_bytes()
    later = time.time() + 5 * 365 * 86400 + 12345
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "localtime", lambda secs=None: time.gmtime(later if secs is None else secs))
    assert make_fixture(src, tmp_path / "t2.npz", 9).read_bytes() == today


def test_selection_covers_the_grid():
    ds = grid_dataset(side=12)
    idx = stratified_indices(ds.positions, 16, seed=0)
    pos = ds.positions[idx]
    lo, span = ds.positions.min(axis=0), np.ptp(ds.positions, axis=0)
    cells = np.clip(np.floor((pos - lo) / span * 4).astype(int), 0, 3)
    assert len({(int(a), int(b)) for a, b in cells}) == 16  # one position in every cell of the 4 x 4 grid
    np.testing.assert_array_equal(idx, stratified_indices(ds.positions, 16, seed=0))
    assert not np.array_equal(idx, stratified_indices(ds.positions, 16, seed=7))


def test_selection_fills_the_rest_and_handles_a_line():
    line = np.stack([np.linspace(0, 50, 30), np.zeros(30)], axis=1)
    idx = stratified_indices(line, 10, seed=0)
    assert len(np.unique(idx)) == 10
    assert np.array_equal(stratified_indices(line, 30, seed=4), np.arange(30))


@pytest.mark.parametrize("bad", [0, 101, -3, 2.5])
def test_bad_n_positions(source, tmp_path, bad):
    _, src = source
    with pytest.raises(DataError, match=r"source.npz: n_positions: expected an integer in \[1, 100\]"):
        make_fixture(src, tmp_path / "f.npz", bad)
    assert not (tmp_path / "f.npz").exists()


def test_bad_source(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        make_fixture(tmp_path / "absent.npz", tmp_path / "f.npz", 4)
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(DataError, match="junk.npz: not a valid NPZ"):
        make_fixture(tmp_path / "junk.npz", tmp_path / "f.npz", 4)


def test_output_must_differ_from_source(source):
    _, src = source
    with pytest.raises(DataError, match="must differ"):
        make_fixture(src, src, 4)


def test_fixture_from_lazy_directory(tmp_path):
    ds = grid_dataset(side=8)
    src = save_lazy_dataset(ds, tmp_path / "lazy")
    out = make_fixture(src, tmp_path / "fix.npz", 9, seed=0)
    side = json.loads(sidecar_path(out).read_text())
    fixture = load_dataset(out)
    np.testing.assert_array_equal(fixture.diffraction, ds.diffraction[side["indices"]])
    assert len(side["source_sha256"]) == 64 and side["n_source"] == 64


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptycho")
    cli_fixture.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_handler(source, tmp_path, capsys):
    _, src = source
    args = _parser().parse_args(["fixture", str(src), str(tmp_path / "cli.npz"), "--n-positions", "9",
                                 "--seed", "2"])
    assert args.func(args) == 0
    assert "cli.npz" in capsys.readouterr().out
    assert (tmp_path / "cli.npz").read_bytes() == make_fixture(src, tmp_path / "api.npz", 9, seed=2).read_bytes()


def test_cli_defaults_and_help_for_every_option():
    parser = _parser()
    args = parser.parse_args(["fixture", "a.npz", "b.npz"])
    assert (args.n_positions, args.seed) == (64, 0)
    sub = parser._subparsers._group_actions[0].choices["fixture"]
    for action in sub._actions:
        assert action.help, f"option {action.dest} has no help"


def test_cli_errors_through_core_main(source, tmp_path, capsys):
    from ptycho_core.cli import main

    _, src = source
    assert main(["fixture", str(src), str(tmp_path / "x.npz"), "--n-positions", "0"]) == 2
    assert "--n-positions" in capsys.readouterr().err
    assert main(["fixture", str(tmp_path / "absent.npz"), str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ptycho: error:") and "absent.npz" in err and "\n" not in err


def test_canonical_fixture_is_committed_and_matches_its_sidecar():
    import json

    from ptycho_data.fixtures import canonical_fixture_path, sha256_path, sidecar_path

    path = canonical_fixture_path()
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["output_sha256"] == sha256_path(path)
    assert path.stat().st_size < 1_000_000
    ds = load_dataset(path)
    assert ds.diffraction.shape == (64, 64, 64)
    assert ds.object is not None


def test_canonical_fixture_regenerates(tmp_path):
    """The documented two commands give the committed fixture's arrays again."""
    from ptycho_data.fixtures import CANONICAL_FIXTURE, CANONICAL_SIMULATION, canonical_fixture_path
    from ptycho_data.simulate import SimulationConfig, simulate_to_npz

    source = simulate_to_npz(SimulationConfig(**CANONICAL_SIMULATION), tmp_path / "canonical_source.npz",
                             progress=False)
    out = make_fixture(source, tmp_path / "canonical_fixture.npz", **CANONICAL_FIXTURE)
    with np.load(out) as new, np.load(canonical_fixture_path()) as committed:
        assert sorted(new.files) == sorted(committed.files)
        for key in new.files:
            np.testing.assert_array_equal(new[key], committed[key], err_msg=key)
