"""Save/load in the core bundle, foreign bundles, canonical weight export/import."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch_testdata import tiny_training_config

from ptycho_core.bundle import load_bundle, read_manifest, save_bundle
from ptycho_core.config import InferenceConfig, ModelConfig
from ptycho_core.errors import BundleError
from ptycho_torch import io
from ptycho_torch.plugin import TorchBackend
from ptycho_torch.train import train_model

plugin = TorchBackend.as_plugin()  # the generated hook implementations, called directly


@pytest.fixture(scope="module")
def trained(tmp_path_factory, grouped64):
    config = tiny_training_config(tmp_path_factory.mktemp("io"), nepochs=1)
    model = plugin.ptycho_build_model(config.model, config)
    return train_model(model, grouped64, config, enable_progress_bar=False).model


def _infer(model, data):
    return plugin.ptycho_infer(model, data, InferenceConfig(model=model.model_config, backend="pytorch",
                                                            accelerator="cpu", batch_size=16))


def test_direct_save_load_gives_identical_predictions(tmp_path, trained, grouped64):
    names = io.save_model(trained, tmp_path)
    assert names == ["model.ckpt"]
    loaded = io.load_model(tmp_path, {"backend": "pytorch"}, trained.model_config, trained.training_config)
    np.testing.assert_array_equal(_infer(trained, grouped64).patches, _infer(loaded, grouped64).patches)


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_bundle_round_trip_is_bit_identical(tmp_path, trained, grouped64, suffix):
    path = save_bundle(trained, tmp_path / f"bundle{suffix}")
    manifest = read_manifest(path)
    assert manifest["backend"] == "pytorch"
    assert manifest["weights"] == ["model.ckpt"]
    loaded = load_bundle(path)
    assert loaded.backend == "pytorch"
    assert loaded.training_config == trained.training_config
    np.testing.assert_array_equal(_infer(trained, grouped64).patches, _infer(loaded, grouped64).patches)
    if not suffix:
        ckpt = torch.load(path / "model.ckpt", weights_only=True)
        assert set(ckpt["hyper_parameters"]) == {"model_config", "training_config"}


def test_a_bundle_keeps_the_object_window(tmp_path, grouped64_g2):
    mc = ModelConfig(N=64, gridsize=2, n_filters_scale=1, object_window=1.0)
    model = plugin.ptycho_build_model(mc, None)
    loaded = load_bundle(save_bundle(model, tmp_path / "b"))
    assert loaded.model_config.object_window == 1.0 and loaded.model_config.uses_probe_big
    assert "amp.big.out.kernel" in plugin.ptycho_export_weights(loaded)
    np.testing.assert_array_equal(_infer(loaded, grouped64_g2).patches, _infer(model, grouped64_g2).patches)


def test_untrained_model_round_trips_through_a_bundle(tmp_path, grouped64):
    mc = ModelConfig(N=64, n_filters_scale=1)
    model = plugin.ptycho_build_model(mc, None)
    loaded = load_bundle(save_bundle(model, tmp_path / "b"))
    assert loaded.training_config is None
    np.testing.assert_array_equal(_infer(model, grouped64).patches, _infer(loaded, grouped64).patches)


def test_tensorflow_bundle_is_a_clear_error_naming_both_formats(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 not really keras")
    with pytest.raises(BundleError) as err:
        io.load_model(tmp_path, {"backend": "tensorflow"}, ModelConfig(), None)
    msg = str(err.value)
    assert "tensorflow" in msg and "model.keras" in msg and ".ckpt" in msg and "ptycho convert" in msg


def test_keras_file_without_manifest_backend_is_still_recognised(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"x")
    with pytest.raises(BundleError, match=r"model\.keras.*\.ckpt"):
        io.load_model(tmp_path, {}, ModelConfig(), None)


def test_pickled_checkpoint_is_refused(tmp_path):
    import argparse

    torch.save({"state_dict": {}, "obj": argparse.Namespace(a=1)}, tmp_path / "model.ckpt")
    with pytest.raises(BundleError, match="weights-only"):
        io.load_model(tmp_path, {"backend": "pytorch"}, ModelConfig(), None)


def test_weights_for_another_architecture_are_a_bundle_error(tmp_path, trained):
    io.save_model(trained, tmp_path)
    with pytest.raises(BundleError, match="do not fit"):
        io.load_model(tmp_path, {"backend": "pytorch"}, ModelConfig(N=64, n_filters_scale=2), None)


@pytest.mark.parametrize("variant", [{}, {"pad_object": False}, {"probe_big": False}, {"gridsize": 2},
                                     {"gridsize": 2, "object_window": 1.0},
                                     {"gridsize": 2, "object_window": 0.75, "pad_object": False}])
def test_canonical_export_import_export_is_bit_identical(trained, variant):
    if variant:
        mc = ModelConfig(N=64, n_filters_scale=1, **variant)
        model = plugin.ptycho_build_model(mc, None)
    else:
        model = trained
    first = plugin.ptycho_export_weights(model)
    assert all(v.dtype == np.float32 for v in first.values())
    again = plugin.ptycho_export_weights(plugin.ptycho_import_weights(model.model_config, None, first))
    assert first.keys() == again.keys()
    for name in first:
        assert first[name].tobytes() == again[name].tobytes(), name


def test_canonical_names_and_layouts(trained):
    w = plugin.ptycho_export_weights(trained)
    nfs = 1
    assert w["encoder.0.conv1.kernel"].shape == (3, 3, 1, 32 * nfs)
    assert w["encoder.2.conv2.bias"].shape == (128 * nfs,)
    assert w["amp.0.conv1.kernel"].shape == (3, 3, 128 * nfs, 64 * nfs)
    assert w["phase.1.conv2.kernel"].shape == (3, 3, 32 * nfs, 32 * nfs)
    assert w["amp.out.kernel"].shape == (3, 3, 32 * nfs - 4, 1)
    assert w["phase.big.conv1.kernel"].shape == (3, 3, 4, nfs * 2048 // 64)
    assert w["amp.big.out.kernel"].shape == (3, 3, nfs * 2048 // 64, 1)
    assert w["intensity_scale"].shape == ()
    assert w["probe.real"].shape == (64, 64) and np.any(w["probe.real"] != 0)
    conv = trained.native.net.encoder[0].conv1.weight.detach().numpy()
    np.testing.assert_array_equal(w["encoder.0.conv1.kernel"][1, 2, 0, 5], conv[5, 0, 1, 2])
    expected = {f"encoder.{i}.conv{j}.{k}" for i in range(3) for j in (1, 2) for k in ("kernel", "bias")}
    for head in ("amp", "phase"):
        expected |= {f"{head}.{i}.conv{j}.{k}" for i in range(2) for j in (1, 2) for k in ("kernel", "bias")}
        expected |= {f"{head}.big.conv{j}.{k}" for j in (1, 2) for k in ("kernel", "bias")}
        expected |= {f"{head}.{p}.{k}" for p in ("out", "big.out") for k in ("kernel", "bias")}
    expected |= {"intensity_scale", "probe.real", "probe.imag"}
    assert set(w) == expected


def test_import_rejects_missing_wrong_and_extra_weights(trained):
    w = plugin.ptycho_export_weights(trained)
    missing = {k: v for k, v in w.items() if k != "amp.out.bias"}
    with pytest.raises(BundleError, match="missing 'amp.out.bias'"):
        plugin.ptycho_import_weights(trained.model_config, None, missing)
    wrong = dict(w, **{"amp.out.bias": np.zeros(3, np.float32)})
    with pytest.raises(BundleError, match=r"'amp.out.bias' has shape \(3,\)"):
        plugin.ptycho_import_weights(trained.model_config, None, wrong)
    extra = dict(w, **{"amp.up.conv1.bias": np.zeros(3, np.float32)})
    with pytest.raises(BundleError, match="unexpected names"):
        plugin.ptycho_import_weights(trained.model_config, None, extra)


def test_bundle_config_json_is_plain(tmp_path, trained):
    path = save_bundle(trained, tmp_path / "b")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model"]["n_filters_scale"] == 1


def test_loading_and_inference_do_not_import_lightning(tmp_path, trained, grouped64):
    """A bundle loads and reconstructs without importing Lightning (nor what it pulls: torchmetrics,
    scipy.signal, torch._dynamo), and the plain module gives the trained LightningModule's predictions
    exactly. (The test data itself uses scipy.ndimage.)"""
    import subprocess
    import sys
    from pathlib import Path

    save_bundle(trained, tmp_path / "bundle")
    expected = _infer(trained, grouped64).patches
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
import sys
import numpy as np
from torch_testdata import make_grouped
from ptycho_core.bundle import load_bundle
from ptycho_core.config import InferenceConfig
from ptycho_core import backends
model = load_bundle({str(tmp_path / "bundle")!r})
data = make_grouped(N=64, gridsize=1, n_groups=64)
backend = backends.get("pytorch")
out = backend.infer(model, data, InferenceConfig(model=model.model_config, backend="pytorch", accelerator="cpu",
                                                batch_size=16))
backend.reassemble(out.patches, out.positions, 20, (100, 100), (0, 0))
np.testing.assert_array_equal(out.patches, np.load({str(tmp_path / "expected.npy")!r}))
heavy = [m for m in ("lightning", "torchmetrics", "scipy.signal", "torch._dynamo", "matplotlib") if m in sys.modules]
print("imported:", heavy)
print("native:", type(model.native).__name__)
"""
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "imported: []" in run.stdout, run.stdout
    assert "native: PtychoPINN" in run.stdout


def test_groups_of_another_gridsize_are_refused_before_inference(trained, grouped64_g2):
    from ptycho_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"groups of 4 patterns of 64 x 64 do not fit the model .*gridsize = 1"):
        _infer(trained, grouped64_g2)
