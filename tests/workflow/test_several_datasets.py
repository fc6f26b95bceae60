"""Training on several datasets, ptycho pretrain and --init-from through the workflow (dummy backend)."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

from ptycho import workflow
from ptycho_core import bundle, cli
from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.corpus import CorpusConfig
from ptycho_core.errors import ConfigError, DataError
from ptycho_core.serialize import load_config, save_config
from ptycho_data import grouping
from ptycho_data.lazy_write import save_lazy_dataset
from ptycho_data.npz import save_dataset
from ptycho_data.simulate import SimulationConfig, simulate_dataset


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Two small NPZ scans (different objects and seeds) and a lazy one, in one folder."""
    folder = tmp_path_factory.mktemp("scans")
    save_dataset(simulate_dataset(SimulationConfig(n_positions=16, seed=1, object_kind="grf"), progress=False),
                 folder / "a.npz")
    save_dataset(simulate_dataset(SimulationConfig(n_positions=9, seed=2, object_kind="lines", nphotons=1e6),
                                  progress=False), folder / "b.npz")
    save_lazy_dataset(simulate_dataset(SimulationConfig(n_positions=4, seed=3), progress=False), folder / "c_lazy")
    (folder / "notes.txt").write_text("not a dataset")
    return folder


@pytest.fixture
def grouped_seen(monkeypatch):
    seen = []
    original = grouping.group_for_training

    def spy(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(grouping, "group_for_training", spy)
    return seen


@pytest.mark.parametrize("form", ["list", "glob", "directory"])
def test_train_data_forms(installed_dummy, scans, tmp_path, grouped_seen, form):
    value = {"list": [scans / "a.npz", scans / "b.npz", scans / "c_lazy"], "glob": str(scans / "*"),
             "directory": scans}[form]
    cfg = TrainingConfig(backend="dummy", train_data_file=value, output_dir=tmp_path, nepochs=1)
    assert workflow.data_paths(cfg.train_data_file, "train_data_file") == [
        scans / "a.npz", scans / "b.npz", scans / "c_lazy"]
    workflow.train(cfg)
    g = grouped_seen[-1]
    assert g.n_groups == 16 + 9 + 4 and g.is_lazy  # the lazy dataset keeps the concatenation lazy
    np.testing.assert_array_equal(np.bincount(g.dataset_index), [16, 9, 4])
    starts = [0, 16, 25, 29]
    for d in range(3):
        idx = g.indices[g.dataset_index == d]
        assert idx.min() >= starts[d] and idx.max() < starts[d + 1]


def test_nothing_matched_and_different_N_are_clear_errors(installed_dummy, scans, tmp_path):
    cfg = TrainingConfig(backend="dummy", train_data_file=str(scans / "*.h5"), output_dir=tmp_path)
    with pytest.raises(DataError, match=r"train_data_file: the pattern '.*\*\.h5' matches no dataset"):
        workflow.train(cfg)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty holds no dataset"):
        workflow.train(TrainingConfig(backend="dummy", train_data_file=tmp_path / "empty", output_dir=tmp_path))
    save_dataset(simulate_dataset(SimulationConfig(N=128, n_positions=4), progress=False), tmp_path / "big.npz")
    with pytest.raises(DataError, match=r"big\.npz has patterns of side N = 128, but .*a\.npz has N = 64"):
        workflow.train(TrainingConfig(backend="dummy", train_data_file=[scans / "a.npz", tmp_path / "big.npz"],
                                      output_dir=tmp_path))
    with pytest.raises(DataError, match="named twice"):
        workflow.data_paths([scans / "a.npz", str(scans / "a.*")], "train_data_file")


def test_run_on_several_datasets_reconstructs_the_first(installed_dummy, scans, tmp_path):
    cfg = TrainingConfig(backend="dummy", train_data_file=[scans / "b.npz", scans / "a.npz"], output_dir=tmp_path,
                         nepochs=1)
    rec = workflow.run(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert rec.metadata.paths["metrics"]
    inputs = summary["provenance"]["inputs"]
    assert inputs["train_data_file[0]"]["path"].endswith("b.npz")
    assert inputs["train_data_file[1]"]["path"].endswith("a.npz")
    manifest = bundle.read_manifest(tmp_path / "model")
    assert manifest["provenance"]["config"]["inference"]["test_data_file"].endswith("b.npz")


def test_config_files_and_repeated_flag(installed_dummy, scans, tmp_path, capsys):
    cfg = TrainingConfig(backend="dummy", train_data_file=[scans / "a.npz", str(scans / "b*")])
    for suffix in (".toml", ".json", ".yaml"):
        assert load_config(save_config(cfg, tmp_path / f"c{suffix}"), TrainingConfig) == cfg
    out = tmp_path / "cli"
    code = cli.main(["train", "--backend", "dummy", "--train-data", str(scans / "a.npz"), "--train-data",
                     str(scans / "b.npz"), "--nepochs", "1", "--output-dir", str(out)])
    assert code == 0
    saved = json.loads((out / "model" / "config.json").read_text())["training"]["train_data_file"]
    assert [p.rsplit("/", 1)[1] for p in saved] == ["a.npz", "b.npz"]


def test_corpus_section_round_trip(tmp_path):
    corpus = CorpusConfig(n_objects=3, photon_levels=(1e6, 1e8), object_kinds=("grf",), seed=4,
                          probe_from=tmp_path / "p.npz")
    sections = {"training": TrainingConfig(backend="pytorch", nepochs=3), "corpus": corpus}
    for suffix in (".toml", ".json", ".yaml"):
        path = save_config(sections, tmp_path / f"pre{suffix}")
        assert load_config(path, CorpusConfig) == corpus
        assert load_config(path, TrainingConfig).nepochs == 3
    path.write_text(path.read_text().replace("n_objects: 3", "n_object: 3"))
    with pytest.raises(ConfigError, match=r"\[corpus\].*unknown key 'n_object'.*n_objects"):
        load_config(path, CorpusConfig)


def test_pretrain_and_init_from_with_the_dummy_backend(installed_dummy, tmp_path, capsys):
    out = tmp_path / "pre"
    code = cli.main(["pretrain", "--backend", "dummy", "--output-dir", str(out), "--n-objects", "2",
                     "--n-positions", "4", "--corpus-seed", "3", "--photon-levels", "1e6", "1e9", "--nepochs", "1",
                     "--object-kinds", "grf", "lines"])
    assert code == 0, capsys.readouterr().err
    assert "corpus: 2 objects x 4 positions" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["corpus"]["recipe"]["photon_levels"] == [1e6, 1e9]
    manifest = bundle.read_manifest(out / "model")
    assert manifest["provenance"]["config"]["corpus"]["seed"] == 3
    assert sorted(p.name for p in (out / "corpus").iterdir()) == ["corpus.json", "object_00000", "object_00001"]
    # nothing is replaced without --overwrite, and that is checked before any work
    assert cli.main(["pretrain", "--backend", "dummy", "--output-dir", str(out), "--n-objects", "1"]) == 2
    assert "already exists" in capsys.readouterr().err

    # fine-tune: the dummy backend halves the gain, so the result is the bundle's gain / 2
    scan = tmp_path / "scan.npz"
    save_dataset(simulate_dataset(SimulationConfig(n_positions=4, seed=9), progress=False), scan)
    start = bundle.load_bundle(out / "model").native
    cfg = TrainingConfig(backend="dummy", train_data_file=scan, output_dir=tmp_path / "ft", nepochs=1)
    result = workflow.train(cfg, init_from=out / "model")
    np.testing.assert_array_equal(result.model.native, start * 0.5)
    fresh = workflow.train(cfg, overwrite=True)
    assert not np.array_equal(fresh.model.native, result.model.native)
    code = cli.main(["train", "--backend", "dummy", "--train-data", str(scan), "--output-dir", str(tmp_path / "ft2"),
                     "--init-from", str(out / "model"), "--nepochs", "1"])
    assert code == 0
    manifest = bundle.read_manifest(tmp_path / "ft2" / "model")
    assert manifest["provenance"]["inputs"]["init_from"]["path"] == str((out / "model").resolve())
    # the main job too: workflow.run(init_from=...) trains from the bundle and records it
    workflow.run(attrs.evolve(cfg, output_dir=tmp_path / "ft3"), init_from=out / "model")
    np.testing.assert_array_equal(bundle.load_bundle(tmp_path / "ft3" / "model").native, start * 0.5)
    summary = json.loads((tmp_path / "ft3" / "summary.json").read_text())
    assert summary["provenance"]["inputs"]["init_from"]["path"] == str((out / "model").resolve())


def test_init_from_mismatches(installed_dummy, tmp_path, capsys):
    scan = tmp_path / "scan.npz"
    save_dataset(simulate_dataset(SimulationConfig(n_positions=4, seed=9), progress=False), scan)
    cfg = TrainingConfig(backend="dummy", train_data_file=scan, output_dir=tmp_path / "a", nepochs=1)
    base = workflow.train(cfg)
    bundle.save_bundle(base.model, tmp_path / "b", training_config=cfg)
    other = TrainingConfig(backend="dummy", train_data_file=scan, output_dir=tmp_path / "c",
                           model=ModelConfig(gridsize=2, n_filters_scale=1))
    with pytest.raises(ConfigError, match=r"differs from this run's in 2 field\(s\): gridsize: bundle 1, config 2; "
                                          r"n_filters_scale: bundle 2, config 1"):
        workflow.train(other, init_from=tmp_path / "b")
    code = cli.main(["train", "--backend", "dummy", "--train-data", str(scan), "--output-dir", str(tmp_path / "d"),
                     "--init-from", str(tmp_path / "b"), "--gridsize", "2"])
    assert code == 2 and "gridsize: bundle 1, config 2" in capsys.readouterr().err
    assert not (tmp_path / "d" / "model").exists()
    with pytest.raises(ConfigError, match=r"is a bundle of backend 'dummy', but this run trains with 'pytorch'; "
                                          r"convert it first: `ptycho convert .*b --to pytorch`"):
        workflow.train(attrs.evolve(cfg, backend="pytorch"), init_from=tmp_path / "b")
    with pytest.raises(ConfigError, match="cannot be combined with resume_from"):
        workflow.train(cfg, init_from=tmp_path / "b", resume_from=tmp_path / "x.ckpt")
