"""``ptycho config show`` and ``ptycho config validate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from ptycho_core import cli, serialize
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError
from ptycho_core.serialize import save_config, to_dict


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    monkeypatch.delenv("PTYCHO_BACKEND", raising=False)


def run_handler(argv: list[str]) -> int:
    """Parse like the ``ptycho`` entry point does and call the command's handler directly."""
    args = cli.build_parser().parse_args(argv)
    return args.func(args)


def test_show_prints_resolved_toml_with_defaults(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("nepochs = 3\n[model]\ngridsize = 2\n")
    assert run_handler(["config", "show", str(path)]) == 0
    shown = serialize.tomllib.loads(capsys.readouterr().out)
    expected = to_dict(TrainingConfig(nepochs=3, model=ModelConfig(gridsize=2)))
    assert shown == {k: v for k, v in expected.items() if v is not None}
    assert shown["learning_rate"] == 1e-3 and shown["model"]["N"] == 64  # defaults filled in


@pytest.mark.parametrize(("fmt", "parse"), [("json", json.loads), ("yaml", yaml.safe_load)])
def test_show_other_formats(tmp_path, capsys, fmt, parse):
    path = save_config(InferenceConfig(model_path="m.zip"), tmp_path / "i.yaml")
    assert run_handler(["config", "show", str(path), "--format", fmt]) == 0
    assert parse(capsys.readouterr().out) == to_dict(InferenceConfig(model_path="m.zip"))


def test_show_keeps_sections(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("[model]\nN = 128\n[training]\nnepochs = 2\n[inference]\nstitch_crop = 30\n")
    run_handler(["config", "show", str(path), "--format", "json"])
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"training", "inference"}
    assert shown["training"]["model"]["N"] == 128 and shown["inference"]["stitch_crop"] == 30


def test_show_converts_a_ptychopinn_config(tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text("model:\n  N: 128\n  object_big: false\nn_images: 100\noutput_prefix: runs/a\n")
    with pytest.warns(DeprecationWarning, match="n_images"):
        run_handler(["config", "show", str(path), "--legacy"])
    new = tmp_path / "new.toml"
    new.write_text(capsys.readouterr().out)
    cfg = serialize.load_config(new)
    assert cfg == TrainingConfig(model=ModelConfig(N=128, object_big=False), n_groups=100, output_dir="runs/a")


def test_show_to_legacy_keys(tmp_path, capsys):
    path = save_config(TrainingConfig(train_data_file="tr.npz"), tmp_path / "c.json")
    run_handler(["config", "show", str(path), "--to-legacy", "--format", "yaml"])
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["object.big"] is True and shown["train_data_file_path"] == "tr.npz"
    assert shown["output_prefix"] == "ptycho_output" and "object_big" not in shown


def test_validate_prints_the_class(tmp_path, capsys):
    path = save_config(ModelConfig(N=256), tmp_path / "m.toml")
    assert run_handler(["config", "validate", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: valid ModelConfig\n"
    both = save_config({"training": TrainingConfig(), "inference": InferenceConfig()}, tmp_path / "b.yaml")
    run_handler(["config", "validate", str(both)])
    assert capsys.readouterr().out == f"{both}: valid TrainingConfig, InferenceConfig\n"


def test_validate_raises_the_config_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nN = 100\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*ModelConfig\.N.*64, 128, 256"):
        run_handler(["config", "validate", str(path)])


def test_validate_legacy(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("object.big: true\nmodel_path: m.zip\nstitch_crop: 10\n")
    assert run_handler(["config", "validate", "--legacy", str(path)]) == 0
    assert capsys.readouterr().out.endswith("valid InferenceConfig\n")


def test_main_turns_config_errors_into_exit_code_2(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"nepoch": 3}')
    assert cli.main(["config", "validate", str(path)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"ptycho: error: {path}: ") and "did you mean 'nepochs'" in last


def _ptycho(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PTYCHO_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PTYCHO_BACKEND", None)
    return subprocess.run([sys.executable, "-m", "ptycho_core.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=120)


def test_subprocess_validate(tmp_path):
    good = save_config(TrainingConfig(nepochs=2), tmp_path / "good.toml")
    done = _ptycho("config", "validate", str(good))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{good}: valid TrainingConfig\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  gridsize: zero\n")
    done = _ptycho("config", "validate", str(bad))
    assert done.returncode == 2
    assert f"{bad} [model]: ModelConfig.gridsize: expected an integer, got 'zero'" in done.stderr
