"""``ptycho`` subcommands contributed by ptycho-data (entry point group ``ptycho.commands``)."""

from __future__ import annotations

import argparse


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ptycho simulate`` and ``ptycho fixture``."""
    from ptycho_data.cli_fixture import register as register_fixture
    from ptycho_data.cli_simulate import register as register_simulate

    register_simulate(subparsers)
    register_fixture(subparsers)
