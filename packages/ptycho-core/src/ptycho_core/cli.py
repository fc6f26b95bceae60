"""The ``ptycho`` command line.

Subcommands register themselves: ptycho-core adds ``backends``, ``info`` and ``config``; other
installed packages add theirs through the ``ptycho.commands`` entry-point group (ptycho-data:
``simulate``, ``import``, ``fixture``; the ``ptycho`` application: ``train``, ``infer``, ``run``,
``demo``, ``evaluate``, ``convert``, ``pretrain``) (a
callable taking the argparse sub-parsers object). Each subcommand sets
``func(args) -> int``. Errors print one line (``ptycho: error: ...``) and exit with 2
for bad input or configuration, 1 otherwise; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

from ptycho_core import __version__
from ptycho_core.console import configure_logging
from ptycho_core.errors import PtychoError, PtychoInputError

COMMANDS_GROUP = "ptycho.commands"


def _cmd_backends(args: argparse.Namespace) -> int:
    from ptycho_core import backends

    entries = backends.available()
    installed = [e for e in entries if e.installed]
    missing = [e for e in entries if not e.installed]
    if installed:
        print("Installed backends:")
        for e in installed:
            frameworks = framework_versions(e.distribution)
            line = f"  {e.id:<12} {e.distribution} {e.version or ''}".rstrip()
            print(f"{line} ({frameworks})" if frameworks else line)
            if args.devices:
                _print_devices(e.id)
    else:
        print("No backend is installed.")
    if missing:
        print("Available to install:")
        for e in missing:
            print(f"  {e.id:<12} {e.install_command}")
    return 0


#: Distributions shown next to a backend in ``ptycho backends`` when the backend requires them.
FRAMEWORK_DISTRIBUTIONS = ("torch", "lightning", "tensorflow", "tensorflow-cpu", "keras", "jax")


def framework_versions(distribution: str) -> str:
    """``"torch 2.13.0, lightning 2.6.6"``: installed versions of the deep-learning frameworks that
    ``distribution`` requires, read from package metadata only (nothing is imported)."""
    import re
    from importlib import metadata

    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return ""
    found = []
    for requirement in requires:
        if "extra ==" in requirement.partition(";")[2].replace("extra==", "extra =="):
            continue  # optional extras are not what the backend runs on
        name = re.split(r"[\s<>=!~\[;(]", requirement.strip(), maxsplit=1)[0].lower()
        if name in FRAMEWORK_DISTRIBUTIONS:
            try:
                found.append(f"{name} {metadata.version(name)}")
            except metadata.PackageNotFoundError:
                found.append(f"{name} not installed")
    return ", ".join(found)


def _cmd_info(args: argparse.Namespace) -> int:
    from ptycho_core import provenance

    record, source = provenance.read(args.result)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(provenance.format_text(record, source))
    return 0


def _print_devices(backend_id: str) -> None:
    from ptycho_core import backends

    try:
        info = backends.get(backend_id).info
    except PtychoError as exc:
        print(f"      error: {exc}")
        return
    versions = ", ".join(f"{k} {v}" for k, v in info.framework_versions.items())
    print(f"      framework: {info.framework} ({versions})")
    print(f"      devices:   {', '.join(info.devices) or 'none found'}")


def _core_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """The ``ptycho`` parser with ptycho-core's own commands, and its sub-parsers object."""
    parser = argparse.ArgumentParser(
        prog="ptycho",
        description="Physics-informed neural-network ptychography: simulate, train, reconstruct, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"ptycho-core {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks and ptycho's debug log lines (not those of matplotlib)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "backends",
        help="list installed backends (no framework import) and the ones you can install",
        description="List installed ptycho backends and known backends that are not installed.",
    )
    p.add_argument("--devices", action="store_true", help="load each installed backend and list the devices it sees")
    p.set_defaults(func=_cmd_backends)

    p = sub.add_parser(
        "info",
        help="show how a result was made: config, inputs (sha256), versions, command line, times, device",
        description="Print the provenance recorded in a result: a result directory (summary.json), a model "
                    "bundle (directory or .zip), a summary.json or manifest.json, or a reconstruction.npz.",
    )
    p.add_argument("result", type=Path, help="result directory, bundle, summary.json or reconstruction.npz")
    p.add_argument("--json", action="store_true", help="print the raw provenance record as JSON")
    p.set_defaults(func=_cmd_info)

    from ptycho_core.cli_config import register as register_config

    register_config(sub)
    return parser, sub


def _add_extension_commands(sub: argparse._SubParsersAction) -> None:
    for ep in sorted(metadata.entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken extension must not take the whole CLI down
            print(f"ptycho: warning: commands from {ep.value} unavailable: {exc}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The full ``ptycho`` parser, including commands contributed by other packages."""
    parser, sub = _core_parser()
    _add_extension_commands(sub)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first argument not starting with ``-``), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """``build_parser()``, minus the extension commands when ``argv`` names a ptycho-core command.

    Importing the extensions (to register their sub-parsers) costs start-up time, and a
    ptycho-core command such as ``ptycho backends`` does not need them; ``ptycho --help``
    and extension commands get the full parser.
    """
    parser, sub = _core_parser()
    if _command_of(argv) not in sub.choices:
        _add_extension_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ptycho`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser_for(argv)
    args = parser.parse_args(argv)
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    configure_logging(quiet=quiet, verbose=verbose, debug=args.debug)
    if quiet:
        args.progress = False  # the config field (train, infer, run, demo) or simulate's --progress
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    args.command_line = ["ptycho", *argv]
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("ptycho: interrupted", file=sys.stderr)
        return 130
    except (PtychoError, OSError) as exc:
        if args.debug:
            raise
        message = str(exc).replace("\n", " ")
        print(f"ptycho: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, (PtychoInputError, OSError)) else 1


if __name__ == "__main__":
    sys.exit(main())
