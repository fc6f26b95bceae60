"""The application's commands of the ``ptycho`` command line.

ptycho-core owns the ``ptycho`` console script and its kernel commands (``backends``, ``info``,
``config``); this package adds the workflow commands (``train``, ``infer``, ``run``, ``demo``,
``evaluate``, ``convert``, ``pretrain``, ``models``) through the ``ptycho.commands`` entry point.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "register_commands"]


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the workflow, pretraining and models commands to ``subparsers`` (the ``ptycho.commands`` entry point)."""
    from ptycho.cli_models import register as register_models
    from ptycho.cli_pretrain import register as register_pretrain
    from ptycho.cli_workflow import register as register_workflow

    register_workflow(subparsers)
    register_pretrain(subparsers)
    register_models(subparsers)


def main(argv: list[str] | None = None) -> int:
    """``python -m ptycho``: the ``ptycho`` command line."""
    from ptycho_core.cli import main as core_main

    return core_main(argv)


if __name__ == "__main__":
    sys.exit(main())
