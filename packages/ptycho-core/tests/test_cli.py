"""The ptycho command line: help, backends listing, error handling and exit codes."""

from __future__ import annotations

import pytest

from ptycho_core import cli
from ptycho_core.errors import ConfigError


def test_help_lists_core_commands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("backends", "config", "train", "infer", "run", "evaluate", "convert", "demo"):
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


def test_train_flags_mirror_config_fields(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--nepochs", "--batch-size", "--gridsize", "--n-filters-scale", "--probe-big", "--no-probe-big",
                 "--train-data", "--output-dir", "--backend", "--intensity-scale-trainable", "--config"):
        assert flag in out


def test_input_error_is_one_line_exit_2(capsys, tmp_path):
    code = cli.main(["run", "--train-data", str(tmp_path / "missing.npz"), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ptycho: error:") and err.count("\n") == 1
    assert "missing.npz" in err
    assert not (tmp_path / "o").exists()


def test_bad_flag_value_names_field(capsys):
    code = cli.main(["train", "--gridsize", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "gridsize" in err


def test_debug_shows_traceback():
    with pytest.raises(ConfigError):
        cli.main(["--debug", "train", "--nepochs", "0"])


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


def test_cpu_preset_fills_only_what_is_not_given():
    import argparse

    from ptycho_core.cli_workflow import CPU_PRESET, apply_cpu_preset

    args = argparse.Namespace(config=None, gridsize=1)
    applied = apply_cpu_preset(args)
    assert args.gridsize == 1 and "gridsize" not in applied
    assert sorted(applied) == sorted(k for k in CPU_PRESET if k != "gridsize")
    assert args.n_filters_scale == CPU_PRESET["n_filters_scale"] and args.batch_size == CPU_PRESET["batch_size"]
    from_file = argparse.Namespace(config="run.toml")
    assert apply_cpu_preset(from_file) == [] and not hasattr(from_file, "gridsize")
