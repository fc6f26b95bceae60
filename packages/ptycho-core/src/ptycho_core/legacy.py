"""PtychoPINN configurations: legacy ``params.cfg`` keys and YAML config files.

PtychoPINN keeps settings in a global dict with dotted names (``object.big``,
``probe.trainable``, ``output_prefix``, ...) and in YAML files that use its dataclass
field names, flat or in ``model:`` / ``training:`` / ``inference:`` sections (newer
files also have ``data:``, ``sampling:``, ``tf_loss:`` and ``loss:``). Both read here.

* Keys mapped to ptycho fields: see :data:`LEGACY_NAME` (field -> legacy key) plus
  ``K`` -> ``neighbor_count`` and ``n_images`` -> ``n_groups`` (deprecated, with a
  :class:`DeprecationWarning`; ``n_groups`` wins when both are given). Every ptycho field
  name (PtychoPINN's dataclass names) is accepted too.
* Keys PtychoPINN has that ptycho does not use (``bigN``, ``offset``, ``sim_*``,
  ``probe.type``, ...) and keys of fields the chosen class does not have (``nepochs``
  for inference) are reported together in one :class:`LegacyKeyWarning`.
* Anything else is a :class:`~ptycho_core.errors.ConfigError` with "did you mean".
* ``None`` values mean "not set" (PtychoPINN's own ``update_legacy_dict`` skips them):
  the field keeps its default.

:func:`to_legacy_dict` exports the other way; fields PtychoPINN has no name for
(``learning_rate``, ``seed``, ``stitch_crop``, ...) keep their ptycho names so that
``from_legacy_dict(to_legacy_dict(c)) == c``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import attrs

from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError, did_you_mean
from ptycho_core.serialize import Config, from_dict, read_config_file, to_dict

__all__ = [
    "FIELD_FOR_LEGACY_KEY",
    "LEGACY_NAME",
    "LegacyKeyWarning",
    "from_legacy_dict",
    "is_ignored_legacy_key",
    "load_legacy_config",
    "to_legacy_dict",
]


class LegacyKeyWarning(UserWarning):
    """PtychoPINN keys that ptycho read but does not use."""


LEGACY_NAME: dict[str, str] = {
    "object_big": "object.big",
    "probe_big": "probe.big",
    "probe_mask": "probe.mask",
    "probe_trainable": "probe.trainable",
    "intensity_scale_trainable": "intensity_scale.trainable",
    "positions_provided": "positions.provided",
    "output_dir": "output_prefix",
    "train_data_file": "train_data_file_path",
    "test_data_file": "test_data_file_path",
}
"""ptycho field -> PtychoPINN legacy key, where the two differ."""

FIELD_FOR_LEGACY_KEY: dict[str, str] = {
    **{legacy: name for name, legacy in LEGACY_NAME.items()},
    "K": "neighbor_count",
    "n_images": "n_groups",
}
"""PtychoPINN legacy key -> ptycho field, where the two differ."""

_IGNORED_KEYS = frozenset(
    """
    bigN offset bigoffset h w outer_offset_train outer_offset_test big_gridsize max_position_jitter
    default_probe_scale tv_weight realspace_mae_weight nimgs_train nimgs_test data_source set_phi
    model_type label size h5_path npseed debug use_xla_translate intensity_scale probe probe.type
    n_subsample subsample_seed sequential_sampling enable_oversampling neighbor_pool_size architecture
    learned_input_channels max_hidden_channels resnet_width generator_output_mode object_layout
    training_canvas training_patch_weighting optimizer weight_decay momentum scheduler gradient_clip
    execution simulation objects_per_probe diff_per_object object_class scan_kind beamstop_diameter
    """.split()
)
_IGNORED_PREFIXES = ("sim_", "fno_", "plateau_", "torch_", "adam_", "lr_", "gradient_clip_", "probe_mask_",
                     "probe_source", "probe_npz", "probe_transform")
_FLATTENED_SECTIONS = ("model", "training", "inference", "data", "sampling", "tf_loss", "loss")

_MODEL_FIELDS = [f.name for f in attrs.fields(ModelConfig)]
_RUN_FIELDS = sorted({f.name for c in (TrainingConfig, InferenceConfig) for f in attrs.fields(c)} - {"model"})
_FIELDS = set(_MODEL_FIELDS) | set(_RUN_FIELDS)
_ONLY_TRAINING = {f.name for f in attrs.fields(TrainingConfig)} - {f.name for f in attrs.fields(InferenceConfig)}
_ONLY_INFERENCE = {f.name for f in attrs.fields(InferenceConfig)} - {f.name for f in attrs.fields(TrainingConfig)}


def is_ignored_legacy_key(key: str) -> bool:
    """True for a PtychoPINN key that ptycho knows and deliberately does not use."""
    return key in _IGNORED_KEYS or key.startswith(_IGNORED_PREFIXES)


def _items(d: Mapping[str, Any], where: str) -> tuple[list[tuple[Any, Any, str]], set[str]]:
    """Flatten PtychoPINN sections into (key, value, label) triples; also return the sections seen."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: expected a mapping of PtychoPINN settings, got {type(d).__name__}")
    items, sections = [], set()
    for key, value in d.items():
        if key in _FLATTENED_SECTIONS and isinstance(value, Mapping):
            sections.add(key)
            items.extend((k, v, f"{key}.{k}") for k, v in value.items())
        else:
            items.append((key, value, str(key)))
    return items, sections


def _choose(cls: type | None, sections: set[str], fields: set[str]) -> type:
    if cls is not None:
        if cls not in (ModelConfig, TrainingConfig, InferenceConfig):
            raise ConfigError(f"cls must be ModelConfig, TrainingConfig or InferenceConfig, got {cls!r}")
        return cls
    if "training" in sections or "inference" in sections:
        return TrainingConfig if "training" in sections else InferenceConfig
    return InferenceConfig if fields & _ONLY_INFERENCE and not fields & _ONLY_TRAINING else TrainingConfig


def from_legacy_dict(
    d: Mapping[str, Any], cls: type | None = None, *, source: str | os.PathLike | None = None
) -> Config:
    """Build a config from PtychoPINN settings (legacy keys or dataclass names, flat or in sections).

    Parameters
    ----------
    d
        A ``params.cfg``-style dict or the parsed content of a PtychoPINN YAML config.
    cls
        The class to build; ``None`` picks ``InferenceConfig`` for an ``inference:``
        section without ``training:``, or for inference-only keys (``model_path``,
        ``stitch_crop``, ...) without training-only keys, and ``TrainingConfig`` otherwise.
    source
        Name of the file or dict, used in messages.

    Raises
    ------
    ConfigError
        For unknown keys, the same setting given twice with different values, and
        invalid values.
    """
    where = str(source) if source is not None else "legacy config"
    items, sections = _items(d, where)
    fields: dict[str, tuple[Any, str]] = {}
    ignored, unknown, alias = [], [], None
    for key, value, label in items:
        if key == "n_images":
            alias = (value, label)
            continue
        target = FIELD_FOR_LEGACY_KEY.get(key, key if key in _FIELDS else None) if isinstance(key, str) else None
        if target is None:
            (ignored if isinstance(key, str) and is_ignored_legacy_key(key) else unknown).append(label)
        elif value is not None:
            if target in fields and fields[target][0] != value:
                raise ConfigError(
                    f"{where}: {target} given twice with different values: "
                    f"{fields[target][1]}={fields[target][0]!r} and {label}={value!r}"
                )
            fields[target] = (value, label)
    if unknown:
        known = sorted(_FIELDS | set(FIELD_FOR_LEGACY_KEY))
        hints = "; ".join(f"{k!r}{did_you_mean(k, known)}" for k in unknown)
        raise ConfigError(f"{where}: unknown PtychoPINN keys: {hints}")
    if alias is not None and alias[0] is not None:
        used = "n_groups" not in fields
        warnings.warn(
            f"{where}: '{alias[1]}' is deprecated, use 'n_groups'"
            + (f" (read as n_groups={alias[0]!r})" if used else " (ignored: n_groups is also given)"),
            DeprecationWarning,
            stacklevel=2,
        )
        if used:
            fields["n_groups"] = (alias[0], alias[1])
    cls = _choose(cls, sections, set(fields))
    own = {f.name for f in attrs.fields(cls)} - {"model"}
    model = {k: v for k, (v, _) in fields.items() if k in _MODEL_FIELDS}
    run = {k: v for k, (v, _) in fields.items() if k in own}
    ignored += [f"{label} (not used by {cls.__name__})" for k, (_, label) in fields.items()
                if k not in own and k not in _MODEL_FIELDS]
    if ignored:
        warnings.warn(f"{where}: ignored PtychoPINN keys that ptycho does not use: {', '.join(ignored)}",
                      LegacyKeyWarning, stacklevel=2)
    data = model if cls is ModelConfig else {"model": model, **run}
    return from_dict(cls, data, source=where)


def to_legacy_dict(config: Config) -> dict[str, Any]:
    """Flat dict with PtychoPINN's legacy key names (``object.big``, ``output_prefix``, ...).

    Paths become strings; ``None`` values are kept. Fields PtychoPINN has no name for
    keep their ptycho names.
    """
    data = to_dict(config)
    model = data if isinstance(config, ModelConfig) else data.pop("model")
    out = {LEGACY_NAME.get(k, k): v for k, v in model.items()}
    if not isinstance(config, ModelConfig):
        out.update({LEGACY_NAME.get(k, k): v for k, v in data.items()})
    return out


def load_legacy_config(path: str | os.PathLike, cls: type | None = None) -> Config:
    """Read a PtychoPINN config file (YAML, or JSON/TOML with the same keys); see :func:`from_legacy_dict`."""
    return from_legacy_dict(read_config_file(path), cls, source=path)
