"""Config instances with every field set to a valid non-default value (shared by the config tests)."""

from __future__ import annotations

from pathlib import Path

import attrs

from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig

# Fields whose validators allow only a few values: pick another allowed one.
CHOICES = {"N": 128, "amp_activation": "swish", "object_window": 0.75, "backend": "tensorflow", "accelerator": "cpu",
           "strategy": "ddp", "stitch_weight": "uniform"}


def _other_value(field: attrs.Attribute, default):
    """A valid value different from the field's default, chosen from the field's type."""
    if field.name in CHOICES:
        return CHOICES[field.name]
    kind = str(field.type)
    if isinstance(default, bool):
        return not default
    if "Path" in kind:
        return Path("data") / f"{field.name}.npz"
    if "int" in kind:
        return 7 if default is None else default + 3
    if "float" in kind:
        return 1234.5 if default is None else default * 2 + 0.25
    raise AssertionError(f"no test value for {field.name} ({kind})")


def non_default(cls: type):
    """An instance of ``cls`` with every field (the nested model too) set to a non-default value."""
    values = {}
    for field in attrs.fields(cls):
        default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
        if field.name == "model":
            values["model"] = non_default(ModelConfig)
            continue
        values[field.name] = _other_value(field, default)
        assert values[field.name] != default, field.name
    if cls is TrainingConfig:
        # gridsize 1 + 3 = 4 would need neighbor_count >= 15 (C - 1); keep the group small instead
        values["model"] = attrs.evolve(values["model"], gridsize=2)
        values["neighbor_count"] = 9
    for name in LEFT_AT_DEFAULT.get(cls, ()):
        values[name] = default_of(cls, name)
    return cls(**values)


#: Fields :func:`non_default` leaves at their default because another non-default field excludes them:
#: several groups per position (``groups_per_position``) and a subset of the positions (``n_groups``)
#: (TrainingConfig's ``n_groups``, the same field type and converter, is non-default).
LEFT_AT_DEFAULT = {InferenceConfig: ("n_groups",)}


def default_of(cls: type, name: str):
    """The default of field ``name`` of ``cls``."""
    default = attrs.fields_dict(cls)[name].default
    return default.factory() if isinstance(default, attrs.Factory) else default
