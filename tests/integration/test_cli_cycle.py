"""CLI cycle per backend on the committed fixture: train -> save -> load -> infer -> stitch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_helpers import BACKENDS, CYCLE_FLAGS, png_size, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.ci_pr]


@pytest.fixture(scope="module", params=BACKENDS)
def trained(request, tmp_path_factory, fixture_path):
    backend = request.param
    out = tmp_path_factory.mktemp(f"run-{backend}")
    proc = run_cli("run", "--backend", backend, "--train-data", str(fixture_path), "--output-dir", str(out),
                   *CYCLE_FLAGS)
    return backend, out, proc


def test_run_writes_bundle_images_and_metrics(trained):
    backend, out, proc = trained
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert manifest["backend"] == backend
    assert manifest["format"] == "ptycho-bundle"
    assert set(manifest["weights"]) <= set(manifest["files"])
    for name in ("amplitude.png", "phase.png", "loss.png", "comparison.png"):
        width, height = png_size(out / name)
        assert width > 200 and height > 200, name
        assert (out / name).stat().st_size > 1024
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == backend
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 < metrics["amplitude"]["ssim"] <= 1.0
    assert "amplitude.png" in proc.stdout


def test_reconstruction_npz(trained):
    import numpy as np

    _, out, _ = trained
    with np.load(out / "reconstruction.npz", allow_pickle=False) as f:
        obj, amp, origin = f["object"], f["amplitude"], f["origin"]
        assert obj.dtype == np.complex64 and obj.ndim == 2
        np.testing.assert_allclose(amp, np.abs(obj), rtol=1e-6)
        assert origin.shape == (2,)
        assert np.isfinite(obj).all() and np.abs(obj).max() > 0


def test_infer_from_saved_bundle(trained, fixture_path, tmp_path):
    backend, out, _ = trained
    proc = run_cli("infer", "--model-path", str(out / "model"), "--test-data", str(fixture_path),
                   "--output-dir", str(tmp_path))
    assert f"backend: {backend}" in proc.stdout
    assert png_size(tmp_path / "amplitude.png")[0] > 200


def test_other_backend_cannot_load_bundle(trained, fixture_path, tmp_path):
    backend, out, _ = trained
    other = next(b for b in BACKENDS if b != backend)
    proc = run_cli("infer", "--backend", other, "--model-path", str(out / "model"), "--test-data",
                   str(fixture_path), "--output-dir", str(tmp_path / "o"), check=False)
    assert proc.returncode == 2
    assert f"written by backend '{backend}'" in proc.stderr and "ptycho convert" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_weight_file_is_the_backend_format(trained):
    """A torch bundle holds a Lightning checkpoint with hyper_parameters; a TF bundle a Keras HDF5 file."""
    backend, out, _ = trained
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    weights = [out / "model" / name for name in manifest["weights"]]
    if backend == "pytorch":
        ckpt = next(p for p in weights if p.suffix == ".ckpt")
        code = (
            "import sys, torch; ck = torch.load(sys.argv[1], weights_only=True, map_location='cpu'); "
            "hp = ck['hyper_parameters']; print(sorted(hp))"
        )
        proc = subprocess.run([sys.executable, "-c", code, str(ckpt)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "model_config" in proc.stdout
    else:
        h5 = next(p for p in weights if p.name.endswith((".h5", ".keras")))
        head = h5.read_bytes()[:8]
        assert head in (b"\x89HDF\r\n\x1a\n",) or head[:2] == b"PK"
