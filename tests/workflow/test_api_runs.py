"""ptycho.train / ptycho.reconstruct end to end (issue 19 item 6): nothing written without output_dir.

With the framework-free dummy backend; one test also with the real PyTorch backend (skipped
without it), whose Lightning trainer is what would leave logs or checkpoints behind.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import ptycho
from ptycho_core.contracts import Reconstruction, TrainResult
from ptycho_core.errors import OutputExistsError
from ptycho_data.simulate import SimulationConfig, simulate_dataset


@pytest.fixture(scope="module")
def scan():
    data = simulate_dataset(SimulationConfig(N=64, n_positions=36, nphotons=1e6, seed=1), progress=False)
    return data, np.stack([data.xcoords, data.ycoords], axis=1)


def _listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_train_and_reconstruct_write_nothing_without_output_dir(installed_dummy, scan, tmp_path, monkeypatch):
    data, positions = scan
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    result = ptycho.train(data.diffraction, positions, data.probe, backend="dummy", nepochs=2, progress=False)
    assert isinstance(result, TrainResult) and result.checkpoint_dir is None and result.epochs == 2
    rec = ptycho.reconstruct(data.diffraction, positions, data.probe, model=result, ground_truth=data.object,
                             refine=2, progress=False)
    assert isinstance(rec, Reconstruction) and rec.object.shape == data.object.shape
    assert {"amplitude", "phase", "network"} <= set(rec.metadata.metrics)
    assert rec.metadata.refine.iterations == 2 and rec.metadata.paths == {}
    again = ptycho.reconstruct(data.diffraction ** 2, positions, data.probe, model=result.model, intensities=True,
                               progress=False)  # counts: the same object
    plain = ptycho.reconstruct(data.diffraction, positions, data.probe, model=result.model, progress=False)
    np.testing.assert_allclose(again.object, plain.object, rtol=1e-4, atol=1e-5)
    assert _listing(work) == []


def test_output_dir_writes_the_usual_files(installed_dummy, scan, tmp_path, monkeypatch):
    data, positions = scan
    monkeypatch.chdir(tmp_path)
    ptycho.train(data.diffraction, positions, data.probe, backend="dummy", nepochs=1, output_dir="run",
                 progress=False, batch_size=8, gridsize=1)
    assert (tmp_path / "run" / "model" / "manifest.json").is_file()
    with pytest.raises(OutputExistsError, match="model: already exists"):
        ptycho.train(data.diffraction, positions, data.probe, backend="dummy", nepochs=1, output_dir="run")
    rec = ptycho.reconstruct(data.diffraction, positions, data.probe, model="run/model", ground_truth=data.object,
                             pixel_size_m=1e-8, output_dir="result", progress=False)
    out = tmp_path / "result"
    assert {"reconstruction.npz", "amplitude.png", "phase.png", "summary.json", "metrics.json",
            "comparison.png"} <= set(_listing(out))
    assert rec.metadata.paths["comparison_png"] == str(Path("result") / "comparison.png")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["command"] == ["ptycho.reconstruct(...)"]
    with pytest.raises(OutputExistsError):
        ptycho.reconstruct(data.diffraction, positions, data.probe, model="run/model", output_dir="result")
    ptycho.reconstruct(data.diffraction, positions, data.probe, model="run/model", output_dir="result",
                       overwrite=True, progress=False)


def test_a_model_of_another_size_is_refused(installed_dummy, scan):
    data, positions = scan
    result = ptycho.train(data.diffraction, positions, data.probe, backend="dummy", nepochs=1, progress=False)
    big = np.ones((4, 128, 128), np.float32)
    with pytest.raises(ptycho.api.DataError, match="the model takes patterns of N = 64, got N = 128"):
        ptycho.reconstruct(big, positions[:4], np.ones((128, 128), complex), model=result)


@pytest.mark.skipif(importlib.util.find_spec("ptycho_torch") is None, reason="needs the pytorch backend")
def test_pytorch_run_leaves_nothing_in_the_working_directory(scan, tmp_path, monkeypatch, capfd):
    data, positions = scan
    monkeypatch.chdir(tmp_path)
    result = ptycho.train(data.diffraction, positions, data.probe, backend="pytorch", nepochs=1, n_filters_scale=1,
                          progress=False)
    rec = ptycho.reconstruct(data.diffraction, positions, data.probe, model=result, progress=False)
    assert np.isfinite(rec.object).all()
    assert _listing(tmp_path) == []
    err = capfd.readouterr().err
    assert "Tip:" not in err and "GPU available" not in err  # framework chatter held back unless verbose=True
