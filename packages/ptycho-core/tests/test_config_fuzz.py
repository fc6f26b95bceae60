"""Fuzzing the config parser (:mod:`ptycho_core.serialize`): random dicts and text give a config or a ConfigError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import attrs
import tomli_w
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError
from ptycho_core.serialize import dumps, from_dict, load_config, resolve_sections, to_dict

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = (ModelConfig, TrainingConfig, InferenceConfig)
FIELD_NAMES = sorted({f.name for cls in CLASSES for f in attrs.fields(cls)} | {"training", "inference", "nepoch"})
GOOD_VALUES = [64, 128, 3, 0, -1, 1e-3, 1e9, True, False, "pytorch", "tensorflow", "cpu", "ddp", "sigmoid",
               "out", "", None]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8),
                    st.sampled_from(GOOD_VALUES))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=6)), inner, max_size=4), max_leaves=10)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10))
config_dicts = st.dictionaries(keys, values, max_size=6)


def _parse(text: str | bytes, suffix: str) -> object:
    """Write ``text`` to a ``.suffix`` file and load it; a ConfigError is fine, anything else fails the test."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            return load_config(path)
        except ConfigError as exc:
            assert str(path) in str(exc), f"message does not name the file: {exc}"
            return None


@FUZZ
@given(config_dicts, st.sampled_from(CLASSES))
def test_random_dicts_from_dict(data: dict, cls: type) -> None:
    try:
        config = from_dict(cls, data, source="fuzz.toml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml: ")
        return
    assert type(config) is cls
    assert from_dict(cls, to_dict(config)) == config  # what loads also round-trips


@FUZZ
@given(config_dicts)
def test_random_dicts_resolve_sections(data: dict) -> None:
    try:
        configs = resolve_sections(data, source="fuzz.json")
    except ConfigError:
        return
    assert configs and all(type(c) in CLASSES for c in configs.values())


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)), st.sampled_from([".toml", ".json", ".yaml"]))
def test_random_text(text: str | bytes, suffix: str) -> None:
    _parse(text, suffix)


def _serialise(data: dict, fmt: str) -> str | None:
    try:
        if fmt == ".toml":
            return tomli_w.dumps(data)
        if fmt == ".json":
            return json.dumps(data)
        return yaml.safe_dump(data)
    except (TypeError, ValueError):  # e.g. None values in TOML, non-string keys in JSON
        return None


@FUZZ
@given(config_dicts, st.sampled_from([".toml", ".json", ".yaml"]))
def test_random_dicts_as_files(data: dict, suffix: str) -> None:
    text = _serialise(data, suffix)
    if text is not None:
        _parse(text, suffix)


EDITS = st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 8), st.text(max_size=4)), min_size=1, max_size=6)


@FUZZ
@given(EDITS, st.sampled_from(["toml", "json", "yaml"]), st.sampled_from([TrainingConfig, InferenceConfig]))
def test_mutated_valid_files(edits: list[tuple[float, int, str]], fmt: str, cls: type) -> None:
    text = dumps(to_dict(cls()), fmt)
    for where, drop, insert in edits:
        pos = int(where * len(text))
        text = text[:pos] + insert + text[pos + drop:]
    _parse(text, f".{fmt}")
