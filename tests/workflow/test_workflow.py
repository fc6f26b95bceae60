"""train -> save -> load -> infer -> stitch -> outputs, with a framework-free backend."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest
from matplotlib.image import imread

from ptycho import workflow
from ptycho_core import bundle, cli
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import BundleError, ConfigError, DataError


def test_run_writes_everything(installed_dummy, small_dataset_path, tmp_path):
    cfg = TrainingConfig(backend="dummy", train_data_file=small_dataset_path, output_dir=tmp_path, nepochs=2)
    rec = workflow.run(cfg)
    assert rec.metadata.backend == "dummy"
    assert rec.metadata.history["loss"] == [2.0, 1.0]
    assert {"train_s", "infer_s", "stitch_s"} <= set(rec.metadata.timings)
    for key in ("bundle", "reconstruction", "amplitude_png", "phase_png", "loss_png", "metrics", "comparison_png"):
        assert key in rec.metadata.paths, key
    with np.load(tmp_path / "reconstruction.npz", allow_pickle=False) as f:
        assert set(f.files) >= {"object", "amplitude", "phase", "origin"}
        np.testing.assert_array_equal(f["object"], rec.object)
    assert bundle.read_manifest(tmp_path / "model")["backend"] == "dummy"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) >= {"amplitude", "phase"}


@pytest.mark.parametrize(("env", "primary"), [
    ({}, True),
    ({"RANK": "0", "NODE_RANK": "1"}, True),  # torchrun's global rank wins
    ({"RANK": "3"}, False),
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5"}, False),
    ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "LOCAL_RANK": "1"}, False),  # Lightning's child process
    ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
    ({"NODE_RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, True),
])
def test_is_primary_process(env, primary):
    assert workflow.is_primary_process(env) is primary


def test_non_primary_rank_writes_nothing(installed_dummy, small_dataset_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "rank1"
    rec = workflow.run(TrainingConfig(backend="dummy", train_data_file=small_dataset_path, output_dir=out,
                                      nepochs=1))
    assert rec.object.ndim == 2 and np.isfinite(rec.object).all()
    assert not (out / "model").exists() and not (out / "reconstruction.npz").exists()
    assert cli.main(["train", "--backend", "dummy", "--train-data", str(small_dataset_path),
                     "--output-dir", str(out), "--nepochs", "1"]) == 0
    assert not (out / "model").exists()
    monkeypatch.setenv("RANK", "0")
    assert cli.main(["train", "--backend", "dummy", "--train-data", str(small_dataset_path),
                     "--output-dir", str(out), "--nepochs", "1"]) == 0
    assert bundle.read_manifest(out / "model")["backend"] == "dummy"


def test_infer_with_saved_bundle(installed_dummy, small_dataset_path, tmp_path):
    cfg = TrainingConfig(backend="dummy", train_data_file=small_dataset_path, output_dir=tmp_path / "a", nepochs=1)
    first = workflow.run(cfg)
    icfg = InferenceConfig(backend="dummy", model_path=tmp_path / "a" / "model", test_data_file=small_dataset_path,
                           output_dir=tmp_path / "b")
    second = workflow.infer(icfg)
    np.testing.assert_array_equal(first.object, second.object)
    assert (tmp_path / "b" / "amplitude.png").stat().st_size > 1000


def test_infer_with_several_groups_per_position(installed_dummy, small_dataset_path, tmp_path):
    workflow.run(TrainingConfig(backend="dummy", train_data_file=small_dataset_path, output_dir=tmp_path / "a",
                                nepochs=1, model=ModelConfig(gridsize=2)))
    icfg = InferenceConfig(backend="dummy", model_path=tmp_path / "a" / "model", test_data_file=small_dataset_path)
    one = workflow.infer(icfg, write=False)
    three = workflow.infer(attrs.evolve(icfg, groups_per_position=3), write=False)
    assert three.metadata.n_patches == 3 * one.metadata.n_patches
    assert three.object.shape == one.object.shape and np.isfinite(three.object).all()


def test_stitching_weights_the_crops_by_the_probe(installed_dummy, small_dataset_path):
    from ptycho_core import reference
    from ptycho_core.contracts import InferenceResult
    from ptycho_data.npz import load_dataset

    ds = load_dataset(small_dataset_path)
    icfg = InferenceConfig(backend="dummy", flip_x=True)
    rng = np.random.default_rng(3)
    patches = (rng.normal(size=(ds.n, 64, 64)) + 1j * rng.normal(size=(ds.n, 64, 64))).astype(np.complex64)
    result = InferenceResult(patches=patches, positions=ds.positions)
    probe_weighted = workflow.stitch(result, icfg, "dummy", ds.object.shape, probe=ds.probe)
    # the weight is flipped like the patches, so this is the reference weighted mean of the flipped patches
    weight = reference.apply_flips(reference.probe_stitch_weight(ds.probe)[None], flip_x=True)[0]
    expected = reference.reassemble_weighted(reference.apply_flips(patches, flip_x=True), weight, ds.positions,
                                             icfg.stitch_crop, ds.object.shape, (0, 0))
    np.testing.assert_allclose(probe_weighted.object, expected, rtol=1e-4, atol=1e-5)
    uniform = workflow.stitch(result, attrs.evolve(icfg, stitch_weight="uniform"), "dummy", ds.object.shape)
    np.testing.assert_array_equal(uniform.object != 0, probe_weighted.object != 0)  # the same stitched region
    assert np.abs(uniform.object - probe_weighted.object).max() > 0.1  # but other values where crops overlap
    with pytest.raises(ConfigError, match="stitch_weight: 'probe' weights the stitching by the probe, but no probe"):
        workflow.stitch(result, icfg, "dummy", ds.object.shape)


def test_bundle_backend_must_match(installed_dummy, small_dataset_path, tmp_path):
    cfg = TrainingConfig(backend="dummy", train_data_file=small_dataset_path, output_dir=tmp_path, nepochs=1)
    workflow.run(cfg)
    icfg = InferenceConfig(backend="pytorch", model_path=tmp_path / "model", test_data_file=small_dataset_path)
    with pytest.raises(BundleError, match="written by backend 'dummy'"):
        workflow.load_model(icfg)


def test_bad_data_leaves_no_output(installed_dummy, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, diffraction=np.ones((4, 64, 64)), xcoords=np.zeros(3), ycoords=np.zeros(4),
             probeGuess=np.ones((64, 64), np.complex64))
    cfg = TrainingConfig(backend="dummy", train_data_file=bad, output_dir=tmp_path / "out", nepochs=1)
    with pytest.raises(DataError, match="xcoords"):
        workflow.run(cfg)
    assert not (tmp_path / "out").exists()


def test_cli_run_and_evaluate(installed_dummy, small_dataset_path, tmp_path, capsys):
    code = cli.main(["run", "--backend", "dummy", "--train-data", str(small_dataset_path), "--output-dir",
                     str(tmp_path), "--nepochs", "1"])
    assert code == 0
    assert "amplitude_png" in capsys.readouterr().out
    code = cli.main(["evaluate", str(tmp_path / "reconstruction.npz"), str(small_dataset_path)])
    assert code == 0
    assert "ssim" in capsys.readouterr().out


def test_cli_missing_file_is_one_line_exit_2(installed_dummy, tmp_path, capsys):
    code = cli.main(["run", "--backend", "dummy", "--train-data", str(tmp_path / "nope.npz"), "--output-dir",
                     str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "nope.npz" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_refinement_after_stitching(installed_dummy, small_dataset_path, tmp_path):
    cfg = TrainingConfig(backend="dummy", train_data_file=small_dataset_path, output_dir=tmp_path / "plain",
                         nepochs=1)
    plain = workflow.run(cfg)
    cfg = attrs.evolve(cfg, output_dir=tmp_path / "refined")
    refined = workflow.run(cfg, workflow.inference_config_for(cfg, refine_iterations=5))
    info = refined.metadata.refine
    assert info.iterations == 5 and len(info.misfit) == 6 and info.misfit[-1] < 0.5 * info.misfit[0]
    np.testing.assert_array_equal(info.network_object, plain.object)  # same network output before refining
    assert refined.object.shape == plain.object.shape and refined.origin == plain.origin
    metrics = json.loads((tmp_path / "refined" / "metrics.json").read_text())
    assert metrics["amplitude"]["mae"] < metrics["network"]["amplitude"]["mae"]
    assert metrics["phase"]["mae"] < metrics["network"]["phase"]["mae"]
    with np.load(tmp_path / "refined" / "reconstruction.npz", allow_pickle=False) as f:
        np.testing.assert_array_equal(f["network_object"], plain.object)
        np.testing.assert_array_equal(f["object"], refined.object)
    summary = json.loads((tmp_path / "refined" / "summary.json").read_text())
    assert summary["refine"]["misfit"] == list(info.misfit) and "refine_s" in summary["timings"]
    # the network's own fit to the data, without ground truth: the refinement's first misfit, and the same
    # number when the network's output is written unrefined
    assert refined.metadata.network_misfit == info.misfit[0] == summary["network_misfit"]
    plain_summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert plain_summary["network_misfit"] == pytest.approx(info.misfit[0], rel=1e-9)
    assert plain_summary["flat_misfit"] == summary["flat_misfit"] > 0  # a flat object on the same canvas
    assert "misfit_s" in plain_summary["timings"] and "misfit_s" in summary["timings"]
    widths = [imread(tmp_path / d / "comparison.png").shape[1] for d in ("plain", "refined")]
    assert widths[1] > 1.3 * widths[0]  # truth | network | refined, against truth | reconstruction


def test_cli_refine_iterations(installed_dummy, small_dataset_path, tmp_path, capsys):
    assert cli.main(["run", "--backend", "dummy", "--train-data", str(small_dataset_path), "--output-dir",
                     str(tmp_path / "r"), "--nepochs", "1", "--refine-iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "after refinement (2 passes," in out and "network only" in out
    assert "network only: amplitude misfit to the measured patterns" in out and "of a flat object's" in out
    assert out.index("network only") < out.index("after refinement")  # the network's own quality first
    assert cli.main(["infer", "--model-path", str(tmp_path / "r" / "model"), "--test-data", str(small_dataset_path),
                     "--output-dir", str(tmp_path / "i"), "--refine-iterations", "1"]) == 0
    assert "after refinement (1 pass," in capsys.readouterr().out
    code = cli.main(["run", "--backend", "dummy", "--train-data", str(small_dataset_path), "--output-dir",
                     str(tmp_path / "bad"), "--refine-iterations", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and "refine_iterations" in err and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()
