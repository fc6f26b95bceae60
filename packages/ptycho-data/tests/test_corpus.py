"""The simulated pretraining corpus (issue 17 item 2): streamed to disk, seeded, byte-reproducible."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ptycho_core.corpus import CorpusConfig
from ptycho_core.errors import ConfigError, DataError
from ptycho_data.corpus import RECIPE_FILE, write_corpus
from ptycho_data.lazy import open_lazy_dataset
from ptycho_data.npz import save_dataset
from ptycho_data.simulate import SimulationConfig, make_probe, simulate_dataset

RECIPE = CorpusConfig(n_objects=4, n_positions=9, photon_levels=(1e6, 1e9), seed=7)


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_corpus(tmp_path):
    paths = write_corpus(RECIPE, 64, tmp_path / "a", progress=False)
    write_corpus(RECIPE, 64, tmp_path / "b", progress=False)
    first = _digest(tmp_path / "a")
    assert first == _digest(tmp_path / "b")
    assert len(first) > 4 * 5  # diffraction, coordinates, probe, object ... of every object, and the recipe
    write_corpus(CorpusConfig(n_objects=4, n_positions=9, photon_levels=(1e6, 1e9), seed=8), 64, tmp_path / "c",
                 progress=False)
    assert _digest(tmp_path / "c")["object_00000/diffraction.npy"] != first["object_00000/diffraction.npy"]
    assert [p.name for p in paths] == [f"object_{i:05d}" for i in range(4)]


def test_objects_follow_the_recipe(tmp_path):
    recipe = CorpusConfig(n_objects=6, n_positions=9, object_kinds=("images", "lines"), object_weights=(1.0, 3.0),
                          images=("camera", "moon"), photon_levels=(1e4, 1e8), noise=False, seed=1)
    paths = write_corpus(recipe, 64, tmp_path / "c", progress=False)
    record = json.loads((tmp_path / "c" / RECIPE_FILE).read_text())
    assert record["recipe"]["object_kinds"] == ["images", "lines"] and record["N"] == 64
    kinds = [o["kind"] for o in record["objects"]]
    assert set(kinds) <= {"images", "lines"}
    assert all(set(o.get("images", [])) <= {"camera", "moon"} for o in record["objects"])
    for path, obj in zip(paths, record["objects"]):
        ds = open_lazy_dataset(path)
        assert ds.n == 9 and ds.object is not None
        power = np.mean(np.sum(np.asarray(ds.diffraction, dtype=np.float64) ** 2, axis=(1, 2)))
        assert power == pytest.approx(obj["nphotons"], rel=1e-4)  # noise off: exactly the drawn photon level
        amp = np.abs(ds.object)
        assert amp.min() >= 0.5 - 1e-6 and amp.max() <= 1.0 + 1e-6


def test_probe_from_a_data_file(tmp_path):
    sim = SimulationConfig(n_positions=4, probe_kind="gaussian", seed=3)
    save_dataset(simulate_dataset(sim, progress=False), tmp_path / "beamline.npz")
    recipe = CorpusConfig(n_objects=2, n_positions=4, probe_from=tmp_path / "beamline.npz")
    paths = write_corpus(recipe, 64, tmp_path / "c", progress=False)
    probe = open_lazy_dataset(paths[0]).probe
    expected = make_probe(sim)
    scale = np.vdot(expected, probe).real / np.vdot(expected, expected).real
    np.testing.assert_allclose(probe, scale * expected, atol=1e-5 * np.abs(probe).max())
    default = open_lazy_dataset(write_corpus(CorpusConfig(n_objects=1, n_positions=4), 64, tmp_path / "d",
                                             progress=False)[0]).probe
    assert not np.allclose(np.abs(default) / np.abs(default).max(), np.abs(probe) / np.abs(probe).max(), atol=1e-2)
    with pytest.raises(ConfigError, match=r"beamline\.npz: probeGuess is 64 x 64, but the model's N is 128"):
        write_corpus(recipe, 128, tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()


def test_errors_leave_nothing_behind(tmp_path):
    with pytest.raises(ConfigError, match="CorpusConfig.images: unknown picture"):
        write_corpus(CorpusConfig(n_objects=1, n_positions=4, images=("nope",)), 64, tmp_path / "x", progress=False)
    write_corpus(CorpusConfig(n_objects=1, n_positions=4), 64, tmp_path / "y", progress=False)
    with pytest.raises(DataError, match="already exists"):
        write_corpus(CorpusConfig(n_objects=1, n_positions=4), 64, tmp_path / "y", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y"]
