"""No pickle is ever loaded: a static scan of every package's source, and the loaders refusing pickles.

(a) The scan walks the AST of every ``packages/*/src/**/*.py`` and fails naming ``file:line`` for
``allow_pickle=True``, ``pickle.load``/``loads``/``Unpickler``, ``torch.load(...)`` without
``weights_only=True``, ``safe_mode=False``, ``np.load(...)``/``read_array(...)`` without
``allow_pickle=False`` and ``yaml.load`` with a non-safe (or no) loader.
(b) The loaders themselves: a pickled NPZ member, a torch checkpoint whose unpickling would run
code, and Keras files carrying a Lambda layer are refused without running anything.
"""

from __future__ import annotations

import ast
import hashlib
import json
import pathlib
from pathlib import Path

import numpy as np
import pytest

from ptycho_core.errors import BundleError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(ROOT.glob("packages/*/src/**/*.py"))
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader", "_Yaml12Loader"}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_const(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: what`` for every call in ``source`` that could unpickle or run stored code."""
    found = []
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in PICKLE_MODULES:
            names = [a.name for a in node.names if a.name in ("load", "loads", "Unpickler")]
            if names:
                found.append(f"{filename}:{node.lineno}: imports {', '.join(names)} from {node.module}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        where = f"{filename}:{node.lineno}"
        if _is_const(_keyword(node, "allow_pickle"), True):
            found.append(f"{where}: {name or 'call'}(allow_pickle=True)")
        if _is_const(_keyword(node, "safe_mode"), False):
            found.append(f"{where}: {name or 'call'}(safe_mode=False)")
        head = name.split(".", 1)[0]
        if head in PICKLE_MODULES and last in ("load", "loads", "Unpickler"):
            found.append(f"{where}: {name}(...) unpickles")
        if name in ("torch.load", "load") and head == "torch" and not _is_const(_keyword(node, "weights_only"), True):
            found.append(f"{where}: torch.load(...) without weights_only=True")
        if name in ("np.load", "numpy.load") or last == "read_array":
            if not _is_const(_keyword(node, "allow_pickle"), False):
                found.append(f"{where}: {name}(...) without allow_pickle=False")
        if name == "yaml.load":
            loader = _keyword(node, "Loader")
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            if loader is None or _dotted(loader).rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                found.append(f"{where}: yaml.load(...) without a safe Loader")
    return sorted(found, key=lambda s: int(s.split(":")[-2]) if s.split(":")[-2].isdigit() else 0)


def test_sources_found() -> None:
    packages = {p.relative_to(ROOT).parts[1] for p in SOURCES}
    assert {"ptycho-core", "ptycho-data", "ptycho-torch", "ptycho-tf"} <= packages
    assert len(SOURCES) > 40


def test_no_unsafe_deserialisation_in_sources() -> None:
    found = []
    for path in SOURCES:
        found += unsafe_calls(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "unsafe deserialisation calls:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet, what", [
    ("import numpy as np\nnp.load('x.npz', allow_pickle=True)\n", "allow_pickle=True"),
    ("import numpy as np\nnp.load('x.npz')\n", "np.load(...) without allow_pickle=False"),
    ("import numpy\nnumpy.lib.format.read_array(fh)\n", "read_array(...) without allow_pickle=False"),
    ("import pickle\npickle.loads(b'')\n", "pickle.loads(...) unpickles"),
    ("from pickle import load\n", "imports load from pickle"),
    ("import torch\ntorch.load('m.ckpt', map_location='cpu')\n", "torch.load(...) without weights_only=True"),
    ("import torch\ntorch.load('m.ckpt', weights_only=False)\n", "torch.load(...) without weights_only=True"),
    ("import keras\nkeras.saving.load_model('m.keras', safe_mode=False)\n", "safe_mode=False"),
    ("import yaml\nyaml.load(text, Loader=yaml.Loader)\n", "yaml.load(...) without a safe Loader"),
    ("import yaml\nyaml.load(text)\n", "yaml.load(...) without a safe Loader"),
])
def test_scanner_flags_unsafe_snippet(snippet: str, what: str) -> None:
    found = unsafe_calls(snippet, "snippet.py")
    assert any(what in f for f in found), found
    assert all(f.startswith("snippet.py:2:") or f.startswith("snippet.py:1:") for f in found)


def test_scanner_accepts_safe_calls() -> None:
    safe = (
        "import numpy as np, torch, yaml\n"
        "np.load('x.npz', allow_pickle=False)\n"
        "np.lib.format.read_array(fh, allow_pickle=False)\n"
        "torch.load('m.ckpt', map_location='cpu', weights_only=True)\n"
        "yaml.load(text, Loader=yaml.SafeLoader)\n"
        "keras.saving.load_model('m.keras')\n"
    )
    assert unsafe_calls(safe) == []


# ---------------------------------------------------------------- loaders refuse pickles


def test_npz_pickled_object_array_refused(tmp_path: Path) -> None:
    pytest.importorskip("ptycho_data", reason="load_dataset lives in ptycho-data")
    from ptycho_core.errors import DataError
    from ptycho_data.npz import load_dataset

    marker = tmp_path / "unpickled.marker"
    path = tmp_path / "pickled.npz"
    np.savez(path, diffraction=np.full((4, 64, 64), 0.5, np.float32), xcoords=np.arange(4.0), ycoords=np.arange(4.0),
             probeGuess=np.array([_Touch(marker)], dtype=object))
    with pytest.raises(DataError, match=r"pickled\.npz: key 'probeGuess': object array .* pickled data is never"):
        load_dataset(path)
    assert not marker.exists()


class _Touch:
    """Unpickling this creates ``marker`` (a harmless stand-in for running arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _bundle(directory: Path, backend: str, weights: dict[str, bytes]) -> Path:
    """A bundle directory with correct sha256s around the given weight files."""
    directory.mkdir()
    files = {"config.json": json.dumps({"model": {"N": 64}}).encode(), **weights}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    manifest = {"format": "ptycho-bundle", "format_version": 1, "backend": backend, "versions": {},
                "weights": sorted(weights), "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.mark.pytorch
def test_torch_checkpoint_with_pickled_class_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="the pytorch backend needs torch")
    pytest.importorskip("ptycho_torch", reason="the pytorch backend is not installed")
    from ptycho_core.bundle import load_bundle

    marker = tmp_path / "unpickled.marker"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "payload": _Touch(marker)}, ckpt)
    bundle = _bundle(tmp_path / "bundle", "pytorch", {"model.ckpt": ckpt.read_bytes()})
    with pytest.raises(BundleError, match="cannot be read as a weights-only torch checkpoint"):
        load_bundle(bundle)
    assert not marker.exists(), "the checkpoint's pickle ran code"


def _lambda_model(keras, marker: Path):
    """A Keras model whose Lambda layer creates ``marker`` whenever it is built or run.

    A real ``lambda`` (not a named function) makes Keras store its bytecode in the file.
    """
    layer = keras.layers.Lambda(lambda x, p=str(marker): (__import__("pathlib").Path(p).touch(), x * 2.0)[1])
    inputs = keras.Input((3,))
    return keras.Model(inputs, layer(inputs))


@pytest.mark.tensorflow
def test_keras_files_with_lambda_layer_refused(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="the tensorflow backend needs tensorflow")
    pytest.importorskip("ptycho_tf", reason="the tensorflow backend is not installed")
    from ptycho_core.bundle import load_bundle
    from ptycho_tf._env import keras

    marker = tmp_path / "lambda_ran.marker"
    model = _lambda_model(keras, marker)
    archive = tmp_path / "evil.keras"
    model.save(archive)
    marker.unlink(missing_ok=True)  # building the model above ran the lambda once
    # Keras itself refuses the Lambda's stored bytecode in safe mode (its default)
    with pytest.raises(ValueError, match="safe_mode"):
        keras.saving.load_model(archive)
    assert not marker.exists()
    # the tensorflow backend reads only a .weights.h5 (arrays): a full .keras archive in its place is refused
    bundle = _bundle(tmp_path / "bundle_keras", "tensorflow", {"model.weights.h5": archive.read_bytes()})
    with pytest.raises(BundleError, match="model.weights.h5"):
        load_bundle(bundle)
    assert not marker.exists(), "loading the bundle ran the Lambda layer"


@pytest.mark.tensorflow
def test_keras_tampered_weights_refused(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="the tensorflow backend needs tensorflow")
    pytest.importorskip("ptycho_tf", reason="the tensorflow backend is not installed")
    from ptycho_core.bundle import load_bundle
    from ptycho_tf._env import keras

    weights = tmp_path / "other.weights.h5"
    _lambda_model(keras, tmp_path / "unused.marker").save_weights(weights)
    bundle = _bundle(tmp_path / "bundle_foreign_weights", "tensorflow", {"model.weights.h5": weights.read_bytes()})
    with pytest.raises(BundleError, match="weights do not fit the model of config.json"):
        load_bundle(bundle)
