"""Issue 17 on the real backends (tiny): several datasets trained together, ptycho pretrain, --init-from."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

from ptycho import workflow
from ptycho_core import backends, bundle, cli, reference
from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError
from ptycho_data.npz import save_dataset
from ptycho_data.simulate import SimulationConfig, simulate_dataset

BACKENDS = ["pytorch", "tensorflow"]
TINY = ModelConfig(n_filters_scale=1)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Two small scans of different objects, seeds and photon levels."""
    folder = tmp_path_factory.mktemp("scans")
    save_dataset(simulate_dataset(SimulationConfig(n_positions=9, seed=1, object_kind="grf"), progress=False),
                 folder / "a.npz")
    save_dataset(simulate_dataset(SimulationConfig(n_positions=9, seed=2, object_kind="lines", nphotons=1e6),
                                  progress=False), folder / "b.npz")
    return folder


def _config(backend, data, out, **kw):
    fields = dict(backend=backend, model=TINY, train_data_file=data, output_dir=out, nepochs=1, batch_size=4,
                  accelerator="cpu", progress=False)
    fields.update(kw)
    return TrainingConfig(**fields)


def _weights(handle):
    return backends.get(handle.backend).export_weights(handle)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_datasets_train_together(backend, scans, tmp_path):
    pytest.importorskip({"pytorch": "torch", "tensorflow": "tensorflow"}[backend])
    result = workflow.train(_config(backend, str(scans / "*.npz"), tmp_path))
    assert result.epochs == 1
    assert np.isfinite(result.history["deviance"][0]) and result.history["deviance"][0] >= 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_init_from_starts_at_the_bundle_and_trains_on(backend, scans, tmp_path):
    pytest.importorskip({"pytorch": "torch", "tensorflow": "tensorflow"}[backend])
    base = workflow.train(_config(backend, scans / "a.npz", tmp_path / "base"))
    bundle.save_bundle(base.model, tmp_path / "model", training_config=base.model.training_config)
    saved = _weights(bundle.load_bundle(tmp_path / "model"))
    fresh = _weights(backends.get(backend).build_model(TINY, _config(backend, None, tmp_path)))
    # a learning rate of 1e-12 moves no weight measurably: what training started from is what comes out
    still = workflow.train(_config(backend, scans / "b.npz", tmp_path / "still", learning_rate=1e-12),
                           init_from=tmp_path / "model")
    moved = workflow.train(_config(backend, scans / "b.npz", tmp_path / "moved"), init_from=tmp_path / "model")
    after_still, after_moved = _weights(still.model), _weights(moved.model)
    assert set(after_still) == set(saved)
    network = [k for k in saved if saved[k].size > 16]  # the convolution kernels
    # b.npz holds 1e6 photons per pattern, a.npz 1e9: the physics scale follows the new scan's measured
    # photon count (physics.md s3), everything else starts from the bundle
    nphotons = still.model.training_config.nphotons
    assert nphotons == pytest.approx(1e6, rel=0.05)
    assert base.model.training_config.nphotons == pytest.approx(1e9, rel=0.05)
    for key in saved:
        if "intensity_scale" in key:
            np.testing.assert_allclose(after_still[key], reference.physics_scale(nphotons, TINY.N), rtol=1e-5)
        else:
            np.testing.assert_allclose(after_still[key], saved[key], atol=1e-6, err_msg=key)
    assert any(not np.allclose(fresh[k], saved[k]) for k in network)  # a new model would have started elsewhere
    assert any(not np.allclose(after_moved[k], saved[k], atol=1e-6) for k in network)  # training changes them
    # a different architecture is refused before training, naming the field
    with pytest.raises(ConfigError, match=r"n_filters_scale: bundle 1, config 2"):
        workflow.train(_config(backend, scans / "b.npz", tmp_path / "x", model=ModelConfig()),
                       init_from=tmp_path / "model")


def test_bundle_of_the_other_backend_suggests_convert(scans, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    base = workflow.train(_config("tensorflow", scans / "a.npz", tmp_path / "tf"))
    bundle.save_bundle(base.model, tmp_path / "tf-model", training_config=base.model.training_config)
    code = cli.main(["train", "--backend", "pytorch", "--train-data", str(scans / "b.npz"), "--output-dir",
                     str(tmp_path / "pt"), "--init-from", str(tmp_path / "tf-model"), "--nepochs", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"ptycho convert {tmp_path / 'tf-model'} --to pytorch" in err and "backend 'tensorflow'" in err
    assert not (tmp_path / "pt").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_pretrain_cli_then_infer_an_unseen_scan(backend, scans, tmp_path, capsys):
    pytest.importorskip({"pytorch": "torch", "tensorflow": "tensorflow"}[backend])
    out = tmp_path / "pre"
    code = cli.main(["pretrain", "--backend", backend, "--accelerator", "cpu", "--output-dir", str(out),
                     "--n-objects", "2", "--n-positions", "9", "--photon-levels", "1e6", "1e9", "--nepochs", "1",
                     "--n-filters-scale", "1", "--batch-size", "4", "--probe-from", str(scans / "a.npz"), "-q"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["corpus"]["recipe"]["probe_from"] == str(scans / "a.npz")
    assert summary["corpus"]["n_patterns"] == 18 and summary["epochs"] == 1
    rec = workflow.infer(workflow.inference_config_for(
        attrs.evolve(_config(backend, scans / "b.npz", tmp_path / "infer")), model_path=out / "model"))
    assert np.isfinite(rec.object).all() and rec.metadata.metrics


def test_pretrain_continues_from_a_bundle_and_refuses_another_architecture(tmp_path, capsys):
    """``ptycho pretrain --init-from``: the model flags default to the bundle's, the summary and the bundle's
    provenance name it, and a differing architecture is refused before any corpus is written."""
    pytest.importorskip("torch")
    common = ["--backend", "pytorch", "--accelerator", "cpu", "--n-objects", "1", "--n-positions", "9",
              "--nepochs", "1", "--batch-size", "4", "-q"]
    first = tmp_path / "first"
    assert cli.main(["pretrain", "--output-dir", str(first), "--n-filters-scale", "1", *common]) == 0
    again = tmp_path / "again"
    code = cli.main(["pretrain", "--output-dir", str(again), "--init-from", str(first / "model"), "--seed", "5",
                     *common])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((again / "summary.json").read_text())
    assert summary["init_from"] == str(first / "model")
    assert summary["provenance"]["inputs"]["init_from"]["path"].endswith("model")
    assert summary["provenance"]["config"]["training"]["model"]["n_filters_scale"] == 1  # from the bundle
    capsys.readouterr()
    code = cli.main(["pretrain", "--output-dir", str(tmp_path / "other"), "--init-from", str(first / "model"),
                     "--n-filters-scale", "2", *common])
    assert code == 2 and "n_filters_scale: bundle 1, config 2" in capsys.readouterr().err
    assert not (tmp_path / "other" / "corpus").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_batches_mix_datasets(backend, scans, tmp_path):
    """The backends shuffle the concatenated groups: a batch holds groups of both datasets."""
    from ptycho_data.grouping import group_datasets
    from ptycho_data.npz import load_dataset

    pytest.importorskip({"pytorch": "torch", "tensorflow": "tensorflow"}[backend])
    g = group_datasets([load_dataset(scans / "a.npz"), load_dataset(scans / "b.npz")], seed=0)
    marked = attrs.evolve(g, X=np.repeat(g.dataset_index.astype(np.float32), 64 * 64).reshape(g.X.shape))
    cfg = _config(backend, None, tmp_path, batch_size=8)
    if backend == "pytorch":
        from ptycho_torch.train import _loader

        firsts = [batch[0].numpy()[:, 0, 0, 0] for batch in _loader(marked, cfg)]
    else:
        from ptycho_tf.train import _dataset

        firsts = [batch[0]["X"].numpy()[:, 0, 0, 0] for batch in _dataset(marked, cfg)]
    assert sum(len(b) for b in firsts) == g.n_groups
    assert any(len(set(b.tolist())) == 2 for b in firsts)
    assert sorted(np.concatenate(firsts).tolist()) == sorted(g.dataset_index.tolist())


SHIPPED = "pretrained:sim-n64-g2"


def test_shipped_model_by_name_reconstructs_the_same_in_both_backends(scans, tmp_path, capsys):
    """Issue 17 item 4: `ptycho infer --model pretrained:NAME` works offline in each backend, with the same result."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    objects = {}
    for backend in BACKENDS:
        out = tmp_path / backend
        code = cli.main(["infer", "--model", SHIPPED, "--backend", backend, "--test-data", str(scans / "b.npz"),
                         "--output-dir", str(out), "--no-progress", "-q"])
        assert code == 0, capsys.readouterr().err
        with np.load(out / "reconstruction.npz", allow_pickle=False) as f:
            assert str(f["backend"]) == backend
            objects[backend] = f["object"]
            provenance = json.loads(str(f["provenance"][()]))
        assert provenance["config"]["inference"]["model_path"] == SHIPPED
        assert provenance["inputs"]["model_path"]["path"].endswith("pretrained/sim-n64-g2")
    t, f = objects["pytorch"], objects["tensorflow"]
    assert float(np.max(np.abs(t - f)) / np.max(np.abs(t))) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_init_from_the_shipped_model_by_name(backend, scans, tmp_path, capsys):
    pytest.importorskip({"pytorch": "torch", "tensorflow": "tensorflow"}[backend])
    from ptycho import pretrained

    shipped = pretrained.weights(SHIPPED)
    # the model flags default to the shipped model's (gridsize 2, n_filters_scale 1): none given here
    code = cli.main(["train", "--backend", backend, "--train-data", str(scans / "b.npz"), "--output-dir",
                     str(tmp_path / "tuned"), "--init-from", SHIPPED, "--nepochs", "1", "--batch-size", "4",
                     "--learning-rate", "1e-12", "--no-progress", "-q"])
    assert code == 0, capsys.readouterr().err
    tuned = bundle.load_bundle(tmp_path / "tuned" / "model")
    assert tuned.model_config == pretrained.load_model_config(SHIPPED)
    after = _weights(tuned)
    for key, value in shipped.items():
        if key not in ("intensity_scale", "probe.real", "probe.imag"):  # the new scan's photons and probe
            np.testing.assert_allclose(after[key], value, atol=1e-6, err_msg=key)
    manifest = json.loads((tmp_path / "tuned" / "model" / "manifest.json").read_text())
    assert manifest["provenance"]["inputs"]["init_from"]["pretrained"] == "sim-n64-g2"
