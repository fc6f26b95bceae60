"""Configuration files: dicts, TOML/JSON/YAML, and PtychoPINN's legacy keys.

This is the one module that turns :mod:`ptycho_core.config` objects into plain data and
back (a :mod:`cattrs` converter: ``Path`` <-> ``str``, nested attrs classes as tables).
Reading is strict: an unknown key, a value of the wrong type (``"abc"`` or ``2.5`` for an
integer, ``"yes"`` for a boolean) or a value a validator rejects raises
:class:`~ptycho_core.errors.ConfigError` naming the file, the field, the value and what
is allowed. Failures that no input could cause (say, a backend plugin that cannot be
imported while checking ``backend``) propagate unchanged instead of posing as bad input.

File layouts (``.toml``, ``.json``, ``.yaml``/``.yml``) read by :func:`load_config`:

* one config at top level: its fields, with the model settings in a ``model`` table
  (what :func:`save_config` writes for a single config);
* sections: ``[model]``, ``[training]``, ``[inference]``. ``[model]`` is shared by the
  other two (giving it both there and as ``[training.model]`` is an error).

With ``cls=None`` the class is chosen like this: a sectioned file gives the config of
its one ``[training]`` or ``[inference]`` section (both present: an error, pass
``cls``), or a :class:`~ptycho_core.config.ModelConfig` when it only has ``[model]``.
A top-level file gives a ``ModelConfig`` when every key is a ``ModelConfig`` field, an
``InferenceConfig`` when it has an inference-only key (``model_path``, ``stitch_crop``,
``flip_x``, ...) and no training-only key, and a ``TrainingConfig`` otherwise (an empty
file is a default ``TrainingConfig``). TOML has no null: ``None`` fields are left out
on save and take their default (``None``) on load. PyYAML's YAML 1.1 reads ``1e9`` as
a string; the loader here reads it as the float YAML 1.2 says it is.

PtychoPINN configs (``params.cfg`` dicts and YAML files) go through
:func:`from_legacy_dict`, :func:`load_legacy_config` and :func:`to_legacy_dict`
(implemented in :mod:`ptycho_core.legacy`, re-exported here).
"""

from __future__ import annotations

import json
import numbers
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import tomli_w
import yaml
from cattrs.errors import AttributeValidationNote, BaseValidationError, ForbiddenExtraKeysError

from ptycho_core.atomic import write_text
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.corpus import CorpusConfig
from ptycho_core.errors import ConfigError, did_you_mean

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = [
    "FORMATS",
    "SECTIONS",
    "dumps",
    "from_dict",
    "has_sections",
    "load_config",
    "load_config_sections",
    "load_section",
    "read_config_file",
    "resolve_sections",
    "save_config",
    "to_dict",
]

FORMATS = {".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}
"""File suffix -> format name."""
SECTIONS: dict[str, type] = {"model": ModelConfig, "training": TrainingConfig, "inference": InferenceConfig,
                             "corpus": CorpusConfig}
"""Section name -> config class, in file order (``[corpus]``: the recipe of ``ptycho pretrain``)."""
Config = ModelConfig | TrainingConfig | InferenceConfig | CorpusConfig
_WITH_MODEL = ("training", "inference")
"""Sections whose config holds the shared ``[model]`` settings."""

for _cls in SECTIONS.values():
    attrs.resolve_types(_cls)


def _names(cls: type) -> list[str]:
    return [f.name for f in attrs.fields(cls)]


_ONLY_TRAINING = set(_names(TrainingConfig)) - set(_names(InferenceConfig))
_ONLY_INFERENCE = set(_names(InferenceConfig)) - set(_names(TrainingConfig))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Mismatch(Exception):
    """A value of the wrong type (turned into a ConfigError naming the field)."""

    def __init__(self, expected: str, value: Any):
        super().__init__(expected)
        self.expected = expected
        self.value = value


def _as_int(value: Any, _: type) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Mismatch("an integer", value)


def _as_float(value: Any, _: type) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            pass
    raise _Mismatch("a number", value)


def _as_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy.bool_ too
        return bool(value)
    raise _Mismatch("true or false", value)


def _as_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise _Mismatch("a string", value)


def _as_path(value: Any, _: type) -> Path:
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise _Mismatch("a path string", value)


DATA_PATHS = attrs.fields(TrainingConfig).train_data_file.type
"""Type of ``TrainingConfig.train_data_file``: one path or a list of them."""


def _as_data_paths(value: Any, _: type) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, os.PathLike)) for v in value):
        return tuple(Path(v) for v in value)
    raise _Mismatch("a path string or a non-empty list of path strings", value)


def _data_paths_out(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None if value is None else str(value)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind, hook in ((int, _as_int), (float, _as_float), (bool, _as_bool), (str, _as_str), (Path, _as_path)):
        conv.register_structure_hook(kind, hook)
    conv.register_unstructure_hook(Path, str)
    conv.register_structure_hook_func(lambda t: t == DATA_PATHS, _as_data_paths)
    conv.register_unstructure_hook_func(lambda t: t == DATA_PATHS, _data_paths_out)
    return conv


converter = _make_converter()
"""The cattrs converter used for every config (strict primitive hooks)."""


def to_dict(config: Config) -> dict[str, Any]:
    """Plain-data form of a config: nested dicts, paths as strings, ``None`` kept.

    Parameters
    ----------
    config
        A ``ModelConfig``, ``TrainingConfig`` or ``InferenceConfig``.

    Returns
    -------
    dict
        Field name -> value; the model settings of a training/inference config are
        the nested dict ``"model"``.
    """
    if type(config) not in SECTIONS.values():
        raise ConfigError(f"to_dict: expected a ModelConfig, TrainingConfig, InferenceConfig or CorpusConfig, "
                          f"got {_show(config)}")
    return _lists(converter.unstructure(config))


def _lists(data: Any) -> Any:
    """Tuples (CorpusConfig's lists) as lists, so every format (YAML included) writes them as arrays."""
    if isinstance(data, dict):
        return {k: _lists(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_lists(v) for v in data]
    return data


def _unknown_key(cls: type, key: Any, where: str) -> str:
    names = _names(cls)
    msg = f"{where}: unknown key {_show(key)}"
    if not isinstance(key, str):
        return msg + f" (keys must be field names: {', '.join(names)})"
    if cls is not ModelConfig and key in _names(ModelConfig):
        return msg + f" ({key!r} is a ModelConfig field: put it in the 'model' table)"
    from ptycho_core.legacy import FIELD_FOR_LEGACY_KEY, is_ignored_legacy_key

    target = FIELD_FOR_LEGACY_KEY.get(key)
    if target is not None or is_ignored_legacy_key(key):
        hint = f"PtychoPINN's name for {target!r}; " if target is not None else "a PtychoPINN key; "
        return msg + f" ({hint}read PtychoPINN configs with load_legacy_config or `ptycho config show --legacy`)"
    return msg + did_you_mean(key, names)


def _check_keys(cls: type, data: Any, where: str, errors: list[str]) -> None:
    if not isinstance(data, Mapping):
        errors.append(f"{where}: expected a table of {cls.__name__} fields, got {_show(data)}")
        return
    fields = attrs.fields_dict(cls)
    for key, value in data.items():
        if not isinstance(key, str) or key not in fields:
            errors.append(_unknown_key(cls, key, where))
        elif attrs.has(fields[key].type):  # a nested table (model): None or a scalar is an error too
            _check_keys(fields[key].type, value, f"{where}.{key}", errors)


def _explain(exc: BaseException, where: str, out: list[str], bugs: list[BaseException]) -> None:
    """Turn a cattrs exception group into messages; anything not caused by the input goes to ``bugs``."""
    if isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            notes = [n for n in getattr(sub, "__notes__", []) if isinstance(n, AttributeValidationNote)]
            _explain(sub, f"{where}.{notes[0].name}" if notes else where, out, bugs)
    elif isinstance(exc, _Mismatch):
        out.append(f"{where}: expected {exc.expected}, got {_show(exc.value)}")
    elif isinstance(exc, ConfigError):
        out.append(str(exc))
    elif isinstance(exc, ForbiddenExtraKeysError):
        out.append(f"{where}: unknown keys {sorted(map(str, exc.extra_fields))}")
    else:
        bugs.append(exc)


def from_dict(cls: type, data: Any, *, source: str | os.PathLike | None = None) -> Config:
    """Build and validate a config from plain data (the inverse of :func:`to_dict`).

    Parameters
    ----------
    cls
        ``ModelConfig``, ``TrainingConfig`` or ``InferenceConfig``.
    data
        Mapping of field names to values; missing fields take their defaults. Paths may
        be strings or ``Path``; integers are accepted for floats, integral floats for
        integers.
    source
        Where the data came from (a file name); prefixed to every error message.

    Raises
    ------
    ConfigError
        For an unknown key (with "did you mean"), a value of the wrong type or a value
        a validator rejects; the message names the source, the field and the value.
    """
    if cls not in SECTIONS.values():
        raise ConfigError(f"from_dict: expected ModelConfig, TrainingConfig, InferenceConfig or CorpusConfig, "
                          f"got {_show(cls)}")
    prefix = f"{source}: " if source is not None else ""
    errors: list[str] = []
    _check_keys(cls, data, cls.__name__, errors)
    if not errors:
        try:
            return converter.structure(dict(data), cls)
        except Exception as exc:  # cattrs exception groups: each leaf becomes one message
            bugs: list[BaseException] = []
            _explain(exc, cls.__name__, errors, bugs)
            if bugs:  # not a bad value (e.g. a broken plugin import): let it surface unchanged
                raise bugs[0] from exc
    raise ConfigError(prefix + "; ".join(errors)) from None


def _format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: unknown config file type {path.suffix!r}; expected one of {', '.join(FORMATS)}")
    return fmt


class _Yaml12Loader(yaml.SafeLoader):
    """Safe loader that also reads ``1e9``/``-2.5E-3`` (no dot) as floats, as YAML 1.2 does."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a ``.toml``, ``.json`` or ``.yaml``/``.yml`` file into a dict (an empty file is ``{}``).

    Raises
    ------
    ConfigError
        If the file cannot be read, is malformed (with the parser's message) or does not
        hold a table/mapping at top level.
    """
    path = Path(path)
    fmt = _format_of(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {getattr(exc, 'strerror', None) or exc}") from exc
    try:
        if fmt == "toml":
            data = tomllib.loads(text)
        elif fmt == "json":
            data = json.loads(text) if text.strip() else {}
        else:
            data = yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError, RecursionError) as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"{path}: malformed {fmt.upper()}: {message}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/mapping of settings at top level, got {type(data).__name__}")
    return data


def has_sections(data: Mapping[str, Any]) -> bool:
    """True if ``data`` uses the ``[model]``/``[training]``/``[inference]``/``[corpus]`` section layout."""
    keys = set(data)
    only_model = keys == {"model"} and isinstance(data["model"], Mapping)
    return bool(keys & {"training", "inference", "corpus"}) or only_model


def _section(data: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    body = data.get(name, {})
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where}: section [{name}] must be a table, got {_show(body)}")
    body = dict(body)
    shared = data.get("model")
    if name in _WITH_MODEL and shared is not None:
        if "model" in body:
            raise ConfigError(f"{where}: model settings given twice, in [model] and [{name}.model]; keep one")
        body["model"] = shared
    return body


def _label(where: Any, name: str, data: Mapping[str, Any]) -> str:
    return f"{where} [{name}]" if name in data else str(where)


def _guess_flat(data: Mapping[str, Any], where: str) -> type:
    keys = set(data) - {"model"}
    if data and "model" not in data and keys <= set(_names(ModelConfig)):
        return ModelConfig
    training, inference = keys & _ONLY_TRAINING, keys & _ONLY_INFERENCE
    if training and inference:
        raise ConfigError(
            f"{where}: training-only keys {sorted(training)} and inference-only keys {sorted(inference)} at top level; "
            "put them in [training] and [inference] sections"
        )
    return InferenceConfig if inference else TrainingConfig


def resolve_sections(data: Mapping[str, Any], *, source: str | os.PathLike | None = None) -> dict[str, Config]:
    """Every config a file's data describes, keyed by section name (see the module docstring).

    A top-level file gives one entry (its guessed class); a sectioned file gives one per
    ``[training]``/``[inference]`` section, or ``{"model": ...}`` if it only has ``[model]``.
    """
    where = str(source) if source is not None else "config"
    if not has_sections(data):
        cls = _guess_flat(data, where)
        name = next(k for k, v in SECTIONS.items() if v is cls)
        return {name: from_dict(cls, data, source=source)}
    extra = [k for k in data if k not in SECTIONS]
    if extra:
        key = extra[0]
        raise ConfigError(
            f"{where}: unknown section {_show(key)}; a file with sections may only hold "
            f"[model], [training], [inference], [corpus]" + did_you_mean(str(key), list(SECTIONS))
        )
    names = [n for n in ("training", "inference", "corpus") if n in data]
    if not [n for n in names if n in _WITH_MODEL]:
        names = ["model", *names]
    return {n: from_dict(SECTIONS[n], _section(data, n, where), source=_label(where, n, data)) for n in names}


def load_config_sections(path: str | os.PathLike) -> dict[str, Config]:
    """Read a config file and return every config in it, keyed by section name."""
    return resolve_sections(read_config_file(path), source=path)


def load_config(path: str | os.PathLike, cls: type | None = None) -> Config:
    """Read one config from a TOML/JSON/YAML file.

    Parameters
    ----------
    path
        ``.toml``, ``.json``, ``.yaml`` or ``.yml`` file.
    cls
        ``ModelConfig``, ``TrainingConfig`` or ``InferenceConfig``; ``None`` picks one
        from the file's content (rules in the module docstring). With sections, ``cls``
        selects its section plus the shared ``[model]`` (defaults if the section is absent).

    Raises
    ------
    ConfigError
        For unreadable or malformed files and invalid content; messages name the file.
    """
    data = read_config_file(path)
    if cls is None:
        configs = resolve_sections(data, source=path)
        if len(configs) > 1:
            names = [f"[{n}]" for n in configs]
            held = f"both {names[0]} and {names[1]}" if len(names) == 2 else "sections " + ", ".join(names)
            raise ConfigError(f"{path}: holds {held}; pass cls= to choose one")
        return next(iter(configs.values()))
    if cls not in SECTIONS.values():
        raise ConfigError(f"load_config: cls must be ModelConfig, TrainingConfig, InferenceConfig or CorpusConfig, "
                          f"got {_show(cls)}")
    if not has_sections(data):
        return from_dict(cls, data, source=path)
    name = next(k for k, v in SECTIONS.items() if v is cls)
    if cls is ModelConfig and "model" not in data:
        owner = next((n for n in ("training", "inference") if isinstance(data.get(n), Mapping)), None)
        body = dict(data[owner]).get("model", {}) if owner else {}
        return from_dict(ModelConfig, body, source=f"{path} [{owner}.model]")
    return from_dict(cls, _section(data, name, str(path)), source=_label(path, name, data))


def load_section(path: str | os.PathLike, cls: type) -> tuple[Config, frozenset[str]]:
    """The config of class ``cls`` in a file and the names of the fields the file itself sets for it.

    Like :func:`load_config` with ``cls``; the second item lists the keys written in the
    file for that config: those of its section (``[inference]`` for ``InferenceConfig``),
    plus ``"model"`` when the model settings come from the shared ``[model]`` or a nested
    table. For a file without sections it is the file's top-level keys. Commands that
    derive a config from another one (``ptycho run`` derives its inference settings from
    the training settings) use it to take exactly what the file says.
    """
    data = read_config_file(path)
    config = load_config(path, cls)
    if not has_sections(data):
        return config, frozenset(map(str, data))
    name = next(k for k, v in SECTIONS.items() if v is cls)
    body = data.get(name)
    keys = set(body) if isinstance(body, Mapping) else set()
    if name != "model" and isinstance(data.get("model"), Mapping):
        keys.add("model")
    return config, frozenset(map(str, keys))


def _drop_none(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    return data


def dumps(data: Mapping[str, Any], fmt: str) -> str:
    """Serialise plain data as ``"toml"`` (``None`` values left out), ``"json"`` or ``"yaml"``."""
    if fmt == "toml":
        return tomli_w.dumps(_drop_none(data))
    if fmt == "json":
        return json.dumps(data, indent=2, allow_nan=False) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
    raise ConfigError(f"unknown format {fmt!r}; expected one of toml, json, yaml")


def _plain(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        if "model" in config and len(config) > 1:
            raise ConfigError("save_config: [training] and [inference] already hold their model settings; "
                              "leave out the 'model' section (or save it alone)")
        out = {}
        for name, value in config.items():
            if SECTIONS.get(name) is not type(value):
                raise ConfigError(f"save_config: section {name!r} must hold a {SECTIONS.get(name, 'known section')}, "
                                  f"got {_show(value)} (sections: {', '.join(SECTIONS)})")
            out[name] = to_dict(value)
        return out
    return to_dict(config)


def save_config(config: Config | Mapping[str, Config], path: str | os.PathLike) -> Path:
    """Write a config (or ``{"training": ..., "inference": ...}`` sections) atomically.

    The text is produced first and written with :func:`ptycho_core.atomic.write_text`, so a
    failure never leaves a partial file and the file gets the umask's mode.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    text = dumps(_plain(config), _format_of(path))
    write_text(path, text)
    return path


_LEGACY_EXPORTS = ("from_legacy_dict", "to_legacy_dict", "load_legacy_config", "LegacyKeyWarning")


def __getattr__(name: str) -> Any:
    # PtychoPINN support lives in ptycho_core.legacy (which imports this module).
    if name in _LEGACY_EXPORTS:
        from ptycho_core import legacy

        return getattr(legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
