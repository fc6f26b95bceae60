"""``ptycho`` subcommands contributed by ptycho-data (entry point group ``ptycho.commands``)."""

from __future__ import annotations

import argparse


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ptycho simulate``, ``ptycho fixture`` and ``ptycho import``."""
    from ptycho_data.cli_fixture import register as register_fixture
    from ptycho_data.cli_import import register as register_import
    from ptycho_data.cli_simulate import register as register_simulate

    register_simulate(subparsers)
    register_fixture(subparsers)
    register_import(subparsers)
