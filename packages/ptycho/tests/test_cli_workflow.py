"""The application's commands on the ``ptycho`` command line: registration, flags, errors and exit codes."""

from __future__ import annotations

import pytest

from ptycho_core import cli
from ptycho_core.errors import ConfigError


def test_help_lists_the_application_commands_next_to_the_kernel_ones(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("backends", "info", "config", "train", "infer", "run", "evaluate", "convert", "demo", "pretrain",
                    "simulate", "import"):
        assert command in out


def test_python_dash_m_ptycho_runs_the_command_line():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ptycho", "run", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--train-data" in proc.stdout


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


def test_cpu_preset_fills_only_what_is_not_given():
    import argparse

    from ptycho.cli_workflow import CPU_PRESET, apply_cpu_preset

    args = argparse.Namespace(config=None, gridsize=1)
    applied = apply_cpu_preset(args)
    assert args.gridsize == 1 and "gridsize" not in applied
    assert sorted(applied) == sorted(k for k in CPU_PRESET if k != "gridsize")
    assert args.n_filters_scale == CPU_PRESET["n_filters_scale"] and args.batch_size == CPU_PRESET["batch_size"]
    from_file = argparse.Namespace(config="run.toml")
    assert apply_cpu_preset(from_file) == [] and not hasattr(from_file, "gridsize")
