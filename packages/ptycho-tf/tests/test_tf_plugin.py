"""The backend through the core facade (entry point ``ptycho.backends: tensorflow``) and conformance checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tf_testdata import make_grouped, tiny_config

from ptycho_core import backends, reference
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.contracts import ForwardOutput, InferenceResult, ModelHandle


@pytest.fixture(scope="module")
def backend():
    return backends.get("tensorflow")


def test_entry_point_lists_and_loads_the_backend(backend):
    entry = {e.id: e for e in backends.available()}["tensorflow"]
    assert entry.installed and entry.distribution == "ptycho-tf"
    info = backend.info
    assert info.id == "tensorflow" and info.framework == "tensorflow"
    assert "cpu" in info.devices and "keras" in info.framework_versions
    assert "model.weights.h5" in info.weight_format


def test_importing_the_plugin_and_generating_its_hooks_does_not_import_tensorflow():
    code = ("import sys, ptycho_tf; from ptycho_core.backend_base import OPERATIONS; "
            "from ptycho_tf.plugin import TensorFlowBackend; plugin = TensorFlowBackend.as_plugin(); "
            "assert all(hasattr(plugin, 'ptycho_' + op) for op in OPERATIONS), "
            "TensorFlowBackend.implemented_operations(); "
            "sys.exit(3 if any(m in sys.modules for m in ('tensorflow', 'keras')) else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_build_infer_and_positions(backend, grouped64_g2):
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
    model = backend.build_model(mc, None)
    assert isinstance(model, ModelHandle) and model.backend == "tensorflow"
    result = backend.infer(model, grouped64_g2, InferenceConfig(model=mc, backend="tensorflow", batch_size=3))
    assert isinstance(result, InferenceResult)
    B = grouped64_g2.n_groups
    # gridsize > 1: one merged group object per group, at the group centroid (physics.md s6)
    assert result.patches.shape == (B, 64, 64) and result.patches.dtype == np.complex64
    np.testing.assert_array_equal(result.positions, grouped64_g2.centroids)
    assert result.metadata["backend"] == "tensorflow"
    fwd = backend.forward(model, grouped64_g2, TrainingConfig(model=mc, backend="tensorflow"))
    merged = reference.merge_patches(fwd.patches, grouped64_g2.offsets, 2)[1]
    np.testing.assert_allclose(result.patches, merged, rtol=1e-4, atol=1e-5)


def test_infer_without_object_big_is_group_major(backend, grouped64_g2):
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1, object_big=False)
    model = backend.build_model(mc, None)
    result = backend.infer(model, grouped64_g2, InferenceConfig(model=mc, backend="tensorflow", batch_size=3))
    assert result.patches.shape == (grouped64_g2.n_groups * 4, 64, 64)
    np.testing.assert_array_equal(result.positions, grouped64_g2.positions.reshape(-1, 2))
    fwd = backend.forward(model, grouped64_g2, TrainingConfig(model=mc, backend="tensorflow"))
    np.testing.assert_array_equal(result.patches[4:8], np.moveaxis(fwd.patches[1], -1, 0))  # group-major


def test_forward_matches_the_reference_physics(backend, grouped64_g2):
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
    tc = TrainingConfig(model=mc, backend="tensorflow", nphotons=1e6, mae_weight=0.5)
    model = backend.build_model(mc, tc)
    out = backend.forward(model, grouped64_g2, tc)
    assert isinstance(out, ForwardOutput)
    probe_n = reference.normalize_probe(grouped64_g2.probe)
    s = float(model.native.physics.intensity_scale.numpy())
    ref = reference.physics_forward(out.patches, grouped64_g2.offsets, probe_n, gridsize=2, object_big=True, scale=s)
    peak = float(np.max(ref["amplitude"]))
    np.testing.assert_allclose(out.amplitude, ref["amplitude"], rtol=1e-5, atol=1e-5 * peak)
    s0 = reference.physics_scale(1e6, 64)
    want = reference.total_loss(out.amplitude.astype(np.float64) ** 2, grouped64_g2.X, s0, mae_weight=0.5)
    assert out.loss == pytest.approx(want, rel=1e-4)


def test_train_and_reassemble_through_the_facade(backend, tmp_path):
    data = make_grouped(n_groups=16, seed=7)
    cfg = tiny_config(tmp_path, nepochs=1)
    result = backend.train(backend.build_model(cfg.model, cfg), data, cfg)
    assert len(result.history["loss"]) == 1
    inf = backend.infer(result.model, data, InferenceConfig(model=cfg.model, backend="tensorflow"))
    shape, origin = reference.canvas_geometry(inf.positions, 20)
    ours = backend.reassemble(inf.patches, inf.positions, 20, shape, origin)
    ref = reference.reassemble(inf.patches, inf.positions, 20, shape, origin)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_export_import_through_the_facade(backend):
    mc = ModelConfig(N=64, n_filters_scale=1)
    model = backend.build_model(mc, None)
    weights = backend.export_weights(model)
    again = backend.export_weights(backend.import_weights(mc, None, weights))
    assert all(np.array_equal(weights[k], again[k]) for k in weights)
