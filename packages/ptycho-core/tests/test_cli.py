"""The ptycho command line: help, backends listing, error handling and exit codes."""

from __future__ import annotations

import pytest

from ptycho_core import cli


def test_help_lists_core_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("backends", "info", "config"):
        assert command in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: ptycho" in capsys.readouterr().out


def test_backends_lists_dummy_distribution(installed_dummy, capsys):
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "dummy" in out and "ptycho-dummy" in out


def test_backends_devices_loads_and_reports(installed_dummy, capsys):
    assert cli.main(["backends", "--devices"]) == 0
    out = capsys.readouterr().out
    assert "devices:   cpu" in out
    assert "error:" in out  # the broken plugin reports its import error instead of crashing


def test_backends_lists_framework_versions_from_metadata(monkeypatch):
    """`ptycho backends` names the framework versions a backend requires, without importing it."""
    from importlib import metadata

    from ptycho_core.cli import framework_versions

    requires = {"ptycho-fake": ["ptycho-core", "torch>=2.2", "lightning (>=2.2)", "keras; extra == 'gpu'"]}
    versions = {"torch": "2.13.0+cpu"}

    def fake_requires(name):
        if name not in requires:
            raise metadata.PackageNotFoundError(name)
        return requires[name]

    def fake_version(name):
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(metadata, "requires", fake_requires)
    monkeypatch.setattr(metadata, "version", fake_version)
    assert framework_versions("ptycho-fake") == "torch 2.13.0+cpu, lightning not installed"
    assert framework_versions("not-installed") == ""
