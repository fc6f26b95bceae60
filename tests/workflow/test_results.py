"""Results users can trust (issue 19), with the framework-free dummy backend: modes, overwrite, provenance."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime

import numpy as np
import pytest

from ptycho import workflow
from ptycho_core import cli, provenance
from ptycho_core.config import InferenceConfig, TrainingConfig
from ptycho_core.errors import DataError, OutputExistsError


def _cfg(data, out, **kw):
    return TrainingConfig(backend="dummy", train_data_file=data, output_dir=out, nepochs=1, **kw)


def test_run_writes_with_the_umask_modes(installed_dummy, small_dataset_path, tmp_path):
    old = os.umask(0o027)
    try:
        workflow.run(_cfg(small_dataset_path, tmp_path / "out"))
    finally:
        os.umask(old)
    written = sorted((tmp_path / "out").rglob("*"))
    assert {p.name for p in written} >= {"model", "manifest.json", "gain.npy", "reconstruction.npz", "summary.json",
                                        "amplitude.png", "metrics.json"}
    wrong = [(p.name, oct(stat.S_IMODE(p.stat().st_mode))) for p in written
             if stat.S_IMODE(p.stat().st_mode) != (0o750 if p.is_dir() else 0o640)]
    assert wrong == []


def test_run_refuses_to_replace_a_result(installed_dummy, small_dataset_path, tmp_path):
    cfg = _cfg(small_dataset_path, tmp_path)
    workflow.run(cfg)
    summary = (tmp_path / "summary.json").read_text()
    with pytest.raises(OutputExistsError, match=rf"{tmp_path / 'model'}: already exists .*--overwrite"):
        workflow.run(cfg)
    assert (tmp_path / "summary.json").read_text() == summary
    workflow.run(cfg, overwrite=True)
    assert json.loads((tmp_path / "summary.json").read_text())["provenance"]["started"] >= \
        json.loads(summary)["provenance"]["started"]


def test_infer_refuses_to_replace_a_result(installed_dummy, small_dataset_path, tmp_path):
    workflow.run(_cfg(small_dataset_path, tmp_path / "a"))
    icfg = InferenceConfig(backend="dummy", model_path=tmp_path / "a" / "model", test_data_file=small_dataset_path,
                           output_dir=tmp_path / "a")
    with pytest.raises(OutputExistsError, match="reconstruction.npz: already exists"):
        workflow.infer(icfg)
    workflow.infer(icfg, overwrite=True)
    workflow.infer(icfg, write=False)  # writes nothing, so nothing to refuse


def test_empty_output_dir_is_not_a_result(installed_dummy, small_dataset_path, tmp_path):
    (tmp_path / "out" / "checkpoints").mkdir(parents=True)
    workflow.run(_cfg(small_dataset_path, tmp_path / "out"))


def test_train_refuses_old_checkpoints_unless_resuming_or_overwriting(installed_dummy, small_dataset_path, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    cfg = _cfg(small_dataset_path, tmp_path)
    with pytest.raises(OutputExistsError, match="checkpoints: already exists"):
        workflow.train(cfg)
    workflow.train(cfg, overwrite=True)
    workflow.train(cfg, resume_from=tmp_path / "checkpoints" / "last.ckpt")


def test_cli_train_twice(installed_dummy, small_dataset_path, tmp_path, capsys):
    args = ["train", "--backend", "dummy", "--train-data", str(small_dataset_path), "--output-dir", str(tmp_path),
            "--nepochs", "1"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ptycho: error: {tmp_path / 'model'}: already exists")
    assert cli.main([*args, "--overwrite"]) == 0


def test_provenance_content(installed_dummy, small_dataset_path, tmp_path):
    cfg = _cfg(small_dataset_path, tmp_path, seed=7)
    icfg = workflow.inference_config_for(cfg, refine_iterations=1)
    rec = workflow.run(cfg, icfg, command=["ptycho", "run", "--seed", "7"])
    digest = hashlib.sha256(small_dataset_path.read_bytes()).hexdigest()
    record = json.loads((tmp_path / "summary.json").read_text())["provenance"]
    assert record["format"] == "ptycho-provenance" and record["command"] == ["ptycho", "run", "--seed", "7"]
    assert record["inputs"] == {"train_data_file": {"path": str(small_dataset_path.resolve()), "sha256": digest,
                                                    "bytes": small_dataset_path.stat().st_size}}
    assert record["config"]["training"]["seed"] == 7
    assert record["config"]["inference"]["refine_iterations"] == 1
    assert record["config"]["inference"]["model_path"] == str(tmp_path / "model")
    assert record["versions"]["ptycho-core"] and record["versions"]["numpy"] == np.__version__
    assert record["backend"] == "dummy" and record["device"] == "cpu"
    t0, t1 = (datetime.fromisoformat(record[k].replace("Z", "+00:00")) for k in ("started", "finished"))
    assert t0.utcoffset().total_seconds() == 0 and t0 <= t1
    assert record["seconds"] == (t1 - t0).total_seconds()
    with np.load(tmp_path / "reconstruction.npz", allow_pickle=False) as npz:
        assert json.loads(str(npz["provenance"][()])) == record
    bundle_record, source = provenance.read(tmp_path / "model")
    assert source == tmp_path / "model" / "manifest.json"
    assert bundle_record["inputs"] == record["inputs"] and bundle_record["finished"] <= record["finished"]
    assert rec.metadata.paths["reconstruction"] == str(tmp_path / "reconstruction.npz")


def test_infer_provenance_hashes_data_and_bundle(installed_dummy, small_dataset_path, tmp_path):
    workflow.run(_cfg(small_dataset_path, tmp_path / "a"))
    icfg = InferenceConfig(backend="dummy", model_path=tmp_path / "a" / "model", test_data_file=small_dataset_path,
                           output_dir=tmp_path / "b")
    workflow.infer(icfg)
    record, _ = provenance.read(tmp_path / "b")
    assert set(record["inputs"]) == {"test_data_file", "model_path"}
    assert record["inputs"]["model_path"]["sha256"] == provenance.sha256_path(tmp_path / "a" / "model")
    assert list(record["config"]) == ["inference"]


def test_cli_info(installed_dummy, small_dataset_path, tmp_path, capsys):
    workflow.run(_cfg(small_dataset_path, tmp_path), command=["ptycho", "run", "--nepochs", "1"])
    capsys.readouterr()
    for target in (tmp_path, tmp_path / "model", tmp_path / "summary.json", tmp_path / "reconstruction.npz"):
        assert cli.main(["info", str(target)]) == 0
        out = capsys.readouterr().out
        assert "command:   ptycho run --nepochs 1" in out
        assert f"train_data_file: {small_dataset_path.resolve()}" in out
        assert "nepochs" in out and "= 1" in out and "device:    cpu" in out
    assert cli.main(["info", "--json", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "ptycho-provenance"


def test_info_errors_name_the_file(tmp_path, capsys):
    old = tmp_path / "summary.json"
    old.write_text(json.dumps({"backend": "pytorch"}))
    assert cli.main(["info", str(old)]) == 2
    assert f"{old}: no provenance recorded" in capsys.readouterr().err
    assert cli.main(["info", str(tmp_path / "nothing")]) == 2
    assert "nothing: no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: not a ptycho result"):
        provenance.read(tmp_path / "empty")
    np.savez(tmp_path / "r.npz", provenance=np.asarray("{not json"))
    with pytest.raises(DataError, match="r.npz: key 'provenance' is not valid JSON"):
        provenance.read(tmp_path / "r.npz")
