"""``ptycho config show | validate``: inspect configuration files.

``ptycho config show FILE`` prints the fully resolved configuration (every field, with
defaults filled in) as TOML, JSON or YAML; ``--legacy`` reads FILE as a PtychoPINN
config (legacy ``params.cfg`` keys or PtychoPINN YAML), so
``ptycho config show old.yaml --legacy > new.toml`` converts one; ``--to-legacy`` prints
PtychoPINN's key names instead. ``ptycho config validate FILE`` prints
``FILE: valid TrainingConfig`` or fails with the error (exit code 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

FORMAT_CHOICES = ("toml", "json", "yaml")


def _section_name(config: Any) -> str:
    from ptycho_core.serialize import SECTIONS  # lazy (like every import below): keeps `ptycho --help` fast

    return next(name for name, cls in SECTIONS.items() if isinstance(config, cls))


def _load(path: Path, legacy: bool) -> tuple[dict[str, Any], bool]:
    """Configs in ``path`` keyed by section name, and whether the file used sections."""
    if legacy:
        from ptycho_core.legacy import load_legacy_config

        config = load_legacy_config(path)
        return {_section_name(config): config}, False
    from ptycho_core.serialize import has_sections, read_config_file, resolve_sections

    data = read_config_file(path)
    return resolve_sections(data, source=path), has_sections(data)


def cmd_show(args: argparse.Namespace) -> int:
    """Print the resolved config(s) of ``args.file`` in ``args.format``."""
    from ptycho_core.serialize import dumps, to_dict

    configs, sectioned = _load(args.file, args.legacy)
    if args.to_legacy:
        from ptycho_core.legacy import to_legacy_dict

        convert = to_legacy_dict
    else:
        convert = to_dict
    plain = {name: convert(config) for name, config in configs.items()}
    data = plain if sectioned else next(iter(plain.values()))
    print(dumps(data, args.format), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Load ``args.file`` and print which configs it holds; errors propagate as ConfigError."""
    configs, _ = _load(args.file, args.legacy)
    kinds = ", ".join(type(config).__name__ for config in configs.values())
    print(f"{args.file}: valid {kinds}")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``config show`` and ``config validate`` to the ``ptycho`` sub-parsers."""
    parser = subparsers.add_parser(
        "config",
        help="show or validate a configuration file (TOML/JSON/YAML, or PtychoPINN's with --legacy)",
        description="Show the fully resolved configuration of a file, or check that it is valid.",
    )
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    show = actions.add_parser("show", help="print the resolved configuration, defaults included",
                              description="Print the configuration in FILE with every default filled in.")
    show.add_argument("file", type=Path, metavar="FILE", help="config file (.toml, .json, .yaml or .yml)")
    show.add_argument("--format", choices=FORMAT_CHOICES, default="toml", help="output format (default: toml)")
    show.add_argument("--legacy", action="store_true", help="FILE is a PtychoPINN config (legacy key names)")
    show.add_argument("--to-legacy", action="store_true", help="print PtychoPINN's legacy key names (params.cfg)")
    show.set_defaults(func=cmd_show)

    validate = actions.add_parser("validate", help="check a configuration file and say which configs it holds",
                                  description="Check FILE; print 'FILE: valid <class>' or the error.")
    validate.add_argument("file", type=Path, metavar="FILE", help="config file (.toml, .json, .yaml or .yml)")
    validate.add_argument("--legacy", action="store_true", help="FILE is a PtychoPINN config (legacy key names)")
    validate.set_defaults(func=cmd_validate)
    return parser
