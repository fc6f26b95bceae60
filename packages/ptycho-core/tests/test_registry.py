"""Backend discovery, selection, dispatch and the error messages of the registry."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ptycho_core import backends, hookimpl
from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.contracts import GroupedData, ModelHandle
from ptycho_core.errors import (
    BackendLoadError,
    BackendNotInstalledError,
    BackendOperationError,
    ConfigError,
    HookValidationError,
    UnknownBackendError,
)
from ptycho_core.registry import Registry

pytestmark = [pytest.mark.ci_pr, pytest.mark.backend_selection]


def _grouped(n=3, N=64):
    rng = np.random.default_rng(1)
    return GroupedData(
        X=rng.random((n, N, N, 1)), offsets=np.zeros((n, 1, 2)), centroids=rng.random((n, 2)) * 50 + 40,
        indices=np.arange(n)[:, None], probe=np.ones((N, N), np.complex64),
    )


def test_known_backends_listed_without_install():
    reg = Registry(autoload=False)
    entries = {e.id: e for e in backends.available(reg)}
    assert set(entries) == {"pytorch", "tensorflow"}
    assert not entries["pytorch"].installed
    assert entries["pytorch"].install_command == "pip install ptycho-torch"
    assert entries["tensorflow"].install_command == "pip install ptycho-tf"


@pytest.mark.parametrize(("bid", "dist"), [("pytorch", "ptycho-torch"), ("tensorflow", "ptycho-tf")])
def test_selecting_missing_known_backend_gives_install_hint(bid, dist):
    with pytest.raises(BackendNotInstalledError, match=f"pip install {dist}") as info:
        backends.get(bid, Registry(autoload=False))
    assert isinstance(info.value, ImportError)


def test_unknown_backend_lists_valid_ids_with_did_you_mean():
    with pytest.raises(UnknownBackendError) as info:
        backends.get("torch", Registry(autoload=False))
    msg = str(info.value)
    assert "did you mean 'pytorch'" in msg and "'tensorflow'" in msg
    assert isinstance(info.value, ValueError)


def test_config_rejects_misspelled_backend():
    with pytest.raises(ValueError, match="did you mean 'pytorch'") as info:
        TrainingConfig(model=ModelConfig(), backend="torch")
    assert isinstance(info.value, ConfigError)
    assert "TrainingConfig.backend" in str(info.value)


def test_dummy_distribution_is_listed_selected_and_dispatched(installed_dummy):
    import dummy_backend

    entries = {e.id: e for e in backends.available()}
    assert entries["dummy"].installed and entries["dummy"].distribution == "ptycho-dummy"
    be = backends.get("dummy")
    assert be.info.framework == "numpy"
    cfg = TrainingConfig(backend="dummy", nepochs=2)
    model = be.build_model(cfg.model, cfg)
    assert isinstance(model, ModelHandle) and model.backend == "dummy"
    result = be.train(model, _grouped(), cfg)
    assert result.history["loss"] == [2.0, 1.0]
    assert dummy_backend.CALLS[-2:] == ["build", "train"]
    # the config validator accepts an installed third-party id
    assert TrainingConfig(backend="dummy").backend == "dummy"


def test_broken_plugin_import_is_chained(installed_dummy):
    with pytest.raises(BackendLoadError, match="broken.*failed to import.*boom") as info:
        backends.get("broken")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_misspelled_hook_is_rejected(installed_dummy):
    with pytest.raises(HookValidationError, match="ptycho_biuld_model"):
        backends.get("typo")


def test_listing_imports_no_backend(installed_dummy):
    backends.available()
    assert "dummy_backend" not in sys.modules and "broken_backend" not in sys.modules


class _Plugin:
    def __init__(self, name):
        self.name = name

    @hookimpl
    def ptycho_build_model(self, model_config, training_config):
        return ModelHandle(backend=self.name, model_config=model_config)


def test_dispatch_reaches_only_the_selected_backend():
    reg = Registry(autoload=False)
    backends.register_plugin_for_tests(_Plugin("alpha"), "alpha", reg)
    backends.register_plugin_for_tests(_Plugin("beta"), "beta", reg)
    assert backends.get("alpha", reg).build_model(ModelConfig()).backend == "alpha"
    assert backends.get("beta", reg).build_model(ModelConfig()).backend == "beta"


def test_missing_operation_is_a_clear_error():
    reg = Registry(autoload=False)
    backends.register_plugin_for_tests(_Plugin("alpha"), "alpha", reg)
    handle = ModelHandle(backend="alpha", model_config=ModelConfig())
    with pytest.raises(BackendOperationError, match="does not implement ptycho_save_model"):
        backends.get("alpha", reg).save_model(handle, "unused")


def test_model_of_other_backend_is_refused():
    reg = Registry(autoload=False)
    backends.register_plugin_for_tests(_Plugin("alpha"), "alpha", reg)
    handle = ModelHandle(backend="beta", model_config=ModelConfig())
    with pytest.raises(BackendOperationError, match="belongs to backend 'beta'"):
        backends.get("alpha", reg).infer(handle, _grouped(), None)


def test_wrappers_and_reference_fallback_take_part():
    reg = Registry(autoload=False)
    backends.register_plugin_for_tests(_Plugin("alpha"), "alpha", reg)
    seen = []

    class Timing:
        @hookimpl(wrapper=True)
        def ptycho_reassemble_patches(self, patches, positions, crop_size, canvas_shape, origin):
            seen.append(len(patches))
            return (yield)

    reg.pm.register(Timing(), name="timing")
    patches = np.ones((2, 64, 64), np.complex64)
    positions = np.array([[20.0, 20.0], [30.0, 20.0]])
    out = backends.get("alpha", reg).reassemble(patches, positions, 10, (40, 50), (0, 0))
    assert seen == [2]
    assert out.shape == (40, 50)
    np.testing.assert_allclose(out[16:24, 16:34], 1.0, rtol=1e-6)


def test_env_default_backend(monkeypatch):
    monkeypatch.setenv("PTYCHO_BACKEND", "tensorflow")
    assert TrainingConfig().backend == "tensorflow"
    assert TrainingConfig(backend="pytorch").backend == "pytorch"


def _run_cli(*args, env=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "ptycho_core.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_cli_backends_without_any_backend_names_install_commands():
    proc = _run_cli("backends", env={"PTYCHO_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "No backend is installed." in proc.stdout
    assert "pip install ptycho-torch" in proc.stdout and "pip install ptycho-tf" in proc.stdout


def test_core_never_imports_a_framework():
    code = (
        "import pkgutil, importlib, sys, ptycho_core\n"
        "for m in pkgutil.walk_packages(ptycho_core.__path__, 'ptycho_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "from ptycho_core import backends; backends.available()\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'lightning') if m in sys.modules]\n"
        "sys.exit(f'imported {bad}' if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
