"""Model bundles: layout, hashes, atomic writes, zip safety and backend selection."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from ptycho_core import backends, bundle
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import BackendNotInstalledError, BundleError, BundleIntegrityError


@pytest.fixture
def model(installed_dummy):
    cfg = TrainingConfig(backend="dummy", nepochs=3, seed=7)
    return backends.get("dummy").build_model(cfg.model, cfg)


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_round_trip(model, tmp_path, suffix):
    path = bundle.save_bundle(model, tmp_path / f"bundle{suffix}", inference_config=InferenceConfig(backend="dummy"))
    manifest = bundle.read_manifest(path)
    assert manifest["backend"] == "dummy" and manifest["format_version"] == bundle.FORMAT_VERSION
    assert set(manifest["files"]) == {"config.json", "gain.npy"}
    assert "ptycho-core" in manifest["versions"]
    loaded = bundle.load_bundle(path)
    np.testing.assert_array_equal(loaded.native, model.native)
    assert loaded.training_config == model.training_config
    assert loaded.metadata["inference_config"].backend == "dummy"


def test_tampered_weight_fails_hash_check(model, tmp_path):
    path = bundle.save_bundle(model, tmp_path / "b")
    raw = bytearray((path / "gain.npy").read_bytes())
    raw[-1] ^= 0x01
    (path / "gain.npy").write_bytes(bytes(raw))
    with pytest.raises(BundleIntegrityError, match="sha256 of gain.npy"):
        bundle.load_bundle(path)


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_missing_or_extra_files_are_refused(model, tmp_path, change):
    path = bundle.save_bundle(model, tmp_path / "b")
    if change == "missing":
        (path / "gain.npy").unlink()
    else:
        (path / "evil.py").write_text("print('hi')")
    with pytest.raises(BundleError, match="missing: gain.npy" if change == "missing" else "not listed.*evil.py"):
        bundle.load_bundle(path)


@pytest.mark.parametrize("member", ["../x", "/etc/passwd", "a/../../x"])
def test_zip_path_traversal_is_refused(model, tmp_path, member):
    good = bundle.save_bundle(model, tmp_path / "good.zip")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(member, b"payload")
    with pytest.raises(BundleError, match="refusing zip member"):
        bundle.load_bundle(bad)
    assert not (tmp_path / "x").exists()


def test_interrupted_save_leaves_nothing(model, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle, "sha256_file", explode)
    for name in ("b", "b.zip"):
        with pytest.raises(RuntimeError, match="disk full"):
            bundle.save_bundle(model, tmp_path / name)
    assert list(tmp_path.iterdir()) == [tmp_path / "site"]


def test_existing_bundle_not_overwritten_by_default(model, tmp_path):
    path = bundle.save_bundle(model, tmp_path / "b")
    with pytest.raises(BundleError, match="already exists"):
        bundle.save_bundle(model, path)
    bundle.save_bundle(model, path, overwrite=True)
    assert bundle.load_bundle(path).backend == "dummy"


def test_bundle_of_uninstalled_backend_gives_install_hint(model, tmp_path):
    path = bundle.save_bundle(model, tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["backend"] = "tensorflow"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="written by backend 'tensorflow'"):
        bundle.load_bundle(path, backend="dummy")


def test_bundle_of_missing_known_backend(model, tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHO_DISABLE_PLUGIN_AUTOLOAD", "1")
    path = bundle.save_bundle(model, tmp_path / "b")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["backend"] = "pytorch"
    (path / "manifest.json").write_text(json.dumps(manifest))
    from ptycho_core import registry

    registry.default_registry.cache_clear()
    with pytest.raises(BackendNotInstalledError, match="pip install ptycho-torch"):
        bundle.load_bundle(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [("not json", "not valid JSON"), ('{"format": "other"}', "'format' must be"),
     ('{"format": "ptycho-bundle", "format_version": 99}', "not supported")],
)
def test_bad_manifest(model, tmp_path, content, match):
    path = bundle.save_bundle(model, tmp_path / "b")
    (path / "manifest.json").write_text(content)
    with pytest.raises(BundleError, match=match):
        bundle.load_bundle(path)


def test_not_a_bundle(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="x.zip"):
        bundle.load_bundle(tmp_path / "x.zip")
    with pytest.raises(BundleError, match="no such bundle"):
        bundle.load_bundle(tmp_path / "nothing")


def test_model_config_is_kept(installed_dummy, tmp_path):
    cfg = TrainingConfig(model=ModelConfig(gridsize=2, amp_activation="swish"), backend="dummy")
    handle = backends.get("dummy").build_model(cfg.model, cfg)
    loaded = bundle.load_bundle(bundle.save_bundle(handle, tmp_path / "b"))
    assert loaded.model_config == cfg.model
