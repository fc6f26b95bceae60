"""Artifact checks on a good and a broken output directory."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
from ci_artifact_files import good_output, real_png, tiny_png, torch_like_ckpt, write_bundle, zip_bundle

from ptycho_ci.artifacts import check_bundle, check_checkpoint, check_directory, check_png
from ptycho_ci.errors import ArtifactError


def test_good_directory_has_no_findings(tmp_path):
    assert check_directory(good_output(tmp_path)) == []


def test_broken_directory_findings(tmp_path):
    root = good_output(tmp_path)
    run = root / "run"
    (run / "phase.png").unlink()
    tiny_png(run / "amplitude.png")
    (root / "plot.png").write_bytes(real_png(root / "x.png").read_bytes()[:-12])  # no IEND
    (root / "x.png").unlink()
    (root / "notes.png").write_text("not an image")
    torch_like_ckpt(root / "checkpoints.ckpt", hparams=False)
    (root / "garbage.ckpt").write_bytes(b"\x00\x01 definitely not a checkpoint")
    (run / "model" / "config.json").write_text(json.dumps({"model": {"N": 128}}))
    bad_zip = tmp_path / "model_src"
    write_bundle(bad_zip)
    zip_bundle(bad_zip, root / "model.zip")
    shutil.rmtree(bad_zip)
    with zipfile.ZipFile(root / "model.zip", "a") as zf:
        zf.writestr("extra.bin", b"smuggled")
    found = {(Path(f.path).name, f.check) for f in check_directory(root)}
    assert found == {
        ("phase.png", "png_missing"),
        ("amplitude.png", "png_too_small"),
        ("plot.png", "png_invalid"),
        ("notes.png", "png_invalid"),
        ("checkpoints.ckpt", "checkpoint_hyper_parameters"),
        ("garbage.ckpt", "checkpoint_unreadable"),
        ("model", "bundle_integrity"),
        ("model.zip", "bundle_integrity"),
    }


def test_bundle_checks(tmp_path):
    bundle = write_bundle(tmp_path / "b", hparams=False)
    assert [(f.check, f.path) for f in check_bundle(bundle)] == [
        ("checkpoint_hyper_parameters", f"{bundle}/model.ckpt")]
    (bundle / "manifest.json").write_text("{not json")
    assert [f.check for f in check_bundle(bundle)] == ["bundle_manifest"]
    other = write_bundle(tmp_path / "c")
    (other / "config.json").unlink()
    assert [f.message for f in check_bundle(other)] == ["config.json is listed in manifest.json but missing"]
    (tmp_path / "bad.zip").write_bytes(b"PK but broken")
    assert [f.check for f in check_bundle(tmp_path / "bad.zip")] == ["bundle_manifest"]


def test_png_size_floor_is_configurable(tmp_path):
    png = real_png(tmp_path / "a.png")
    assert check_png(png) == []
    size = png.stat().st_size
    assert [f.check for f in check_png(png, min_bytes=size + 1)] == ["png_too_small"]
    empty = tmp_path / "empty.png"
    data = bytearray(tiny_png(empty).read_bytes())
    data[16:24] = struct.pack(">II", 0, 0)
    empty.write_bytes(bytes(data))
    assert "empty image" in check_png(empty, min_bytes=0)[0].message


def test_expected_pngs_come_from_arguments(tmp_path):
    run = tmp_path / "out"
    run.mkdir()
    (run / "reconstruction.npz").write_bytes(b"npz")
    real_png(run / "amplitude.png")
    found = check_directory(tmp_path, expect_png=("amplitude.png", "loss.png"))
    assert [(Path(f.path).name, f.check) for f in found] == [("loss.png", "png_missing")]


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(ArtifactError, match="not a directory"):
        check_directory(tmp_path / "absent")


def test_pickle_scan_never_executes_code(tmp_path):
    """A malicious pickle is only decoded, not run: the marker file is never created."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"hyper_parameters": {}, "x": Evil()}, protocol=2))
    assert check_checkpoint(path) == []
    assert not marker.exists()


def test_real_torch_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    good, bad = tmp_path / "good.ckpt", tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "hyper_parameters": {"N": 64}}, good)
    torch.save({"state_dict": {"w": torch.ones(3)}}, bad)
    assert check_checkpoint(good) == []
    assert [f.check for f in check_checkpoint(bad)] == ["checkpoint_hyper_parameters"]
    buf = io.BytesIO()
    torch.save({"hyper_parameters": {}}, buf, _use_new_zipfile_serialization=False)
    (tmp_path / "legacy.ckpt").write_bytes(buf.getvalue())
    assert check_checkpoint(tmp_path / "legacy.ckpt") == []
