"""The pretrained models shipped with the package (issue 17, item 4): files, card, ``ptycho models``, errors.

No deep-learning framework is needed here; loading into both backends and their agreement is
``tests/parity/test_parity.py::test_shipped_model_loads_by_name_in_both_backends_and_agrees``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ptycho import finetune, pretrained
from ptycho_core import cli
from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = "sim-n64-g2"


def _script():
    spec = importlib.util.spec_from_file_location("make_pretrained", ROOT / "benchmarks" / "make_pretrained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_model_ships_with_the_package_within_10_mb():
    assert SHIPPED in pretrained.names()
    for name in pretrained.names():
        directory = pretrained.directory(name)
        assert directory.parent == Path(pretrained.__file__).parent  # package data of ptycho
        size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
        assert size <= 10 * 2**20, f"{name}: {size} bytes"


def test_shipped_weights_are_canonical_float32_for_n64():
    model_config, training_config = pretrained.configs(SHIPPED)
    assert model_config.N == 64 and isinstance(training_config, TrainingConfig)
    assert training_config.train_data_file is None  # no path of the machine that trained it
    weights = pretrained.weights(SHIPPED)
    assert {"intensity_scale", "probe.real", "probe.imag"} <= set(weights)
    assert all(v.dtype == np.float32 for v in weights.values())
    assert weights["probe.real"].shape == (64, 64)
    card = pretrained.card(SHIPPED)
    assert card["model"]["parameters"] == sum(v.size for k, v in weights.items() if k.endswith((".kernel", ".bias")))


def test_card_is_made_from_the_scripts_measurements_only():
    """No hand-typed figure: the card equals what benchmarks/make_pretrained.py makes from sources.json."""
    script = _script()
    directory = pretrained.directory(SHIPPED)
    sources = json.loads((directory / script.SOURCES).read_text())
    assert script.make_card(SHIPPED, sources, directory / pretrained.WEIGHTS) == pretrained.card(SHIPPED)
    card = pretrained.card(SHIPPED)
    assert card["corpus"]["recipe"]["seed"] == script.CORPUS["seed"]
    assert set(card["evaluation"]["objects"]) == set(script.HELD_OUT)
    # the held-out pictures are not in the corpus
    held_out_pictures = {v for o in script.HELD_OUT.values() for k, v in o.items() if k.endswith("_image")}
    assert held_out_pictures and not held_out_pictures & set(card["corpus"]["recipe"]["images"])


def test_card_says_when_the_corpus_truth_was_used():
    """A model trained with the real-space term (``--realspace-weight``) is not called self-supervised."""
    script = _script()
    directory = pretrained.directory(SHIPPED)
    sources = json.loads((directory / script.SOURCES).read_text())
    shipped = script.make_card(SHIPPED, sources, directory / pretrained.WEIGHTS)
    assert "self-supervised" in shipped["description"] and "realspace_weight" not in shipped["training"]
    supervised = copy.deepcopy(sources)
    supervised["summary"]["provenance"]["config"]["training"]["realspace_weight"] = 1e6
    card = script.make_card(SHIPPED, supervised, directory / pretrained.WEIGHTS)
    assert "self-supervised" not in card["description"]
    assert "real-space term against the corpus's ground truth (realspace_weight 1e+06)" in card["description"]
    assert card["training"]["realspace_weight"] == 1e6


def test_card_and_ptycho_models_name_a_non_default_merge_window():
    """``--object-window`` / ``--no-pad-object`` models say so on their card and in ``ptycho models``."""
    from ptycho.cli_models import format_card

    script = _script()
    directory = pretrained.directory(SHIPPED)
    sources = json.loads((directory / script.SOURCES).read_text())
    shipped = script.make_card(SHIPPED, sources, directory / pretrained.WEIGHTS)
    assert "object_window" not in shipped["model"] and "object_window" not in format_card(shipped)
    wide = copy.deepcopy(sources)
    wide["summary"]["provenance"]["config"]["training"]["model"].update(object_window=1.0, pad_object=False)
    card = script.make_card(SHIPPED, wide, directory / pretrained.WEIGHTS)
    assert card["model"]["object_window"] == 1.0 and card["model"]["pad_object"] is False
    assert "n_filters_scale 1, object_window 1.0, pad_object False, " in format_card(card)


def test_card_and_ptycho_models_name_a_non_default_scan_step():
    """``--step`` / ``--eval-step`` models say on their card and in ``ptycho models`` which scan step the corpus and
    the held-out scans used (the default, N // 8, is not spelled out)."""
    from ptycho.cli_models import format_card

    script = _script()
    directory = pretrained.directory(SHIPPED)
    sources = json.loads((directory / script.SOURCES).read_text())
    plain = copy.deepcopy(sources)  # the default step for the corpus and the held-out scans
    plain["summary"]["corpus"]["recipe"]["step"] = None
    for row in plain["evaluation"]["objects"].values():
        row["simulation"].pop("step", None)
    card = script.make_card(SHIPPED, plain, directory / pretrained.WEIGHTS)
    assert "scan step" not in card["evaluation"]["what"] and "(step " not in format_card(card)
    assert all("step" not in row["simulation"] for row in card["evaluation"]["objects"].values())
    dense = copy.deepcopy(sources)
    dense["summary"]["corpus"]["recipe"]["step"] = 4.0
    for row in dense["evaluation"]["objects"].values():
        row["simulation"]["step"] = 4.0
    card = script.make_card(SHIPPED, dense, directory / pretrained.WEIGHTS)
    assert card["evaluation"]["what"].startswith("network only") and ", scan step 4 px," in card["evaluation"]["what"]
    assert all(row["simulation"]["step"] == 4.0 for row in card["evaluation"]["objects"].values())
    text = format_card(card)
    assert "raster (step 4 px) scan" in text and "scan step 4 px" in text


def test_card_and_ptycho_models_name_the_weights_a_model_continued_from():
    """A model trained further from other weights (``--init-from``) names them, with their hash, in ptycho models."""
    from ptycho.cli_models import format_card

    script = _script()
    directory = pretrained.directory(SHIPPED)
    sources = json.loads((directory / script.SOURCES).read_text())
    fresh = copy.deepcopy(sources)
    fresh["summary"]["init_from"] = None
    assert "continued from" not in format_card(script.make_card(SHIPPED, fresh, directory / pretrained.WEIGHTS))
    further = copy.deepcopy(sources)
    further["summary"]["init_from"] = "pretrained:older"
    further["summary"]["provenance"]["inputs"]["init_from"] = {"sha256": "ab" * 32, "pretrained": "older"}
    card = script.make_card(SHIPPED, further, directory / pretrained.WEIGHTS)
    assert card["training"]["init_from"] == "pretrained:older"
    assert "continued from: pretrained:older (sha256 abababababababab...), the weights it had when" in format_card(card)


def test_ptycho_models_lists_every_model_with_its_card(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    card = pretrained.card(SHIPPED)
    t = card["training"]
    for text in (f"pretrained:{SHIPPED}", t["command"], f"seed {t['seed']}", f"{t['epochs']} epochs",
                 f"{t['steps']:,} optimiser steps", "CPU only", f"corpus seed {card['corpus']['recipe']['seed']}",
                 "held-out objects", *card["evaluation"]["objects"], card["evaluation"]["target"],
                 f"{card['evaluation']['mean']['amplitude']['ssim']:.3f}", f"({t['wall_s']:.0f} s)"):
        assert text in out, text
    assert cli.main(["models", f"pretrained:{SHIPPED}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {SHIPPED: card}


def test_unknown_name_is_a_clear_error_listing_the_models(capsys, tmp_path):
    expected = f"pretrained:nope: no such pretrained model; available: pretrained:{SHIPPED}"
    with pytest.raises(ConfigError, match=expected):
        pretrained.load("pretrained:nope", backend="pytorch")
    assert cli.main(["models", "nope"]) == 2
    assert f"available: pretrained:{SHIPPED}" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="available: none"):
        pretrained.directory("x", root=tmp_path)


def test_init_from_a_shipped_model_checks_the_architecture():
    owner, model_config = finetune.bundle_model_config(f"pretrained:{SHIPPED}")
    assert owner is None and model_config == pretrained.load_model_config(SHIPPED)
    ok = TrainingConfig(model=model_config, backend="tensorflow")
    finetune.check_compatible(ok, f"pretrained:{SHIPPED}")  # any backend: the weights are canonical
    other = TrainingConfig(model=ModelConfig(N=64, gridsize=1, n_filters_scale=model_config.n_filters_scale))
    with pytest.raises(ConfigError, match="gridsize: bundle 2, config 1"):
        finetune.check_compatible(other, f"pretrained:{SHIPPED}")
    assert finetune.model_settings(f"pretrained:{SHIPPED}")["gridsize"] == model_config.gridsize


def test_references_are_recognised():
    assert pretrained.is_reference("pretrained:a") and pretrained.is_reference(Path("pretrained:a"))
    assert not pretrained.is_reference("runs/model") and not pretrained.is_reference(None)
    assert pretrained.name_of("pretrained:a") == "a"
