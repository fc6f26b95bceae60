"""PyTorch and TensorFlow agree numerically given the same (converted) weights.

Each backend runs in its own subprocess (worker.py), so the frameworks never share a process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptycho_core import reference

pytestmark = [pytest.mark.parity, pytest.mark.ci_nightly]
WORKER = Path(__file__).with_name("worker.py")
BACKENDS = ("pytorch", "tensorflow")


def work(*args: str) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(WORKER), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, f"worker {args[:2]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def grouped_npz(path: Path, gridsize: int) -> Path:
    from ptycho_data.fixtures import canonical_fixture_path
    from ptycho_data.grouping import group_dataset
    from ptycho_data.npz import load_dataset

    g = group_dataset(load_dataset(canonical_fixture_path()), gridsize=gridsize, neighbor_count=4, seed=5)
    g = g.batch(slice(0, 16))
    np.savez(path, X=g.X, offsets=g.offsets, centroids=g.centroids, indices=g.indices, probe=g.probe,
             norm_factor=g.norm_factor)
    return path


@pytest.fixture(scope="module", params=["1", "2", "2w"], ids=["gridsize1", "gridsize2", "gridsize2-whole-window"])
def outputs(request, tmp_path_factory):
    spec = request.param  # "2w": gridsize 2 with object_window 1.0 (worker.model_config)
    tmp = tmp_path_factory.mktemp(f"parity{spec}")
    data = grouped_npz(tmp / "data.npz", int(spec[0]))
    weights = tmp / "weights.npz"
    work("export", "pytorch", spec, weights)
    result = {"window": 64 if spec.endswith("w") else None, "gridsize": int(spec[0])}
    for backend in BACKENDS:
        out = tmp / f"{backend}.npz"
        work("forward", backend, spec, weights, data, out)
        with np.load(out, allow_pickle=False) as f:
            result[backend] = {k: f[k] for k in f.files}
    with np.load(weights, allow_pickle=False) as f:
        result["weights"] = {k: f[k] for k in f.files}
    with np.load(data, allow_pickle=False) as f:
        result["data"] = {k: f[k] for k in f.files}
    return result


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def test_weights_imported_identically(outputs):
    big = any(".big." in name for name in outputs["weights"])
    # the probe_big outer branch: at gridsize 1, and at gridsize 2 only with a window wider than N/2
    assert big == (outputs["gridsize"] == 1 or outputs["window"] is not None)
    for backend in BACKENDS:
        for name, value in outputs["weights"].items():
            np.testing.assert_array_equal(outputs[backend][f"w:{name}"], value, err_msg=f"{backend} {name}")


def test_forward_outputs_agree(outputs):
    t, f = outputs["pytorch"], outputs["tensorflow"]
    assert _rel(f["patches"], t["patches"]) < 1e-4
    assert _rel(f["amplitude"], t["amplitude"]) < 1e-4
    assert abs(float(f["loss"]) - float(t["loss"])) <= 1e-4 * abs(float(t["loss"]))


def test_inference_outputs_agree_with_each_other_and_the_reference(outputs):
    """What inference stitches: at gridsize 2 the merged group objects at the centroids (physics.md s6)."""
    t, f = outputs["pytorch"], outputs["tensorflow"]
    np.testing.assert_array_equal(f["infer_positions"], t["infer_positions"])
    assert _rel(f["infer_patches"], t["infer_patches"]) < 1e-4
    raw = t["patches"]  # (B, N, N, C) network output, which the forward test compares across backends
    B, N, _, C = raw.shape
    if C == 1:
        expected = np.moveaxis(raw, -1, 1).reshape(-1, N, N)
    else:
        expected = reference.merge_patches(raw, outputs["data"]["offsets"], 2, outputs["window"])[1]
        np.testing.assert_allclose(t["infer_positions"], outputs["data"]["centroids"], atol=1e-12)
    assert t["infer_patches"].shape == expected.shape
    for backend in BACKENDS:
        assert _rel(outputs[backend]["infer_patches"], expected) < 1e-4, backend


def test_one_training_step_agrees(outputs):
    t, f = float(outputs["pytorch"]["loss_after"]), float(outputs["tensorflow"]["loss_after"])
    assert abs(f - t) <= 1e-3 * abs(t)
    assert t != float(outputs["pytorch"]["loss"])  # the step changed the model


def test_stitching_agrees_with_reference(tmp_path):
    rng = np.random.default_rng(0)
    patches = (rng.random((200, 64, 64)) * np.exp(1j * rng.random((200, 64, 64)))).astype(np.complex64)
    positions = rng.random((200, 2)) * 150 + 20.3
    shape, origin = reference.canvas_geometry(positions, 20)
    data = tmp_path / "stitch.npz"
    np.savez(data, patches=patches, positions=positions, crop=20, shape=np.array(shape), origin=np.array(origin))
    expected = reference.reassemble(patches, positions, 20, shape, origin)
    for backend in BACKENDS:
        work("stitch", backend, data, tmp_path / f"{backend}-s.npz")
        with np.load(tmp_path / f"{backend}-s.npz", allow_pickle=False) as f:
            np.testing.assert_allclose(f["object"], expected, atol=1e-5, err_msg=backend)


def test_convert_round_trip_is_bit_identical(tmp_path):
    from ptycho_data.fixtures import canonical_fixture_path

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "ptycho_core.cli", *args], capture_output=True, text=True,
                              timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        assert proc.returncode == 0, proc.stderr

    cli("train", "--backend", "pytorch", "--train-data", str(canonical_fixture_path()), "--nepochs", "1",
        "--n-groups", "16", "--output-dir", str(tmp_path / "t"))
    cli("convert", str(tmp_path / "t" / "model"), "--to", "tensorflow", "--output", str(tmp_path / "tf"))
    cli("convert", str(tmp_path / "tf"), "--to", "pytorch", "--output", str(tmp_path / "back"))
    for name in ("t/model", "back"):
        work("export_bundle", "pytorch", tmp_path / name, tmp_path / f"{name.replace('/', '_')}.npz")
    with np.load(tmp_path / "t_model.npz") as a, np.load(tmp_path / "back.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_shipped_model_loads_by_name_in_both_backends_and_agrees(tmp_path):
    """Issue 17 item 4: every shipped model (canonical weights) runs in both backends with the same output."""
    from ptycho import pretrained

    names = pretrained.names()
    assert names, "no pretrained model is shipped with the ptycho package"
    for name in names:
        model_config = pretrained.load_model_config(name)
        data = grouped_npz(tmp_path / f"{name}-data.npz", model_config.gridsize)
        result = {}
        for backend in BACKENDS:
            out = tmp_path / f"{name}-{backend}.npz"
            work("pretrained", backend, name, data, out)
            with np.load(out, allow_pickle=False) as f:
                result[backend] = {k: f[k] for k in f.files}
        shipped = pretrained.weights(name)
        for backend in BACKENDS:
            for key, value in shipped.items():
                np.testing.assert_array_equal(result[backend][f"w:{key}"], value, err_msg=f"{name} {backend} {key}")
        t, f = result["pytorch"], result["tensorflow"]
        assert _rel(f["patches"], t["patches"]) < 1e-4, name
        assert _rel(f["amplitude"], t["amplitude"]) < 1e-4, name
        assert _rel(f["infer_patches"], t["infer_patches"]) < 1e-4, name
        assert abs(float(f["loss"]) - float(t["loss"])) <= 1e-4 * abs(float(t["loss"])), name
