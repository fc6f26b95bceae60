"""Config files: dict/TOML/JSON/YAML round trips, layouts, strict errors, atomic saves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs
import pytest
import yaml
from config_samples import LEFT_AT_DEFAULT, non_default
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptycho_core import serialize
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError
from ptycho_core.serialize import (
    dumps,
    from_dict,
    load_config,
    load_config_sections,
    read_config_file,
    save_config,
    to_dict,
)

tomllib = serialize.tomllib  # the stdlib module, or tomli on Python 3.10
SUFFIXES = (".toml", ".json", ".yaml")
CLASSES = (ModelConfig, TrainingConfig, InferenceConfig)


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    monkeypatch.delenv("PTYCHO_BACKEND", raising=False)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_round_trips_through_files(tmp_path, cls, suffix):
    config = non_default(cls)
    defaults = cls()
    for field in attrs.fields(cls):
        if field.name not in LEFT_AT_DEFAULT.get(cls, ()):
            assert getattr(config, field.name) != getattr(defaults, field.name), field.name
    path = save_config(config, tmp_path / f"cfg{suffix}")
    assert load_config(path, cls) == config
    guessed = load_config(path)  # cls picked from the keys
    assert type(guessed) is cls and guessed == config


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_dict_round_trip_uses_plain_types(cls):
    config = non_default(cls)
    data = to_dict(config)
    json.dumps(data)  # plain data only: paths are strings
    assert from_dict(cls, data) == config
    if cls is not ModelConfig:
        assert isinstance(data["model"], dict)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_sections_round_trip(tmp_path, suffix):
    configs = {"training": non_default(TrainingConfig), "inference": non_default(InferenceConfig)}
    path = save_config(configs, tmp_path / f"all{suffix}")
    assert load_config_sections(path) == configs
    assert load_config(path, TrainingConfig) == configs["training"]
    assert load_config(path, InferenceConfig) == configs["inference"]
    with pytest.raises(ConfigError, match=r"both \[training\] and \[inference\]"):
        load_config(path)


def test_toml_omits_none_and_uses_defaults(tmp_path):
    path = save_config(TrainingConfig(nepochs=3), tmp_path / "t.toml")
    text = path.read_text()
    assert "n_groups" not in text and "train_data_file" not in text and "nepochs = 3" in text
    loaded = load_config(path)
    assert loaded.n_groups is None and loaded.train_data_file is None
    json_text = save_config(TrainingConfig(), tmp_path / "t.json").read_text()
    assert json.loads(json_text)["n_groups"] is None


def test_shared_model_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\ngridsize = 2\n\n[training]\nnepochs = 2\n\n[inference]\nstitch_crop = 8\n')
    configs = load_config_sections(path)
    assert configs["training"].model.gridsize == 2 and configs["training"].nepochs == 2
    assert configs["inference"].model.gridsize == 2 and configs["inference"].stitch_crop == 8
    assert load_config(path, ModelConfig) == ModelConfig(gridsize=2)


def test_model_given_twice_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nN = 64\n\n[training.model]\nN = 128\n")
    with pytest.raises(ConfigError, match=r"c\.toml: model settings given twice"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "cls"),
    [
        ("", TrainingConfig),
        ("N = 128\ngridsize = 2\n", ModelConfig),
        ("[model]\nN = 128\n", ModelConfig),
        ("nepochs = 2\n", TrainingConfig),
        ("batch_size = 8\n", TrainingConfig),
        ('model_path = "m.zip"\n', InferenceConfig),
        ("stitch_crop = 8\n[model]\nN = 64\n", InferenceConfig),
        ("[inference]\nbatch_size = 8\n", InferenceConfig),
    ],
)
def test_class_guessed_from_content(tmp_path, text, cls):
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert type(load_config(path)) is cls


def test_model_config_from_training_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  model:\n    gridsize: 3\n  neighbor_count: 9\n")
    assert load_config(path, ModelConfig) == ModelConfig(gridsize=3)
    assert load_config(path, InferenceConfig) == InferenceConfig()  # section absent: defaults


def test_mixed_top_level_keys_are_an_error(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"nepochs": 2, "stitch_crop": 8}))
    with pytest.raises(ConfigError, match=r"c\.json: .*nepochs.*stitch_crop.*sections"):
        load_config(path)


def test_unknown_section_with_did_you_mean(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nnepochs = 2\n[inferense]\nbatch_size = 1\n")
    with pytest.raises(ConfigError, match=r"c\.toml: unknown section 'inferense'.*did you mean 'inference'"):
        load_config(path)


def test_bad_value_names_file_field_and_allowed_values(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[model]\nN = 100\namp_activation = "tanh"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, TrainingConfig)
    msg = str(info.value)
    assert str(path) in msg and "N" in msg and "64, 128, 256" in msg and "100" in msg


def test_bad_choice_lists_allowed_values(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  amp_activation: tanh\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*amp_activation.*'sigmoid', 'swish', 'softplus', 'relu'"):
        load_config(path)


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        ({"nepoch": 3}, "did you mean 'nepochs'"),
        ({"model": {"gridsze": 2}}, "TrainingConfig.model: unknown key 'gridsze' (did you mean 'gridsize'"),
        ({"N": 64, "nepochs": 1}, "'N' is a ModelConfig field"),
        ({"n_images": 5}, "PtychoPINN's name for 'n_groups'"),
        ({"object.big": True}, "PtychoPINN's name for 'object_big'"),
    ],
)
def test_unknown_key_names_file_and_suggests(tmp_path, data, hint):
    path = tmp_path / "u.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path, TrainingConfig)
    assert str(info.value).startswith(f"{path}: ")
    assert hint in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("nepochs", "abc", "an integer"),
        ("nepochs", 2.5, "an integer"),
        ("batch_size", True, "an integer"),
        ("nphotons", "many", "a number"),
        ("probe_trainable", "yes", "true or false"),
        ("probe_trainable", 1, "true or false"),
        ("backend", 3, "a string"),
        ("output_dir", 5, "a path string"),
        ("n_groups", [1], "an integer"),
    ],
)
def test_wrong_types_name_file_field_value_and_type(tmp_path, field, value, expected):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({field: value}))
    with pytest.raises(ConfigError) as info:
        load_config(path, TrainingConfig)
    msg = str(info.value)
    assert str(path) in msg and f"TrainingConfig.{field}" in msg and repr(value) in msg and expected in msg


def test_lenient_numbers_are_still_exact():
    cfg = from_dict(TrainingConfig, {"nepochs": 4.0, "nphotons": 1000, "train_data_file": Path("a.npz")})
    assert cfg.nepochs == 4 and isinstance(cfg.nepochs, int)
    assert cfg.nphotons == 1000.0 and isinstance(cfg.nphotons, float)
    assert cfg.train_data_file == Path("a.npz")


def test_yaml_reads_exponent_without_dot_as_float(tmp_path):
    path = tmp_path / "y.yaml"
    path.write_text("nphotons: 1e9\nlearning_rate: 5E-4\n")
    cfg = load_config(path)
    assert cfg.nphotons == 1e9 and cfg.learning_rate == 5e-4


def test_several_errors_are_reported_together():
    with pytest.raises(ConfigError) as info:
        from_dict(TrainingConfig, {"nepochs": "x", "batch_size": "y"}, source="f.json")
    assert "TrainingConfig.nepochs" in str(info.value) and "TrainingConfig.batch_size" in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("m.toml", "nepochs = = 3\n", "malformed TOML"),
        ("m.json", '{"nepochs": 3,', "malformed JSON"),
        ("m.yaml", "model: [1, 2\n", "malformed YAML"),
        ("m.json", "[1, 2]", "expected a table/mapping"),
        ("m.yaml", "- 1\n- 2\n", "expected a table/mapping"),
        ("m.ini", "x=1", "unknown config file type '.ini'"),
    ],
)
def test_malformed_files(tmp_path, name, text, kind):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path)
    assert str(path) in str(info.value) and kind in str(info.value)


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read config file"):
        load_config(tmp_path / "nope.toml")
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"b\.toml: cannot read config file"):
        load_config(binary)


def test_failed_serialisation_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "c.toml"

    def boom(_data):
        raise ValueError("serialiser exploded")

    monkeypatch.setattr(serialize.tomli_w, "dumps", boom)
    with pytest.raises(ValueError, match="exploded"):
        save_config(TrainingConfig(), target)
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    target = save_config(TrainingConfig(nepochs=1), tmp_path / "c.yaml")
    before = target.read_text()

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(serialize.os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        save_config(TrainingConfig(nepochs=2), target)
    assert target.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_save_rejects_non_configs(tmp_path):
    with pytest.raises(ConfigError, match="to_dict: expected"):
        save_config("nepochs = 3", tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="section 'training' must hold"):
        save_config({"training": ModelConfig()}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="section 'nepochs' must hold"):
        save_config({"nepochs": 3}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="leave out the 'model' section"):
        save_config({"model": ModelConfig(), "training": TrainingConfig()}, tmp_path / "c.toml")
    assert list(tmp_path.iterdir()) == []


def test_dumps_formats_parse_back():
    data = to_dict(TrainingConfig(n_groups=3))
    assert tomllib.loads(dumps(data, "toml"))["n_groups"] == 3
    assert json.loads(dumps(data, "json")) == data
    assert yaml.safe_load(dumps(data, "yaml")) == data
    with pytest.raises(ConfigError, match="unknown format 'ini'"):
        dumps(data, "ini")


FIELD_NAMES = sorted({f.name for c in CLASSES for f in attrs.fields(c)} | {"n_images", "object.big"})
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=10)
MODEL_DICTS = st.dictionaries(st.sampled_from([f.name for f in attrs.fields(ModelConfig)]) | KEYS, JSON_VALUES,
                              max_size=5)
CONFIG_DICTS = st.dictionaries(KEYS, JSON_VALUES, max_size=6) | st.builds(
    lambda d, m: {**d, "model": m}, st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_SCALARS, max_size=6),
    MODEL_DICTS,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(CLASSES), data=CONFIG_DICTS | JSON_VALUES)
def test_from_dict_only_raises_config_error(cls, data):
    try:
        config = from_dict(cls, data, source="fuzz.json")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.json: ")
    else:
        assert type(config) is cls
        assert from_dict(cls, to_dict(config)) == config


def test_saved_file_has_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = save_config(ModelConfig(), tmp_path / "m.toml")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_model_section_alone_round_trips(tmp_path):
    path = save_config({"model": ModelConfig(N=256)}, tmp_path / "m.yaml")
    assert load_config(path) == ModelConfig(N=256)
    assert load_config(path, TrainingConfig) == TrainingConfig(model=ModelConfig(N=256))


def test_relative_paths_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_config(ModelConfig(N=256), "m.json")
    assert load_config("m.json") == ModelConfig(N=256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_failures_not_caused_by_the_input_are_not_disguised(monkeypatch):
    from ptycho_core import registry

    def broken():
        raise RuntimeError("registry exploded")

    monkeypatch.setattr(registry, "valid_backend_ids", broken)
    with pytest.raises(RuntimeError, match="registry exploded"):
        from_dict(TrainingConfig, {"backend": "pytorch"})


@pytest.mark.parametrize("value", [None, 3, "N=64", [64]])
def test_model_table_that_is_not_a_table_is_a_config_error(value):
    # found by the fuzz test: {'model': None} used to escape as a TypeError from cattrs
    with pytest.raises(ConfigError, match=r"fuzz.json: TrainingConfig.model: expected a table of ModelConfig fields"):
        from_dict(TrainingConfig, {"model": value}, source="fuzz.json")
