"""Training, resuming and bad input of the ``numpy-template`` backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptycho_ci import conformance_data as cdata
from ptycho_core import backends, bundle, reference
from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.errors import BundleError, ConfigError

BACKEND_ID = "numpy-template"


@pytest.fixture(scope="module")
def backend():
    return backends.get(BACKEND_ID)


@pytest.fixture(scope="module")
def model_config():
    # gridsize 1: no merge in the physics, so the finite-difference training stays fast
    return ModelConfig(N=64, gridsize=1)


@pytest.fixture(scope="module")
def grouped(model_config):
    return cdata.synthetic_grouped(model_config, n_groups=8, seed=3)


def _config(model_config, tmp_path, **kw):
    base = {"model": model_config, "nepochs": 6, "batch_size": 4, "learning_rate": 0.05, "seed": 1, "nphotons": 1e9,
            "backend": BACKEND_ID, "accelerator": "cpu", "output_dir": tmp_path}
    return TrainingConfig(**{**base, **kw})


def _true_loss(model_config, config, grouped):
    """The loss of the ground-truth patches: the best any model can do on noise-free data."""
    s0 = reference.physics_scale(config.nphotons, model_config.N)
    probe_n = reference.normalize_probe(grouped.probe, model_config.probe_scale)
    ref = reference.physics_forward(grouped.Y, grouped.offsets, probe_n, gridsize=model_config.gridsize,
                                    object_big=model_config.object_big, scale=s0)
    return reference.total_loss(ref["lam"], grouped.X, s0)


def test_loss_decreases(backend, model_config, grouped, tmp_path):
    config = _config(model_config, tmp_path)
    untrained = backend.build_model(model_config, config)
    result = backend.train(untrained, grouped, config)
    loss = np.asarray(result.history["loss"])
    assert loss.shape == (config.nepochs,) and np.isfinite(loss).all()
    before = backend.forward(untrained, grouped, config).loss
    after = backend.forward(result.model, grouped, config).loss
    best = _true_loss(model_config, config, grouped)
    assert best < after < before
    # training closes more than half of the gap between the untrained model and the ground truth
    assert (before - after) > 0.5 * (before - best), (before, after, best)
    assert loss[-1] < loss[0]
    assert result.epochs == config.nepochs
    assert sorted(p.name for p in result.checkpoint_dir.iterdir()) == [
        *(f"epoch{e:03d}.npz" for e in range(1, config.nepochs + 1)), "last.npz"]
    # the model it started from is unchanged (training works on a copy)
    assert backend.forward(untrained, grouped, config).loss == before


def test_resume_continues_exactly(backend, model_config, grouped, tmp_path):
    straight = _config(model_config, tmp_path / "straight", nepochs=4)
    full = backend.train(backend.build_model(model_config, straight), grouped, straight)
    first = _config(model_config, tmp_path / "resumed", nepochs=2)
    backend.train(backend.build_model(model_config, first), grouped, first)
    again = _config(model_config, tmp_path / "resumed", nepochs=4)
    # a checkpoints folder means its last.npz (what a bare `ptycho train --resume` passes)
    resumed = backend.train(backend.build_model(model_config, again), grouped, again,
                            tmp_path / "resumed" / "checkpoints")
    assert resumed.epochs == 4
    np.testing.assert_array_equal(resumed.history["loss"], full.history["loss"])
    w_full, w_resumed = backend.export_weights(full.model), backend.export_weights(resumed.model)
    for name in w_full:
        np.testing.assert_array_equal(w_resumed[name], w_full[name], err_msg=name)


def test_trainable_intensity_scale_moves(backend, model_config, grouped, tmp_path):
    fixed = backend.train(backend.build_model(model_config), grouped,
                          _config(model_config, tmp_path / "a", nepochs=2, intensity_scale_trainable=False))
    free = backend.train(backend.build_model(model_config), grouped,
                         _config(model_config, tmp_path / "b", nepochs=2, intensity_scale_trainable=True))
    s0 = reference.physics_scale(1e9, model_config.N)
    assert fixed.history["intensity_scale"] == pytest.approx([s0, s0], rel=1e-6)
    assert abs(free.history["intensity_scale"][-1] - s0) > 1e-3 * s0


def test_bad_training_input(backend, model_config, grouped, tmp_path):
    config = _config(model_config, tmp_path, nepochs=1)
    model = backend.build_model(model_config, config)
    with pytest.raises(ConfigError, match="resume_from"):
        backend.train(model, grouped, config, tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="junk.npz"):
        backend.train(model, grouped, config, tmp_path / "junk.npz")
    with pytest.raises(ConfigError, match="probe_trainable"):
        backend.train(model, grouped, _config(model_config, tmp_path, probe_trainable=True))
    wide = cdata.synthetic_grouped(ModelConfig(N=64, gridsize=2), n_groups=2)
    with pytest.raises(ConfigError, match="gridsize"):
        backend.train(model, wide, config)
    with pytest.raises(ConfigError, match="TrainingConfig.model"):
        backend.train(model, grouped, _config(ModelConfig(N=64, gridsize=1, probe_scale=2.0), tmp_path))


def test_resume_from_another_model_config_is_refused(backend, model_config, grouped, tmp_path):
    config = _config(model_config, tmp_path, nepochs=1)
    backend.train(backend.build_model(model_config, config), grouped, config)
    other = ModelConfig(N=64, gridsize=1, probe_scale=2.0)
    other_config = _config(other, tmp_path, nepochs=2)
    with pytest.raises(ConfigError, match="model config"):
        backend.train(backend.build_model(other, other_config), grouped, other_config,
                      tmp_path / "checkpoints" / "last.npz")


def _bundle_dir(backend, model_config, tmp_path):
    path = bundle.save_bundle(backend.build_model(model_config), tmp_path / "bundle")
    return path, json.loads((path / "manifest.json").read_text())


def test_load_model_refuses_pickles_and_bad_weights(backend, model_config, tmp_path):
    path, manifest = _bundle_dir(backend, model_config, tmp_path)
    with np.load(path / "model.npz", allow_pickle=False) as npz:
        good = {k: npz[k] for k in npz.files}
    cases = {
        "pickled": {**good, "amp.offset": np.array([{"evil": 1}], dtype=object)},
        "missing": {k: v for k, v in good.items() if k != "phase.shape"},
        "shape": {**good, "probe.real": np.zeros((32, 32), dtype=np.float32)},
        "extra": {**good, "encoder.0.conv1.kernel": np.zeros((3, 3, 1, 8), dtype=np.float32)},
        "nan": {**good, "amp.shape": np.array([0.0, np.nan, 0.0], dtype=np.float32)},
    }
    expected = {"pickled": "without pickle", "missing": "phase.shape", "shape": "probe.real",
                "extra": "encoder.0.conv1.kernel", "nan": "amp.shape"}
    for case, arrays in cases.items():
        np.savez(path / "model.npz", **arrays)
        with pytest.raises(BundleError, match=expected[case]):
            backend.load_model(path, manifest, model_config)
    (path / "model.npz").unlink()
    with pytest.raises(BundleError, match="missing model.npz"):
        backend.load_model(path, manifest, model_config)


def test_import_weights_checks_names(backend, model_config):
    weights = backend.export_weights(backend.build_model(model_config))
    with pytest.raises(BundleError, match="CNN backend"):
        backend.import_weights(model_config, None, {**weights, "encoder.0.conv1.kernel": np.zeros((3, 3, 1, 8))})
    with pytest.raises(BundleError, match="amp.offset"):
        backend.import_weights(model_config, None, {k: v for k, v in weights.items() if k != "amp.offset"})
    with pytest.raises(BundleError, match=r"probe.real.*expected \(128, 128\)"):
        backend.import_weights(ModelConfig(N=128, gridsize=1), None, weights)
