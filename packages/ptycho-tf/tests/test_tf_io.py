"""Save/load in the core bundle, foreign bundles, and canonical weight export/import (conventions s6)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import BundleError
from ptycho_tf import io
from ptycho_tf.infer import infer_model, predict_patches


@pytest.fixture(scope="module")
def handle(grouped64_g2):
    """A gridsize-2 model with a set probe and a non-default intensity scale (nfs=1)."""
    tc = TrainingConfig(model=ModelConfig(N=64, gridsize=2, n_filters_scale=1), backend="tensorflow", seed=5,
                        probe_trainable=True)
    h = io.build_handle(tc.model, tc)
    h.native.physics.set_probe(np.full((64, 64), 0.1 + 0.2j, np.complex64))
    h.native.physics.intensity_scale.assign(123.5)
    return h


def _infer(h, data):
    return infer_model(h, data, InferenceConfig(model=h.model_config, backend="tensorflow", batch_size=5))


def test_export_names_shapes_and_layout(handle):
    w = io.export_weights(handle)
    nfs1 = 32
    assert w["encoder.0.conv1.kernel"].shape == (3, 3, 4, nfs1)  # HWIO, C = 4 input channels
    assert w["amp.out.kernel"].shape == (3, 3, nfs1 - 4, 4)
    assert not any(".big." in k for k in w)  # gridsize 2: no probe_big branch (physics.md s4)
    assert w["intensity_scale"].shape == () and float(w["intensity_scale"]) == 123.5
    assert w["probe.real"].shape == (64, 64) and np.allclose(w["probe.imag"], 0.2)
    assert all(v.dtype == np.float32 for v in w.values())


def test_export_import_export_is_bit_identical(handle):
    first = io.export_weights(handle)
    again = io.export_weights(io.import_weights(handle.model_config, handle.training_config, first))
    assert first.keys() == again.keys()
    for name in first:
        assert np.array_equal(first[name], again[name]), name


def test_import_rejects_missing_wrong_and_extra_names(handle):
    w = io.export_weights(handle)
    mc, tc = handle.model_config, handle.training_config
    with pytest.raises(BundleError, match="missing 'amp.out.bias'"):
        io.import_weights(mc, tc, {k: v for k, v in w.items() if k != "amp.out.bias"})
    with pytest.raises(BundleError, match="'probe.real' has shape"):
        io.import_weights(mc, tc, {**w, "probe.real": np.zeros((32, 32), np.float32)})
    with pytest.raises(BundleError, match="unexpected names"):
        io.import_weights(mc, tc, {**w, "amp.up.conv1.kernel": np.zeros((3, 3, 1, 1), np.float32)})
    with pytest.raises(BundleError, match=r"unexpected names \['amp.big.out.bias'\].*gridsize=2.*branch built: False"):
        io.import_weights(mc, tc, {**w, "amp.big.out.bias": np.zeros((4,), np.float32)})


def test_save_load_gives_identical_predictions(handle, grouped64_g2, tmp_path):
    files = io.save_model(handle, tmp_path)
    assert files == ["model.weights.h5"] and (tmp_path / "model.weights.h5").is_file()
    loaded = io.load_model(tmp_path, {"backend": "tensorflow"}, handle.model_config, handle.training_config)
    a, b = _infer(handle, grouped64_g2), _infer(loaded, grouped64_g2)
    assert np.array_equal(a.patches, b.patches)
    assert float(io.export_weights(loaded)["intensity_scale"]) == 123.5


def test_load_with_other_trainability_flags(handle, tmp_path):
    io.save_model(handle, tmp_path)
    loaded = io.load_model(tmp_path, {"backend": "tensorflow"}, handle.model_config, None)
    a, b = io.export_weights(handle), io.export_weights(loaded)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_bundle_round_trip_through_core(handle, grouped64_g2, tmp_path):
    from ptycho_core.bundle import load_bundle, read_manifest, save_bundle

    path = save_bundle(handle, tmp_path / "bundle.zip")
    manifest = read_manifest(path)
    assert manifest["backend"] == "tensorflow" and manifest["weights"] == ["model.weights.h5"]
    loaded = load_bundle(path)
    assert loaded.backend == "tensorflow"
    assert np.array_equal(_infer(handle, grouped64_g2).patches, _infer(loaded, grouped64_g2).patches)


def test_pytorch_bundle_is_a_clear_error(handle, tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"not for us")
    with pytest.raises(BundleError, match=r"written by backend 'pytorch' \(model.ckpt\).*model.weights.h5.*convert"):
        io.load_model(tmp_path, {"backend": "pytorch"}, handle.model_config, None)
    with pytest.raises(BundleError, match="backend 'pytorch'"):
        io.load_model(tmp_path, {"backend": "tensorflow"}, handle.model_config, None)


def test_weights_of_another_architecture_are_a_bundle_error(handle, tmp_path):
    io.save_model(handle, tmp_path)
    other = ModelConfig(N=64, gridsize=1, n_filters_scale=1)
    with pytest.raises(BundleError, match="do not fit"):
        io.load_model(tmp_path, {"backend": "tensorflow"}, other, None)


def test_weights_file_holds_arrays_only(handle, tmp_path):
    import h5py

    io.save_model(handle, tmp_path)
    kinds = set()
    with h5py.File(tmp_path / "model.weights.h5", "r") as f:
        f.visititems(lambda name, obj: kinds.add(type(obj).__name__))
        for obj in [f[n] for n in _datasets(f)]:
            assert obj.dtype.kind in "fiu", obj.name
    assert kinds <= {"Group", "Dataset"}
    assert json.dumps(sorted(kinds))


def _datasets(f) -> list[str]:
    import h5py

    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def test_groups_of_another_gridsize_are_refused_before_inference(handle, grouped64):
    from ptycho_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"groups of 1 patterns of 64 x 64 do not fit the model .*gridsize = 2"):
        _infer(handle, grouped64)


@pytest.fixture(scope="module", params=[True, False], ids=["pad_object", "no_pad_object"])
def wide_handle(request):
    """A gridsize-2 model with the whole-patch merge window (object_window 1.0), a set probe and scale."""
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1, object_window=1.0, pad_object=request.param)
    tc = TrainingConfig(model=mc, backend="tensorflow", seed=11, probe_trainable=True)
    h = io.build_handle(mc, tc)
    h.native.physics.set_probe(np.full((64, 64), 0.3 - 0.1j, np.complex64))
    h.native.physics.intensity_scale.assign(42.0)
    return h


def test_wide_window_export_import_reproduces_the_output(wide_handle, grouped64_g2):
    mc = wide_handle.model_config
    w = io.export_weights(wide_handle)
    big = {f"{head}.big.{part}.{kind}" for head in ("amp", "phase") for part in ("conv1", "conv2", "out")
           for kind in ("kernel", "bias")}
    # the outer branch is built (and exported) with pad_object; without it one head predicts the whole patch
    assert (big <= set(w)) == mc.pad_object and bool(big & set(w)) == mc.pad_object
    imported = io.import_weights(mc, wide_handle.training_config, w)
    again = io.export_weights(imported)
    assert w.keys() == again.keys() and all(np.array_equal(w[k], again[k]) for k in w)
    a, b = _infer(wide_handle, grouped64_g2), _infer(imported, grouped64_g2)
    assert np.array_equal(a.patches, b.patches)
    # the branch's weights do not fit a model built for the N/2 window (which has no branch)
    narrow = ModelConfig(N=64, gridsize=2, n_filters_scale=1, pad_object=mc.pad_object)
    if mc.pad_object:
        with pytest.raises(BundleError, match=r"unexpected names .*amp\.big\..*object_window=0\.5.*built: False"):
            io.import_weights(narrow, None, w)


def test_wide_window_merged_inference_uses_the_window(wide_handle, grouped64_g2):
    from ptycho_core import reference

    data = grouped64_g2
    got = predict_patches(wide_handle.native, data.X, 5, data.offsets)[..., 0]
    patches = predict_patches(wide_handle.native, data.X, 5)
    _, want = reference.merge_patches(patches, data.offsets, 2, window=64)
    assert float(np.max(np.abs(got - want)) / np.max(np.abs(want))) < 1e-5
    _, narrow = reference.merge_patches(patches, data.offsets, 2)
    assert float(np.max(np.abs(got - narrow))) > 1e-3


def test_wide_window_bundle_round_trips_object_window(wide_handle, grouped64_g2, tmp_path):
    from ptycho_core.bundle import load_bundle, save_bundle

    path = save_bundle(wide_handle, tmp_path / "bundle.zip")
    loaded = load_bundle(path)
    assert loaded.model_config.object_window == 1.0 and loaded.model_config.window_side == 64
    assert loaded.model_config == wide_handle.model_config
    assert loaded.native.physics.window == 64
    assert np.array_equal(_infer(wide_handle, grouped64_g2).patches, _infer(loaded, grouped64_g2).patches)
