"""PtychoPINN legacy keys (params.cfg names) and PtychoPINN YAML configs."""

from __future__ import annotations

import warnings
from pathlib import Path

import attrs
import pytest
from config_samples import non_default
from hypothesis import given, settings
from hypothesis import strategies as st

from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError
from ptycho_core.legacy import (
    FIELD_FOR_LEGACY_KEY,
    LegacyKeyWarning,
    from_legacy_dict,
    load_legacy_config,
    to_legacy_dict,
)


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    monkeypatch.delenv("PTYCHO_BACKEND", raising=False)


@pytest.mark.parametrize("cls", [TrainingConfig, InferenceConfig], ids=lambda c: c.__name__)
def test_legacy_round_trip(cls):
    config = non_default(cls)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing ignored, nothing deprecated
        assert from_legacy_dict(to_legacy_dict(config)) == config
        assert from_legacy_dict(to_legacy_dict(cls())) == cls()


def test_model_config_round_trip():
    config = non_default(ModelConfig)
    legacy = to_legacy_dict(config)
    assert set(legacy) == {"N", "gridsize", "n_filters_scale", "amp_activation", "object.big", "probe.big",
                           "probe.mask", "pad_object", "object_window", "probe_scale", "gaussian_smoothing_sigma"}
    assert from_legacy_dict(legacy, ModelConfig) == config
    assert from_legacy_dict({**legacy, "K": 16}).model == config  # gridsize 4 needs 16 neighbours


def test_legacy_names_of_training_fields():
    config = TrainingConfig(train_data_file="tr.npz", test_data_file="te.npz", output_dir="out", n_groups=12,
                            model=ModelConfig(object_big=False, probe_mask=True), probe_trainable=True)
    legacy = to_legacy_dict(config)
    expected = {
        "N": 64, "gridsize": 1, "n_filters_scale": 2, "amp_activation": "sigmoid", "object.big": False,
        "probe.big": True, "probe.mask": True, "pad_object": True, "probe_scale": 4.0,
        "gaussian_smoothing_sigma": 0.0, "probe.trainable": True, "intensity_scale.trainable": True,
        "positions.provided": True, "output_prefix": "out", "train_data_file_path": "tr.npz",
        "test_data_file_path": "te.npz", "nepochs": 40, "batch_size": 16, "nphotons": None, "nll_weight": 1.0,
        "mae_weight": 0.0, "realspace_weight": 0.0, "n_groups": 12, "neighbor_count": 8, "backend": "pytorch",
    }
    assert {k: legacy[k] for k in expected} == expected
    for ours in ("object_big", "output_dir", "train_data_file", "probe_trainable", "model"):
        assert ours not in legacy


def test_inference_legacy_keys():
    legacy = to_legacy_dict(InferenceConfig(model_path="run/model.zip", test_data_file="te.npz"))
    assert legacy["model_path"] == "run/model.zip" and legacy["test_data_file_path"] == "te.npz"
    assert type(from_legacy_dict(legacy)) is InferenceConfig


def test_n_images_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="'n_images' is deprecated, use 'n_groups'"):
        cfg = from_legacy_dict({"n_images": 256})
    assert cfg.n_groups == 256
    with pytest.warns(DeprecationWarning, match="ignored: n_groups is also given"):
        cfg = from_legacy_dict({"n_images": 256, "n_groups": 64})
    assert cfg.n_groups == 64


def test_k_alias_and_conflicts():
    assert from_legacy_dict({"K": 7}).neighbor_count == 7
    assert from_legacy_dict({"K": 7, "neighbor_count": 7}).neighbor_count == 7
    with pytest.raises(ConfigError, match=r"neighbor_count given twice .*K=7 and neighbor_count=5"):
        from_legacy_dict({"K": 7, "neighbor_count": 5})
    with pytest.raises(ConfigError, match=r"object_big given twice"):
        from_legacy_dict({"object.big": True, "object_big": False})


def test_unused_ptychopinn_keys_warn_once():
    legacy = {"N": 128, "bigN": 132, "offset": 4, "max_position_jitter": 10, "sim_nphotons": 1e6, "label": "",
              "data_source": "lines", "probe.type": "ideal", "model_type": "pinn", "object.big": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = from_legacy_dict(legacy, source="params.cfg")
    assert cfg.model.N == 128
    relevant = [w for w in caught if issubclass(w.category, LegacyKeyWarning)]
    assert len(relevant) == 1
    msg = str(relevant[0].message)
    assert msg.startswith("params.cfg: ignored PtychoPINN keys")
    for key in ("bigN", "offset", "max_position_jitter", "sim_nphotons", "label", "data_source", "probe.type"):
        assert key in msg


def test_fields_the_class_lacks_are_reported():
    with pytest.warns(LegacyKeyWarning, match=r"nepochs \(not used by InferenceConfig\)"):
        cfg = from_legacy_dict({"nepochs": 5, "model_path": "m.zip"}, InferenceConfig)
    assert cfg.model_path == Path("m.zip")


def test_none_values_keep_defaults():
    cfg = from_legacy_dict({"output_prefix": None, "train_data_file_path": None, "n_groups": None, "N": 64})
    assert cfg == TrainingConfig()


def test_unknown_legacy_key_is_an_error_with_suggestion():
    with pytest.raises(ConfigError, match=r"legacy config: unknown PtychoPINN keys: 'objekt\.big' \(did you mean "
                                          r"'object\.big'\?\)"):
        from_legacy_dict({"objekt.big": True})
    with pytest.raises(ConfigError, match="unknown PtychoPINN keys: '3'"):
        from_legacy_dict({3: 1})
    with pytest.raises(ConfigError, match="expected a mapping"):
        from_legacy_dict([("N", 64)])


def test_bad_legacy_value_names_source_and_field():
    with pytest.raises(ConfigError, match=r"cfg\.yaml: ModelConfig\.N: expected one of 64, 128, 256, got 100"):
        from_legacy_dict({"N": 100}, source="cfg.yaml")
    with pytest.raises(ConfigError, match=r"TrainingConfig\.model\.object_big: expected true or false, got 'yes'"):
        from_legacy_dict({"object.big": "yes"})


def test_class_choice():
    with pytest.warns(LegacyKeyWarning, match=r"model_path \(not used by TrainingConfig\)"):
        assert type(from_legacy_dict({"model_path": "m.zip", "nepochs": 3})) is TrainingConfig
    assert type(from_legacy_dict({"stitch_crop": 8})) is InferenceConfig
    assert type(from_legacy_dict({"inference": {"batch_size": 8}})) is InferenceConfig
    assert type(from_legacy_dict({"training": {"nepochs": 3}})) is TrainingConfig
    assert type(from_legacy_dict({"N": 64}, ModelConfig)) is ModelConfig
    with pytest.raises(ConfigError, match="cls must be"):
        from_legacy_dict({}, dict)


def test_flat_ptychopinn_yaml(tmp_path):
    path = tmp_path / "comparison_config.yaml"
    path.write_text(
        "N: 64\ngridsize: 2\nn_filters_scale: 2\nmodel_type: 'pinn'\namp_activation: 'sigmoid'\n"
        "object_big: true\nprobe_big: false\nprobe_mask: true\npad_object: true\nprobe_scale: 10.0\n"
        "nepochs: 50\nbatch_size: 16\noutput_dir: \"comparison_outputs\"\ntrain_data_file: \"train.npz\"\n"
        "test_data_file: \"test.npz\"\nn_images: 512\nnphotons: 1e9\nnll_weight: 1.0\nmae_weight: 0.0\n"
        "probe_trainable: true\nintensity_scale_trainable: true\npositions_provided: true\n"
    )
    with pytest.warns(DeprecationWarning), pytest.warns(LegacyKeyWarning, match="model_type"):
        cfg = load_legacy_config(path)
    expected = TrainingConfig(
        model=ModelConfig(gridsize=2, probe_big=False, probe_mask=True, probe_scale=10.0),
        nepochs=50, output_dir="comparison_outputs", train_data_file="train.npz", test_data_file="test.npz",
        n_groups=512, probe_trainable=True, nphotons=1e9,
    )
    assert cfg == expected


def test_sectioned_ptychopinn_yaml(tmp_path):
    path = tmp_path / "dense.yaml"
    path.write_text(
        "model:\n  gridsize: 2\n  object.big: true\nsampling:\n  n_subsample: 2000\n  n_groups: 2000\n"
        "  neighbor_count: 6\ndata:\n  nphotons: 1.0e6\n  train_data_file: tr.npz\ntf_loss:\n  mae_weight: 0.5\n"
        "optimizer:\n  algorithm: adam\nnepochs: 2\n"
    )
    with pytest.warns(LegacyKeyWarning) as record:
        cfg = load_legacy_config(path)
    assert "sampling.n_subsample" in str(record[0].message) and "optimizer" in str(record[0].message)
    assert cfg == TrainingConfig(model=ModelConfig(gridsize=2), n_groups=2000, neighbor_count=6, nphotons=1e6,
                                 train_data_file="tr.npz", mae_weight=0.5, nepochs=2)


def test_inference_section_yaml(tmp_path):
    path = tmp_path / "infer.yaml"
    path.write_text("model:\n  N: 128\ninference:\n  model_path: run/bundle\n  test_data_file: te.npz\n"
                    "  debug: false\n")
    with pytest.warns(LegacyKeyWarning, match="inference.debug"):
        cfg = load_legacy_config(path)
    assert cfg == InferenceConfig(model=ModelConfig(N=128), model_path="run/bundle", test_data_file="te.npz")


def test_same_key_twice_in_sections_must_agree(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("nepochs: 2\ntraining:\n  nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: nepochs given twice .*nepochs=2 and training\.nepochs=3"):
        load_legacy_config(path)


def test_reexported_from_serialize():
    from ptycho_core import serialize

    assert serialize.from_legacy_dict is from_legacy_dict and serialize.to_legacy_dict is to_legacy_dict
    assert serialize.load_legacy_config is load_legacy_config and serialize.LegacyKeyWarning is LegacyKeyWarning
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        serialize.nope  # noqa: B018


def test_every_field_has_a_legacy_key():
    for cls in (TrainingConfig, InferenceConfig):
        legacy = to_legacy_dict(cls())
        assert len(legacy) == len(attrs.fields(ModelConfig)) + len(attrs.fields(cls)) - 1


FIELD_NAMES = {f.name for c in (ModelConfig, TrainingConfig, InferenceConfig) for f in attrs.fields(c)} - {"model"}
LEGACY_KEYS = sorted(set(FIELD_FOR_LEGACY_KEY) | FIELD_NAMES | {"bigN", "sim_x", "probe.type"})
SCALARS = st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True) | st.text(max_size=6)
LEGACY_DICTS = st.dictionaries(st.sampled_from(LEGACY_KEYS) | st.text(max_size=8), SCALARS, max_size=8)


@settings(max_examples=150, deadline=None)
@given(d=LEGACY_DICTS | st.builds(lambda d, m: {**d, "model": m}, LEGACY_DICTS, LEGACY_DICTS))
def test_from_legacy_dict_only_raises_config_error(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cfg = from_legacy_dict(d, source="fuzz")
        except ConfigError as exc:
            assert str(exc).startswith("fuzz: ")
        else:
            assert from_legacy_dict(to_legacy_dict(cfg)) == cfg
