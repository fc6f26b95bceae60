"""Every section of a ``--config`` file reaches every command that reads it (issue 16, item 5).

``ptycho train`` reads ``[model]`` and ``[training]``; ``ptycho infer`` reads ``[inference]`` (the
bundle fixes the model); ``ptycho run`` and ``ptycho demo`` read all three; ``ptycho pretrain``
reads ``[model]``, ``[training]`` and ``[corpus]``. Each command runs for
real through ``ptycho_core.cli.main`` with the NumPy dummy backend; spies on the workflow functions
record the configs that the work was done with. Flags override the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptycho import workflow
from ptycho_core import bundle, cli, serialize
from ptycho_core.config import ModelConfig

#: The sections each command reads. ``infer`` takes the model settings from the bundle.
READS = {
    "train": ("model", "training"),
    "infer": ("inference",),
    "run": ("model", "training", "inference"),
    "demo": ("model", "training", "inference"),
    "pretrain": ("model", "training", "corpus"),
}

#: Values differing from every default (and from the presets of ``ptycho demo``), per section.
VALUES = {
    "model": {"gridsize": 2, "n_filters_scale": 3, "probe_scale": 3.5, "amp_activation": "swish"},
    "training": {"nepochs": 1, "batch_size": 3, "seed": 7, "neighbor_count": 5, "learning_rate": 0.002,
                 "nll_weight": 0.5, "early_stop_patience": 2},
    "inference": {"refine_iterations": 2, "stitch_crop": 16, "flip_x": True, "transpose": True, "batch_size": 5,
                  "neighbor_count": 6, "seed": 11},
    "corpus": {"n_objects": 2, "n_positions": 25, "jitter": 0.5, "seed": 5},
}


def test_every_section_is_covered():
    """A section the loader learns is a section this test must learn too."""
    assert set(serialize.SECTIONS) == set(VALUES) == {s for sections in READS.values() for s in sections}
    for section, values in VALUES.items():
        default = serialize.SECTIONS[section]()
        for key, value in values.items():
            assert getattr(default, key) != value, (section, key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _write(path: Path, sections: dict[str, dict]) -> Path:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def spies(monkeypatch):
    """Record the configs ``workflow.train`` and ``workflow.infer`` are called with (and what infer returns)."""
    seen: dict[str, list] = {"train": [], "infer": [], "reconstruction": []}
    train, infer = workflow.train, workflow.infer

    def spy_train(config, *args, **kwargs):
        seen["train"].append(config)
        return train(config, *args, **kwargs)

    def spy_infer(config, *args, **kwargs):
        seen["infer"].append(config)
        rec = infer(config, *args, **kwargs)
        seen["reconstruction"].append(rec)
        return rec

    monkeypatch.setattr(workflow, "train", spy_train)
    monkeypatch.setattr(workflow, "infer", spy_infer)
    return seen


def _assert_section(config, section: str, overridden: dict | None = None) -> None:
    expected = {**VALUES[section], **(overridden or {})}
    target = config.model if section == "model" else config
    got = {k: getattr(target, k) for k in expected}
    assert got == expected, section


def _assert_refined(seen, iterations: int) -> None:
    refined = seen["reconstruction"][-1].metadata.refine
    assert refined.iterations == iterations and len(refined.misfit) == iterations + 1


def _bundle_configs(path: Path) -> dict:
    return json.loads((path / "config.json").read_text(encoding="utf-8"))


def _training_section(data: Path, out: Path) -> dict:
    return {**VALUES["training"], "backend": "dummy", "train_data_file": str(data), "output_dir": str(out)}


def _all_sections(data: Path, out: Path) -> dict:
    return {"model": VALUES["model"], "training": _training_section(data, out), "inference": VALUES["inference"]}


def test_train_reads_model_and_training(installed_dummy, small_dataset_path, tmp_path, spies):
    out = tmp_path / "out"
    path = _write(tmp_path / "f.toml", _all_sections(small_dataset_path, out))
    assert cli.main(["train", "--config", str(path)]) == 0
    (cfg,) = spies["train"]
    _assert_section(cfg, "model")
    _assert_section(cfg, "training")
    saved = serialize.from_dict(type(cfg), _bundle_configs(out / workflow.BUNDLE_NAME)["training"])
    assert saved.model == cfg.model and saved.nepochs == 1 and saved.seed == 7


def test_run_reads_every_section(installed_dummy, small_dataset_path, tmp_path, spies, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path / "f.toml", _all_sections(small_dataset_path, out))
    assert cli.main(["run", "--config", str(path)]) == 0
    (cfg,), (icfg,) = spies["train"], spies["infer"]
    _assert_section(cfg, "model")
    _assert_section(cfg, "training")
    _assert_section(icfg, "inference")
    _assert_section(icfg, "model")  # the model just trained
    assert icfg.model_path == out / workflow.BUNDLE_NAME and icfg.output_dir == out and icfg.backend == "dummy"
    _assert_refined(spies, 2)
    assert "after refinement (2 passes" in capsys.readouterr().out
    saved = _bundle_configs(out / workflow.BUNDLE_NAME)["inference"]
    assert {k: saved[k] for k in VALUES["inference"]} == VALUES["inference"]


def test_run_flags_override_every_section(installed_dummy, small_dataset_path, tmp_path, spies):
    out = tmp_path / "out"
    path = _write(tmp_path / "f.toml", _all_sections(small_dataset_path, out))
    assert cli.main(["run", "--config", str(path), "--overwrite", "--gridsize", "1", "--batch-size", "4",
                     "--stitch-crop", "12", "--refine-iterations", "1", "--seed", "3"]) == 0
    (cfg,), (icfg,) = spies["train"], spies["infer"]
    _assert_section(cfg, "model", {"gridsize": 1})
    _assert_section(cfg, "training", {"batch_size": 4, "seed": 3})
    # --seed is the one flag for a field both configs have: it sets both
    _assert_section(icfg, "inference", {"stitch_crop": 12, "refine_iterations": 1, "seed": 3})
    _assert_refined(spies, 1)


def test_demo_reads_every_section(installed_dummy, tmp_path, spies, capsys):
    out = tmp_path / "demo"
    training = {**VALUES["training"], "backend": "dummy", "output_dir": str(out)}
    path = _write(tmp_path / "f.toml", {"model": VALUES["model"], "training": training,
                                         "inference": VALUES["inference"]})
    # --from-scratch: the shipped model (another architecture and backend) is not the subject here
    assert cli.main(["demo", "--config", str(path), "--stitch-crop", "14", "--from-scratch"]) == 0
    (cfg,), (icfg,) = spies["train"], spies["infer"]
    _assert_section(cfg, "model")  # not demo's CPU preset: the file wins
    _assert_section(cfg, "training")
    assert cfg.train_data_file == out / "simulated.npz"
    _assert_section(icfg, "inference", {"stitch_crop": 14})
    _assert_refined(spies, 2)
    assert (out / "amplitude.png").exists()


def test_infer_reads_inference(installed_dummy, small_dataset_path, tmp_path, spies, capsys):
    trained = tmp_path / "trained"
    model_path = trained / workflow.BUNDLE_NAME
    assert cli.main(["train", "--backend", "dummy", "--train-data", str(small_dataset_path), "--nepochs", "1",
                     "--gridsize", "2", "--output-dir", str(trained)]) == 0
    out = tmp_path / "out"
    inference = {**VALUES["inference"], "backend": "dummy", "model_path": str(model_path),
                 "test_data_file": str(small_dataset_path), "output_dir": str(out)}
    # a [model] unlike the bundle's: the bundle fixes the model settings (they are logged, not used)
    path = _write(tmp_path / "f.toml", {"model": {"gridsize": 1, "probe_scale": 2.0}, "inference": inference})
    assert cli.main(["infer", "--config", str(path)]) == 0
    (icfg,) = spies["infer"]
    _assert_section(icfg, "inference")
    _assert_refined(spies, 2)
    assert spies["reconstruction"][-1].metadata.backend == "dummy"
    assert cli.main(["infer", "--config", str(path), "--overwrite", "--refine-iterations", "1",
                     "--no-flip-x"]) == 0
    _assert_section(spies["infer"][-1], "inference", {"refine_iterations": 1, "flip_x": False})
    _assert_refined(spies, 1)
    model = bundle.load_bundle(model_path, backend="dummy")
    assert model.model_config.gridsize == 2 and model.model_config != ModelConfig(gridsize=1, probe_scale=2.0)


@pytest.mark.parametrize(("key", "value"), [("output_dir", "elsewhere"), ("backend", "pytorch"),
                                            ("model_path", "other_bundle"), ("test_data_file", "other.npz")])
def test_run_refuses_inference_keys_it_decides(installed_dummy, small_dataset_path, tmp_path, spies, key, value,
                                                capsys):
    out = tmp_path / "out"
    path = _write(tmp_path / "f.toml", {"training": _training_section(small_dataset_path, out),
                                         "inference": {key: str(tmp_path / value) if key != "backend" else value}})
    assert cli.main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"[inference]: {key} = " in err and "ptycho infer --config" in err
    assert spies["train"] == [] and not out.exists()


def test_run_accepts_inference_keys_that_agree(installed_dummy, small_dataset_path, tmp_path, spies):
    out = tmp_path / "out"
    inference = {"output_dir": str(out), "backend": "dummy", "test_data_file": str(small_dataset_path),
                 "model_path": str(out / workflow.BUNDLE_NAME), "stitch_crop": 18}
    path = _write(tmp_path / "f.toml", {"training": _training_section(small_dataset_path, out),
                                         "inference": inference})
    assert cli.main(["run", "--config", str(path)]) == 0
    assert spies["infer"][0].stitch_crop == 18


def test_pretrain_reads_model_training_and_corpus(installed_dummy, tmp_path, spies):
    out = tmp_path / "pre"
    training = {**VALUES["training"], "backend": "dummy", "output_dir": str(out)}
    path = _write(tmp_path / "f.toml", {"model": VALUES["model"], "training": training, "corpus": VALUES["corpus"]})
    assert cli.main(["pretrain", "--config", str(path), "--no-progress"]) == 0
    (cfg,) = spies["train"]
    _assert_section(cfg, "model")
    _assert_section(cfg, "training")
    recipe = json.loads((out / "summary.json").read_text(encoding="utf-8"))["corpus"]["recipe"]
    assert {k: recipe[k] for k in VALUES["corpus"]} == VALUES["corpus"]
    # a flag overrides the file's [corpus]
    assert cli.main(["pretrain", "--config", str(path), "--no-progress", "--overwrite", "--corpus-seed", "9"]) == 0
    recipe = json.loads((out / "summary.json").read_text(encoding="utf-8"))["corpus"]["recipe"]
    assert recipe["seed"] == 9 and recipe["n_objects"] == 2
