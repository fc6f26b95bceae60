"""Generate ``docs/configuration.md`` from the attrs configuration classes of ptycho-core.

Every field of :class:`~ptycho_core.config.ModelConfig`, :class:`~ptycho_core.config.TrainingConfig`,
:class:`~ptycho_core.config.InferenceConfig` and :class:`~ptycho_core.corpus.CorpusConfig` is listed
with its type, default, allowed values (read from its validator), the attribute docstring in
``ptycho_core/config.py`` (``corpus.py``), the
``ptycho`` command-line flag and PtychoPINN's legacy key (:mod:`ptycho_core.legacy`).

Usage (from the repository root)::

    python docs/scripts/gen_config_reference.py            # rewrite docs/configuration.md
    python docs/scripts/gen_config_reference.py --check    # exit 1 if the file is out of date

Only ptycho-core is needed; no backend is imported.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path
from typing import Any

import attrs

from ptycho_core import config as config_module
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.corpus import CorpusConfig
from ptycho_core.legacy import FIELD_FOR_LEGACY_KEY, LEGACY_NAME
from ptycho_core.registry import KNOWN_BACKENDS
from ptycho_core.serialize import dumps, to_dict

OUTPUT = Path(__file__).resolve().parents[1] / "configuration.md"
CLASSES = (ModelConfig, TrainingConfig, InferenceConfig, CorpusConfig)
CLI_ALIASES = {"train_data_file": "--train-data", "test_data_file": "--test-data", "model_path": "--model"}
DEPRECATED_KEYS = {"n_images": "n_groups"}


def source_fields(cls: type) -> dict[str, tuple[str, str | None]]:
    """Annotation (as written) and attribute docstring of every field of an attrs class.

    The docstring is the string literal right after the field in the class body.

    Parameters
    ----------
    cls : type
        A class defined in a module whose source is available.

    Returns
    -------
    dict of str to (str, str or None)
        Field name -> (annotation source text, docstring with whitespace collapsed or None).
    """
    tree = ast.parse(inspect.getsource(inspect.getmodule(cls)))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    found: dict[str, tuple[str, str | None]] = {}
    for i, stmt in enumerate(node.body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            nxt = node.body[i + 1] if i + 1 < len(node.body) else None
            doc = None
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                doc = " ".join(nxt.value.value.split())
            found[stmt.target.id] = (ast.unparse(stmt.annotation), doc)
    return found


def _closure(func: Any) -> dict[str, Any]:
    return inspect.getclosurevars(func).nonlocals


def _attrs_validator(name: str) -> type:
    """The class of an :mod:`attrs.validators` validator (``in_``, ``ge``, ``optional``, ...)."""
    v = attrs.validators
    examples = {"in": v.in_((0,)), "number": v.ge(0), "instance_of": v.instance_of(int), "and": v.and_(),
                "optional": v.optional(v.ge(0)), "not": v.not_(v.ge(0))}
    return type(examples[name])


def _describe(validator: Any) -> str | None:
    """What an attrs validator (or an ``and_`` of them) allows; None for a part that only guards the type."""
    if isinstance(validator, _attrs_validator("and")):
        parts = validator._validators
        bounds = [v for v in parts if isinstance(v, _attrs_validator("number"))]
        if bounds:
            integer = any(isinstance(v, _attrs_validator("instance_of")) and v.type is int for v in parts)
            return f"{'integer' if integer else 'number'} " + " and ".join(
                f"{b.compare_op} {b.bound:g}" for b in bounds)
        return next((text for v in parts if (text := _describe(v)) is not None), None)
    if isinstance(validator, _attrs_validator("in")):
        return "one of " + ", ".join(f"`{_value(v)}`" for v in validator.options)
    if isinstance(validator, _attrs_validator("instance_of")) and validator.type is bool:
        return "`true` or `false`"
    return None


def allowed_values(field: attrs.Attribute) -> str:
    """Describe what the field's validator accepts.

    Raises
    ------
    ValueError
        For a validator this generator does not know (so a new kind of validator is
        noticed instead of being documented wrongly).
    """
    validator = field.validator
    if validator is None:
        if field.converter is Path:
            return "a path"
        if field.converter is not None and field.converter.__name__ == "_optional_path":
            return "a path, or not set"
        if field.converter is not None and field.converter.__name__ == "_data_paths":
            return "a path (file, lazy dataset, directory of datasets or glob pattern), a list of paths, or not set"
        raise ValueError(f"{field.name}: no validator and no known converter to describe")
    name = getattr(validator, "__qualname__", type(validator).__name__)
    if name == "_backend_id":
        known = ", ".join(f"`{k}`" for k in sorted(KNOWN_BACKENDS))
        return f"{known}, or the id of an installed third-party backend"
    if name.startswith("_names_from."):
        env = _closure(validator)
        options = env["options"]
        names = "names from " + ", ".join(f"`{_value(v)}`" for v in options) if options else "names"
        return f"a list of distinct {names}" + (" (may be empty)" if env["allow_empty"] else "")
    if name.startswith("_positive_numbers."):
        empty = _closure(validator)["allow_empty"]
        return "a list of numbers > 0" + (" (may be empty)" if empty else " (at least one)")
    if name.startswith("_range."):
        env = _closure(validator)
        bound = "" if env["low"] is None else f", low {'>' if env['strict'] else '>='} {env['low']:g}"
        return f"a pair `[low, high]` with low <= high{bound}"
    if name == "_optional_positive":
        return "number > 0, or not set"
    if isinstance(validator, _attrs_validator("optional")):
        return allowed_values(field.evolve(validator=validator.validator)) + ", or not set"
    if isinstance(validator, config_module._Expect):
        text = _describe(validator.validator)
        if text is not None:
            return text
    if isinstance(validator, _attrs_validator("instance_of")) and attrs.has(validator.type):
        return f"a `{validator.type.__name__}` table"
    raise ValueError(f"{field.name}: unknown validator {name!r}; teach gen_config_reference.py to describe it")


def _value(value: Any) -> str:
    """A value as written in a TOML config file."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, Path)):
        return f'"{value}"'
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e5:
            return f"{value:.1f}"
        return f"{value:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    return str(value)


def default_text(field: attrs.Attribute) -> str:
    """The default of a field, in TOML notation."""
    default = field.default
    if isinstance(default, attrs.Factory):
        factory = default.factory
        if factory is config_module.default_backend:
            return f'`$PTYCHO_BACKEND`, else `"{config_module.DEFAULT_BACKEND}"`'
        if attrs.has(factory):
            return f"`{factory.__name__}()` defaults"
        raise ValueError(f"{field.name}: unknown default factory {factory!r}")
    if default is None:
        return "not set"
    return f"`{_value(default)}`"


def cli_flag(cls: type, field: attrs.Attribute) -> str:
    """The ``ptycho train/run/infer`` flag(s) for a field."""
    if field.name == "model":
        return "(flags of ModelConfig)"
    if cls is CorpusConfig:
        from ptycho.cli_pretrain import corpus_flag

        flag = corpus_flag(field.name)
        if isinstance(field.default, bool):
            flag = f"{flag}, --no-{flag[2:]}"
        return f"`{flag}` (pretrain)"
    flag = f"--{field.name.replace('_', '-')}"
    if field.default is not attrs.NOTHING and isinstance(field.default, bool):
        flag = f"{flag}, --no-{field.name.replace('_', '-')}"
    alias = CLI_ALIASES.get(field.name)
    return f"`{flag}`" + (f", `{alias}`" if alias else "")


def legacy_keys(name: str, cls: type | None = None) -> str:
    """PtychoPINN key(s) read into the field ``name`` (none for the corpus recipe)."""
    if cls is CorpusConfig:
        return "-"
    keys = [LEGACY_NAME.get(name, name)]
    keys += [k for k, target in FIELD_FOR_LEGACY_KEY.items() if target == name and k not in keys]
    text = [f"`{k}`" + (" (deprecated)" if k in DEPRECATED_KEYS else "") for k in keys]
    return ", ".join(text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def class_table(cls: type) -> list[str]:
    """Markdown section for one config class."""
    source = source_fields(cls)
    lines = [f"## {cls.__name__}", "", " ".join(inspect.getdoc(cls).split()), "",
             "| field | type | default | allowed values | CLI flag | PtychoPINN key | description |",
             "|---|---|---|---|---|---|---|"]
    for field in attrs.fields(cls):
        annotation, doc = source[field.name]
        if field.name == "model":
            doc = "Architecture and physics settings (the `[model]` table)."
        elif doc is None:
            raise ValueError(f"{cls.__name__}.{field.name} has no docstring in its module")
        legacy = "(nested)" if field.name == "model" else legacy_keys(field.name, cls)
        cells = [f"`{field.name}`", f"`{annotation}`", default_text(field), allowed_values(field),
                 cli_flag(cls, field), legacy, doc]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines + [""]


def example_toml() -> str:
    """A complete training config file with every default written out (backend pinned to pytorch)."""
    data = {"model": to_dict(ModelConfig()), "training": to_dict(TrainingConfig(backend="pytorch"))}
    del data["training"]["model"]
    return dumps(data, "toml")


HEADER = """\
# Configuration reference

<!-- Generated by docs/scripts/gen_config_reference.py from ptycho_core.config; do not edit by hand.
     Regenerate with: python docs/scripts/gen_config_reference.py -->

ptycho has three configuration classes, all frozen, keyword-only
[attrs](https://www.attrs.org) classes with validators: `ModelConfig` (architecture and
physics, shared by training and inference), `TrainingConfig` and `InferenceConfig` (each
holding a `ModelConfig` in its `model` field), plus the corpus recipe of `ptycho pretrain`,
`CorpusConfig` (the `[corpus]` section; see [Amortised reconstruction](amortised.md)). There
is no global configuration: every function takes the config it needs. Change a value with
`attrs.evolve`.

Configs come from three places, and all three use the field names below:

- **Files** (TOML, JSON or YAML) read by `ptycho_core.serialize.load_config` and by
  `--config FILE` on the command line. A file holds one config at top level (model settings in
  a `model` table) or sections `[model]`, `[training]`, `[inference]`, `[corpus]`; `[model]` is
  shared; `ptycho pretrain` also reads `[corpus]`.
  `ptycho train` reads `[model]` and `[training]`; `ptycho infer` reads `[inference]` (the model
  bundle fixes the model settings); `ptycho run` and `ptycho demo` read all three: they
  reconstruct with the settings `[training]` implies (its model, test data, seed, neighbour
  count, ...) replaced by every key `[inference]` sets. There `[inference]` may repeat but
  not change `model_path`, `test_data_file`, `backend` and `output_dir` (the run decides
  them). Reading is strict: an unknown key, a wrong type or a value outside the allowed values is a
  `ConfigError` naming the file, the field and what is allowed.
- **Command-line flags** of `ptycho train`, `ptycho run`, `ptycho demo`, `ptycho infer` and
  `ptycho pretrain` (column *CLI flag*), applied on top of `--config`.
- **PtychoPINN configs** (`params.cfg` keys or PtychoPINN YAML) through
  `ptycho_core.legacy.load_legacy_config` or `ptycho config show --legacy`; column
  *PtychoPINN key* gives the key read into each field (see [Migrating](migrating.md)).

`ptycho config show FILE` prints a file with every default filled in, and
`ptycho config validate FILE` checks one.

"""


def generate() -> str:
    """The full text of ``docs/configuration.md``."""
    lines = [HEADER.rstrip("\n"), ""]
    for cls in CLASSES:
        lines += class_table(cls)
    lines += [
        "## Legacy keys that ptycho reads but does not use",
        "",
        "PtychoPINN keys with no ptycho equivalent (`bigN`, `offset`, `sim_*`, `probe.type`, ...) are",
        "accepted and reported together in one `LegacyKeyWarning`; any other unknown key is a",
        "`ConfigError` with a \"did you mean\" suggestion. `n_images` is read as `n_groups` with a",
        "`DeprecationWarning` (`n_groups` wins when both are given).",
        "",
        "## A complete training config",
        "",
        "Every default written out (`ptycho config show` prints the same for any file):",
        "",
        "```toml",
        example_toml().rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) ``docs/configuration.md``."""
    from _docgen import write_or_check  # a sibling file: docs/scripts is sys.path[0] when run as a script

    return write_or_check(generate, OUTPUT, __file__, argv)


if __name__ == "__main__":
    sys.exit(main())
