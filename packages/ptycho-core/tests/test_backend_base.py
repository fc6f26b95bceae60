"""Backends written as a BackendEntrypoint subclass: the generated hooks, their checks and errors."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest
from core_test_support import make_distribution

from ptycho_core import backends, hookspecs, registry
from ptycho_core.backend_base import OPERATIONS, BackendEntrypoint, BackendPlugin, hook_parameters
from ptycho_core.config import ModelConfig
from ptycho_core.contracts import ModelHandle
from ptycho_core.errors import BackendLoadError, BackendOperationError, HookValidationError
from ptycho_core.registry import Registry

pytestmark = [pytest.mark.ci_pr, pytest.mark.backend_selection]

CALLS: list[tuple[str, tuple]] = []


def build_gain(model_config, training_config):
    """An ``operations`` target: builds a model whose native object is a gain array."""
    CALLS.append(("build_gain", (model_config.N, training_config)))
    return ModelHandle(backend="gain", model_config=model_config, native=np.ones((model_config.N,) * 2))


def export_gain(model, extra=None):
    """An ``operations`` target with an extra defaulted parameter (allowed: it is not passed)."""
    return {"gain": np.asarray(model.native, np.float32)}


def import_gain_with_wrong_names(model_config, weights):
    return None


class GainBackend(BackendEntrypoint):
    id = "gain"
    distribution = "ptycho-gain-not-installed"
    framework = "numpy"
    framework_distributions = ("numpy", "surely-not-an-installed-distribution")
    weight_format = "gain.npy"
    description = "test backend"
    operations = {
        "build_model": f"{__name__}:build_gain",
        "export_weights": f"{__name__}:export_gain",
    }

    def devices(self):
        return ("cpu", "abacus:0")

    def infer(self, model, data, config):
        CALLS.append(("infer", (model.backend, data, config)))
        return "inferred"

    # keyword-only parameters are fine: the generated hook passes every argument by name
    def forward(self, *, config, data, model):
        return ("forward", model.backend, data, config)


@pytest.fixture
def reg():
    CALLS.clear()
    r = Registry(autoload=False)
    backends.register_plugin_for_tests(GainBackend, "gain", r)
    return r


def test_generated_hookimpls_take_exactly_the_hookspec_arguments(reg):
    plugin = reg.load("gain")
    assert isinstance(plugin, BackendPlugin) and isinstance(plugin.backend, GainBackend)
    impls = {impl.function.__name__: impl for impl in
             (i for hc in reg.pm.get_hookcallers(plugin) for i in hc.get_hookimpls() if i.plugin is plugin)}
    assert set(impls) == {"ptycho_register_backend", "ptycho_build_model", "ptycho_export_weights",
                          "ptycho_infer", "ptycho_forward"}
    for name, impl in impls.items():
        spec_names = getattr(reg.pm.hook, name).spec.argnames
        assert impl.argnames == spec_names, name
        assert impl.kwargnames == (), name
        assert tuple(inspect.signature(impl.function).parameters) == spec_names, name
    assert hook_parameters("load_model") == ("directory", "manifest", "model_config", "training_config")


def test_operations_are_the_hookspecs_operation_hooks():
    specs = [n for n in vars(hookspecs) if n.startswith("ptycho_") and n != "ptycho_register_backend"]
    assert OPERATIONS == tuple(n.removeprefix("ptycho_") for n in specs)
    assert "train" in OPERATIONS and "reassemble_patches" in OPERATIONS and "register_backend" not in OPERATIONS


def test_dispatch_to_methods_and_lazy_functions_passes_arguments_by_name(reg):
    be = backends.get("gain", reg)
    model = be.build_model(ModelConfig(N=64), None)
    assert model.native.shape == (64, 64)
    assert CALLS == [("build_gain", (64, None))]
    assert be.infer(model, "DATA", "CFG") == "inferred"
    assert CALLS[-1] == ("infer", ("gain", "DATA", "CFG"))
    assert be.forward(model, "DATA", "CFG") == ("forward", "gain", "DATA", "CFG")
    assert be.export_weights(model)["gain"].dtype == np.float32


def test_info_is_generated_from_the_class_attributes(reg):
    info = backends.get("gain", reg).info
    assert (info.id, info.distribution, info.framework) == ("gain", "ptycho-gain-not-installed", "numpy")
    assert info.version == "unknown"  # the distribution is not installed
    assert info.framework_versions == {"numpy": np.__version__}  # missing distributions are left out
    assert info.devices == ("cpu", "abacus:0")
    assert (info.weight_format, info.description) == ("gain.npy", "test backend")


def test_unimplemented_operation_is_the_facades_clear_error(reg):
    handle = ModelHandle(backend="gain", model_config=ModelConfig())
    with pytest.raises(BackendOperationError, match=r"'gain' does not implement ptycho_save_model"):
        backends.get("gain", reg).save_model(handle, "unused")
    with pytest.raises(BackendOperationError, match=r"'gain' does not implement ptycho_train"):
        backends.get("gain", reg).train(handle, None, None)
    assert not hasattr(reg.load("gain"), "ptycho_save_model")


def test_unimplemented_reassembly_falls_back_to_the_reference(reg):
    patches = np.ones((2, 64, 64), np.complex64)
    out = backends.get("gain", reg).reassemble(patches, np.array([[20.0, 20.0], [30.0, 20.0]]), 10, (40, 50), (0, 0))
    assert out.shape == (40, 50)
    np.testing.assert_allclose(out[16:24, 16:34], 1.0, rtol=1e-6)


def test_method_with_other_argument_names_is_refused_naming_the_hook_arguments():
    class Misnamed(GainBackend):
        def train(self, model, data, cfg, resume_from):
            return None

    with pytest.raises(HookValidationError) as info:
        backends.register_plugin_for_tests(Misnamed, "gain", Registry(autoload=False))
    msg = str(info.value)
    assert "Misnamed.train(model, data, cfg, resume_from)" in msg
    assert "ptycho_train" in msg and "expected (model, data, config, resume_from)" in msg


def test_method_missing_an_argument_is_refused():
    class Short(GainBackend):
        def load_model(self, directory, manifest, model_config):
            return None

    with pytest.raises(HookValidationError, match=r"expected \(directory, manifest, model_config, training_config\)"):
        Short.as_plugin()


def test_lazy_function_with_other_argument_names_is_refused_on_first_call():
    class LazyMisnamed(GainBackend):
        operations = {**GainBackend.operations, "import_weights": f"{__name__}:import_gain_with_wrong_names"}

    reg = Registry(autoload=False)
    backends.register_plugin_for_tests(LazyMisnamed, "gain", reg)
    with pytest.raises(HookValidationError, match=r"import_gain_with_wrong_names.*ptycho_import_weights.*"
                                                  r"expected \(model_config, training_config, weights\)"):
        backends.get("gain", reg).import_weights(ModelConfig(), None, {})


@pytest.mark.parametrize(
    ("operations", "message"),
    [
        ({"bulid_model": f"{__name__}:build_gain"}, r"unknown operation; did you mean 'build_model'\?"),
        ({"build_model": "build_gain"}, r"expected 'module:function'"),
        ({"build_model": "ptycho_core.no_such_module:f"}, r"there is no module 'ptycho_core.no_such_module'"),
        ({"infer": f"{__name__}:build_gain"}, r"infer is also a method of .*; implement it once"),
        ({"build_model": "ptycho_data.grouping:group_for_training"},
         r"may not live in 'ptycho_data': a backend builds on the kernel \(ptycho_core\) and its own package"),
    ],
)
def test_bad_operations_table_is_refused(operations, message):
    cls = type("Bad", (GainBackend,), {"operations": operations})
    with pytest.raises(HookValidationError, match=message):
        cls.as_plugin()


def test_lazy_function_missing_from_its_module_is_an_operation_error():
    cls = type("Missing", (GainBackend,), {"operations": {"build_model": f"{__name__}:no_such_function"}})
    reg = Registry(autoload=False)
    backends.register_plugin_for_tests(cls, "gain", reg)
    with pytest.raises(BackendOperationError, match=r"has no function 'no_such_function'"):
        backends.get("gain", reg).build_model(ModelConfig())


def test_missing_class_attributes_are_named():
    class Anonymous(BackendEntrypoint):
        framework = "numpy"

    with pytest.raises(HookValidationError, match=r"Anonymous must set the class attribute\(s\) id, distribution, "
                                                  r"weight_format"):
        Anonymous.as_plugin()
    bad = type("BadDists", (GainBackend,), {"framework_distributions": "numpy"})
    with pytest.raises(HookValidationError, match=r"framework_distributions must be a tuple"):
        bad.as_plugin()


def test_registered_id_must_be_the_class_id():
    with pytest.raises(HookValidationError, match=r"backend 'other' is provided by GainBackend, whose id is 'gain'"):
        backends.register_plugin_for_tests(GainBackend, "other", Registry(autoload=False))


def test_an_instance_registers_too_and_unregisters():
    reg = Registry(autoload=False)
    backends.register_plugin_for_tests(GainBackend(), "gain", reg)
    assert backends.get("gain", reg).info.id == "gain"
    backends.unregister_for_tests("gain", reg)
    assert "gain" not in reg._backends and reg.pm.get_plugin("backend:gain") is None


CLASSY_SOURCE = """
from ptycho_core.backend_base import BackendEntrypoint
from ptycho_core.contracts import ModelHandle


class ClassyBackend(BackendEntrypoint):
    id = "classy"
    distribution = "ptycho-classy"
    framework = "numpy"
    weight_format = "none"

    def build_model(self, model_config, training_config):
        return ModelHandle(backend="classy", model_config=model_config)
"""


@pytest.fixture
def install_classy(tmp_path, monkeypatch):
    """Install the distribution ``ptycho-classy`` (module ``classy_backend``) with a given entry-point value."""

    def install(value):
        root = make_distribution(tmp_path / "site", "ptycho-classy", {"classy": value},
                                 {"classy_backend": CLASSY_SOURCE})
        monkeypatch.syspath_prepend(str(root))
        registry.refresh()
        return Registry(autoload=True)

    yield install
    sys.modules.pop("classy_backend", None)
    registry.refresh()


def test_entry_point_naming_a_class_is_listed_without_import_and_dispatched(install_classy):
    reg = install_classy("classy_backend:ClassyBackend")
    entry = {e.id: e for e in backends.available(reg)}["classy"]
    assert entry.installed and entry.value == "classy_backend:ClassyBackend"
    assert "classy_backend" not in sys.modules
    be = backends.get("classy", reg)
    assert be.build_model(ModelConfig()).backend == "classy"
    assert be.info.version == "0.1" and be.info.distribution == "ptycho-classy"


def test_entry_point_naming_the_module_of_a_backend_class_uses_the_class(install_classy):
    reg = install_classy("classy_backend")
    be = backends.get("classy", reg)
    assert be.build_model(ModelConfig()).backend == "classy" and be.info.distribution == "ptycho-classy"


def test_entry_point_naming_a_module_with_two_backend_classes_asks_for_one(tmp_path, monkeypatch):
    source = CLASSY_SOURCE + """

class OtherBackend(ClassyBackend):
    pass
"""
    root = make_distribution(tmp_path / "site", "ptycho-classy", {"classy": "classy_backend"},
                             {"classy_backend": source})
    monkeypatch.syspath_prepend(str(root))
    registry.refresh()
    try:
        with pytest.raises(BackendLoadError, match=r"several backend classes \(ClassyBackend, OtherBackend\); "
                                                   r'name one: classy = "classy_backend:ClassyBackend"'):
            backends.get("classy", Registry(autoload=True))
    finally:
        sys.modules.pop("classy_backend", None)
        registry.refresh()
