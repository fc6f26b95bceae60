"""Config classes: validators name Class.field, the value and what is allowed."""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import pytest

from ptycho_core.config import DEFAULT_NEIGHBOR_COUNT, InferenceConfig, ModelConfig, TrainingConfig, default_backend
from ptycho_core.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    monkeypatch.delenv("PTYCHO_BACKEND", raising=False)


@pytest.mark.parametrize(
    ("cls", "field", "value", "allowed"),
    [
        (ModelConfig, "N", 100, "one of 64, 128, 256"),
        (ModelConfig, "N", "64", "one of 64, 128, 256"),
        (ModelConfig, "gridsize", 0, "an integer >= 1"),
        (ModelConfig, "gridsize", True, "an integer >= 1"),
        (ModelConfig, "gridsize", 2.0, "an integer >= 1"),
        (ModelConfig, "n_filters_scale", -1, "an integer >= 1"),
        (ModelConfig, "amp_activation", "tanh", "one of 'sigmoid', 'swish', 'softplus', 'relu'"),
        (ModelConfig, "object_big", 1, "true or false"),
        (ModelConfig, "probe_big", "yes", "true or false"),
        (ModelConfig, "probe_mask", None, "true or false"),
        (ModelConfig, "pad_object", 0, "true or false"),
        (ModelConfig, "object_window", 0.25, "a number from 0.5 to 1.0"),
        (ModelConfig, "object_window", 1.5, "a number from 0.5 to 1.0"),
        (ModelConfig, "object_window", "wide", "a number from 0.5 to 1.0"),
        (ModelConfig, "probe_scale", 0.0, "a finite number > 0.0"),
        (ModelConfig, "probe_scale", math.inf, "a finite number > 0.0"),
        (ModelConfig, "probe_scale", "4", "a finite number > 0.0"),
        (ModelConfig, "gaussian_smoothing_sigma", -0.5, "a finite number >= 0.0"),
        (ModelConfig, "gaussian_smoothing_sigma", math.nan, "a finite number >= 0.0"),
        (TrainingConfig, "batch_size", 0, "an integer >= 1"),
        (TrainingConfig, "nepochs", 1.5, "an integer >= 1"),
        (TrainingConfig, "early_stop_patience", -1, "an integer >= 0"),
        (TrainingConfig, "max_train_seconds", 0, "a finite number > 0.0"),
        (TrainingConfig, "learning_rate", 0, "a finite number > 0.0"),
        (TrainingConfig, "nll_weight", -1.0, "a finite number >= 0.0"),
        (TrainingConfig, "mae_weight", False, "a finite number >= 0.0"),
        (TrainingConfig, "realspace_weight", math.nan, "a finite number >= 0.0"),
        (TrainingConfig, "nphotons", -1e9, "a finite number > 0.0"),
        (TrainingConfig, "n_groups", 0, "an integer >= 1"),
        (TrainingConfig, "neighbor_count", 0, "an integer >= 1"),
        (TrainingConfig, "seed", -1, "an integer >= 0"),
        (TrainingConfig, "intensity_scale_trainable", "true", "true or false"),
        (TrainingConfig, "probe_trainable", 1, "true or false"),
        (TrainingConfig, "positions_provided", None, "true or false"),
        (TrainingConfig, "backend", 3, "a backend id string"),
        (TrainingConfig, "accelerator", "tpu", "one of 'auto', 'cpu', 'gpu'"),
        (TrainingConfig, "devices", 0, "an integer >= 1"),
        (TrainingConfig, "strategy", "fsdp", "one of 'auto', 'ddp', 'mirrored'"),
        (TrainingConfig, "checkpoint_every", 0, "an integer >= 1"),
        (TrainingConfig, "num_nodes", 0, "an integer >= 1"),
        (TrainingConfig, "compile", "yes", "true or false"),
        (InferenceConfig, "batch_size", -3, "an integer >= 1"),
        (InferenceConfig, "n_groups", 2.5, "an integer >= 1"),
        (InferenceConfig, "neighbor_count", None, "an integer >= 1"),
        (InferenceConfig, "seed", "42", "an integer >= 0"),
        (InferenceConfig, "stitch_crop", 0, "an integer >= 1"),
        (InferenceConfig, "stitch_weight", "gaussian", "one of 'probe', 'uniform'"),
        (InferenceConfig, "groups_per_position", 0, "an integer >= 1"),
        (InferenceConfig, "flip_x", "no", "true or false"),
        (InferenceConfig, "flip_y", 0, "true or false"),
        (InferenceConfig, "transpose", None, "true or false"),
        (InferenceConfig, "accelerator", "cuda", "one of 'auto', 'cpu', 'gpu'"),
        (InferenceConfig, "refine_iterations", -1, "an integer >= 0"),
        (TrainingConfig, "progress", "off", "true or false"),
        (InferenceConfig, "progress", 0, "true or false"),
    ],
)
def test_validator_message_names_class_field_value_and_allowed(cls, field, value, allowed):
    with pytest.raises(ConfigError) as info:
        cls(**{field: value})
    msg = str(info.value)
    assert msg.startswith(f"{cls.__name__}.{field}: ")
    assert allowed in msg and repr(value) in msg


def test_every_validated_field_is_covered():
    covered = {
        "N", "gridsize", "n_filters_scale", "amp_activation", "object_big", "probe_big", "probe_mask", "pad_object",
        "object_window", "probe_scale", "gaussian_smoothing_sigma", "batch_size", "nepochs", "early_stop_patience",
        "max_train_seconds", "learning_rate", "groups_per_position",
        "nll_weight", "mae_weight", "realspace_weight", "nphotons", "n_groups", "neighbor_count", "seed",
        "intensity_scale_trainable", "probe_trainable", "positions_provided", "backend", "accelerator", "devices",
        "strategy", "num_nodes", "checkpoint_every", "compile", "stitch_crop", "stitch_weight", "flip_x", "flip_y",
        "transpose", "refine_iterations", "progress",
    }
    validated = {f.name for c in (ModelConfig, TrainingConfig, InferenceConfig) for f in attrs.fields(c)
                 if f.validator is not None and f.name != "model"}
    assert validated == covered


def test_object_window_is_an_even_centred_window_with_a_network_output_to_fill_it():
    assert ModelConfig().window_side == 32 and not ModelConfig(gridsize=2).uses_probe_big
    assert ModelConfig(N=128, object_window=0.75).window_side == 96
    wide = ModelConfig(gridsize=2, object_window=1)  # an integer is a number too
    assert wide.object_window == 1.0 and wide.window_side == 64 and wide.uses_probe_big
    assert not ModelConfig(gridsize=2, object_window=1.0, object_big=False, probe_big=False).uses_probe_big
    with pytest.raises(ConfigError, match=r"ModelConfig.object_window: expected N \* object_window to be an even "
                                          r"integer .* got 0.6 with N = 64 \(38.4 pixels\)"):
        ModelConfig(object_window=0.6)
    with pytest.raises(ConfigError, match="object_window.*even integer.*N = 64 .33 pixels"):
        ModelConfig(object_window=33 / 64)
    with pytest.raises(ConfigError, match="pad_object = true and probe_big = false the network predicts nothing"):
        ModelConfig(gridsize=2, object_window=0.75, probe_big=False)
    assert ModelConfig(gridsize=2, object_window=0.75, probe_big=False, pad_object=False).window_side == 48


def test_num_nodes_needs_ddp():
    with pytest.raises(ConfigError, match=r"TrainingConfig.num_nodes: 2 nodes need strategy 'ddp'.*'auto'"):
        TrainingConfig(num_nodes=2)
    assert TrainingConfig(num_nodes=2, strategy="ddp", devices=4).num_nodes == 2


@pytest.mark.parametrize("cls", [TrainingConfig, InferenceConfig])
def test_unknown_backend_suggests_the_closest(cls):
    with pytest.raises(ConfigError) as info:
        cls(backend="pytroch")
    msg = str(info.value)
    assert msg.startswith(f"{cls.__name__}.backend: ")
    assert "'pytorch'" in msg and "'tensorflow'" in msg and "did you mean 'pytorch'" in msg


def test_known_backends_are_valid_without_installing_them():
    assert TrainingConfig(backend="tensorflow").backend == "tensorflow"
    assert InferenceConfig(backend="pytorch").backend == "pytorch"


def test_backend_default_comes_from_environment(monkeypatch):
    assert default_backend() == "pytorch" and TrainingConfig().backend == "pytorch"
    monkeypatch.setenv("PTYCHO_BACKEND", " tensorflow ")
    assert default_backend() == "tensorflow"
    assert TrainingConfig().backend == "tensorflow" and InferenceConfig().backend == "tensorflow"
    assert TrainingConfig(backend="pytorch").backend == "pytorch"  # explicit wins


def test_neighbor_count_must_cover_the_group():
    # K counts the nearest *other* positions: a group is the seed plus C - 1 of them, so K >= C - 1
    assert TrainingConfig().neighbor_count == InferenceConfig().neighbor_count == DEFAULT_NEIGHBOR_COUNT == 8
    assert TrainingConfig(model=ModelConfig(gridsize=2), neighbor_count=3).model.channels == 4
    assert TrainingConfig(model=ModelConfig(gridsize=3)).neighbor_count == 8  # the default covers gridsize 3
    assert TrainingConfig(model=ModelConfig(gridsize=1), neighbor_count=1).neighbor_count == 1
    with pytest.raises(ConfigError, match=r"TrainingConfig\.neighbor_count: .*gridsize\*\*2 - 1 = 3 .*got 2"):
        TrainingConfig(model=ModelConfig(gridsize=2), neighbor_count=2)
    with pytest.raises(ConfigError, match=r"TrainingConfig\.neighbor_count: .*gridsize\*\*2 - 1 = 15 .*got 8"):
        TrainingConfig(model=ModelConfig(gridsize=4))


@pytest.mark.parametrize(("gridsize", "object_big", "probe_big", "expected"), [
    (1, True, True, True), (1, False, True, True), (1, True, False, False),
    (2, True, True, False), (3, True, True, False), (2, False, True, True), (2, False, False, False),
])
def test_uses_probe_big_only_where_the_outer_branch_reaches_the_loss(gridsize, object_big, probe_big, expected):
    mc = ModelConfig(gridsize=gridsize, object_big=object_big, probe_big=probe_big)
    assert mc.uses_probe_big is expected
    assert mc.probe_big is probe_big  # the setting itself is kept as given


def test_stitch_crop_at_most_n():
    assert InferenceConfig(model=ModelConfig(N=64), stitch_crop=64).stitch_crop == 64
    with pytest.raises(ConfigError, match=r"InferenceConfig\.stitch_crop: .*<= N = 64, got 65"):
        InferenceConfig(model=ModelConfig(N=64), stitch_crop=65)


def test_model_must_be_a_model_config():
    with pytest.raises(TypeError, match="model"):
        TrainingConfig(model={"N": 64})


def test_converters_for_numbers_and_paths():
    cfg = TrainingConfig(nphotons=1000, train_data_file="a.npz", test_data_file="", output_dir="out")
    assert isinstance(cfg.nphotons, float) and cfg.nphotons == 1000.0
    assert cfg.train_data_file == Path("a.npz") and cfg.test_data_file is None and cfg.output_dir == Path("out")
    assert ModelConfig(probe_scale=2).probe_scale == 2.0
    assert InferenceConfig(model_path="b.zip").model_path == Path("b.zip")


def test_frozen_keyword_only_and_evolve():
    cfg = ModelConfig(gridsize=2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.gridsize = 3
    with pytest.raises(TypeError):
        ModelConfig(64)
    bigger = attrs.evolve(cfg, N=128)
    assert bigger.N == 128 and bigger.gridsize == 2 and cfg.N == 64
    with pytest.raises(ConfigError, match="ModelConfig.N"):
        attrs.evolve(cfg, N=32)


def test_defaults_and_channels():
    t = TrainingConfig()
    assert (t.model.N, t.model.gridsize, t.model.channels, t.batch_size, t.nepochs) == (64, 1, 1, 16, 40)
    assert ModelConfig(gridsize=3).channels == 9
    i = InferenceConfig()
    assert (i.batch_size, i.stitch_crop, i.model_path) == (64, 20, None)
