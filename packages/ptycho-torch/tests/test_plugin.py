"""The plugin through the core facade: entry point, BackendInfo, operations, result layouts."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_core import backends
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.contracts import ForwardOutput, InferenceResult, ModelHandle


@pytest.fixture(scope="module")
def backend():
    return backends.get("pytorch")


def test_entry_point_is_listed_and_loads(backend):
    entries = {e.id: e for e in backends.available()}
    assert entries["pytorch"].distribution == "ptycho-torch"
    assert entries["pytorch"].installed
    info = backend.info
    assert info.id == "pytorch" and info.framework == "pytorch"
    assert {"torch", "lightning"} <= set(info.framework_versions)
    assert info.devices[0] == "cpu"
    assert "model.ckpt" in info.weight_format


def test_package_init_and_hook_generation_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, ptycho_torch; from ptycho_core.backend_base import OPERATIONS; "
            "from ptycho_torch.plugin import TorchBackend; plugin = TorchBackend.as_plugin(); "
            "assert all(hasattr(plugin, 'ptycho_' + op) for op in OPERATIONS), TorchBackend.implemented_operations(); "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_infer_stitches_merged_group_objects_at_the_centroids(backend, grouped64_g2):
    from ptycho_core import reference

    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
    model = backend.build_model(mc, None)
    assert isinstance(model, ModelHandle) and model.backend == "pytorch"
    result = backend.infer(model, grouped64_g2, InferenceConfig(model=mc, backend="pytorch", batch_size=5,
                                                                 accelerator="cpu"))
    assert isinstance(result, InferenceResult)
    B = grouped64_g2.n_groups
    assert result.patches.shape == (B, 64, 64) and result.patches.dtype == np.complex64
    assert result.metadata["backend"] == "pytorch"
    np.testing.assert_array_equal(result.positions, grouped64_g2.centroids)
    fwd = backend.forward(model, grouped64_g2, TrainingConfig(model=mc, backend="pytorch"))
    merged = reference.merge_patches(fwd.patches, grouped64_g2.offsets, 2)[1]
    np.testing.assert_allclose(result.patches, merged, rtol=1e-4, atol=1e-5)


def test_infer_without_object_big_is_group_major_and_positions_are_centroid_plus_offset(backend, grouped64_g2):
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1, object_big=False)
    model = backend.build_model(mc, None)
    result = backend.infer(model, grouped64_g2, InferenceConfig(model=mc, backend="pytorch", batch_size=5,
                                                                 accelerator="cpu"))
    B, C = grouped64_g2.n_groups, 4
    assert result.patches.shape == (B * C, 64, 64) and result.patches.dtype == np.complex64
    tc = TrainingConfig(model=mc, backend="pytorch")
    fwd = backend.forward(model, grouped64_g2, tc)
    for b, c in [(0, 0), (0, 3), (3, 1), (B - 1, 2)]:
        np.testing.assert_allclose(result.patches[b * C + c], fwd.patches[b, :, :, c], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.positions[b * C + c],
                                   grouped64_g2.centroids[b] + grouped64_g2.offsets[b, c])


def test_forward_output_layout_and_seeded_build(backend, grouped64):
    mc = ModelConfig(N=64, n_filters_scale=1)
    tc = TrainingConfig(model=mc, backend="pytorch", seed=7)
    a = backend.build_model(mc, tc)
    b = backend.build_model(mc, tc)
    fa = backend.forward(a, grouped64.batch(slice(0, 4)), tc)
    fb = backend.forward(b, grouped64.batch(slice(0, 4)), tc)
    assert isinstance(fa, ForwardOutput)
    assert fa.patches.shape == (4, 64, 64, 1) and fa.amplitude.shape == (4, 64, 64, 1)
    assert np.isfinite(fa.loss)
    np.testing.assert_array_equal(fa.patches, fb.patches)
    assert fa.loss == fb.loss


def test_facade_reassemble_uses_native_stitching(backend):
    rng = np.random.default_rng(0)
    patches = (rng.normal(size=(5, 64, 64)) + 0j).astype(np.complex64)
    out = backend.reassemble(patches, rng.uniform(20, 40, size=(5, 2)), 20, (64, 64), (0, 0))
    assert out.shape == (64, 64) and out.dtype == np.complex64


def test_export_import_through_the_facade(backend):
    mc = ModelConfig(N=64, n_filters_scale=1)
    model = backend.build_model(mc, None)
    weights = backend.export_weights(model)
    again = backend.export_weights(backend.import_weights(mc, None, weights))
    assert all(weights[k].tobytes() == again[k].tobytes() for k in weights)


def test_gpu_request_without_cuda_is_a_config_error(backend, grouped64):
    import torch

    from ptycho_core.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    mc = ModelConfig(N=64, n_filters_scale=1)
    model = backend.build_model(mc, None)
    with pytest.raises(ConfigError, match="'gpu' requested"):
        backend.infer(model, grouped64, InferenceConfig(model=mc, backend="pytorch", accelerator="gpu"))
