"""Model bundles: a directory (or a ``.zip`` of it) holding a trained model.

Layout::

    manifest.json   format version, backend id, package versions, sha256 of every other file,
                    provenance (config, inputs, versions, command line, times, device) when given
    config.json     all configs (model, training, inference) as plain JSON
    <weights>       the backend's weight files (model.ckpt, model.weights.h5, ...)

The core owns the bundle: the backend only writes and reads its weight files. Loading
reads the manifest first, so a bundle selects its backend without importing any other
framework, and a bundle of an uninstalled backend gives the install hint. Writes are
atomic (staging directory + rename): an exception part-way leaves no bundle behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ptycho_core import atomic
from ptycho_core.errors import BundleError, BundleIntegrityError

if TYPE_CHECKING:
    from ptycho_core.config import InferenceConfig, TrainingConfig
    from ptycho_core.contracts import ModelHandle

FORMAT_NAME = "ptycho-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
_RESERVED = {MANIFEST, CONFIG}
MAX_ZIP_BYTES = 8 * 1024**3
# what reading a damaged zip can raise (RuntimeError: encrypted member, NotImplementedError: unknown compression)
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError, zlib.error)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions(backend: str) -> dict[str, str]:
    from ptycho_core.registry import KNOWN_BACKENDS

    names = ["ptycho-core", KNOWN_BACKENDS.get(backend, "")]
    out = {}
    for name in filter(None, names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _configs_json(model: ModelHandle, training_config: Any, inference_config: Any) -> dict:
    from ptycho_core.serialize import to_dict

    out: dict[str, Any] = {"model": to_dict(model.model_config)}
    training_config = training_config if training_config is not None else model.training_config
    if training_config is not None:
        out["training"] = to_dict(training_config)
    if inference_config is not None:
        out["inference"] = to_dict(inference_config)
    return out


def save_bundle(
    model: ModelHandle,
    path: str | os.PathLike,
    *,
    training_config: TrainingConfig | None = None,
    inference_config: InferenceConfig | None = None,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a bundle at ``path`` (a directory, or a zip file if it ends in ``.zip``).

    The backend writing the weights is ``model.backend``. ``provenance`` (see
    :mod:`ptycho_core.provenance`) is stored under ``"provenance"`` in ``manifest.json``.
    Files and directories get the umask's modes (:mod:`ptycho_core.atomic`). Returns the bundle path.
    """
    from ptycho_core import backends

    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path}: already exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = backends.get(model.backend)
    if path.suffix == ".zip":  # a scratch directory: only the zip written from it becomes the result
        stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        stage = atomic.stage_directory(path, overwrite=overwrite)
    try:
        files = backend.save_model(model, stage)
        for name in files:
            if name in _RESERVED or not (stage / name).is_file():
                raise BundleError(f"backend {model.backend!r} reported weight file {name!r} that it did not write")
        (stage / CONFIG).write_text(json.dumps(_configs_json(model, training_config, inference_config), indent=2))
        hashed = sorted(set(files) | {CONFIG})
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "backend": model.backend,
            "versions": _versions(model.backend),
            "weights": sorted(files),
            "files": {name: sha256_file(stage / name) for name in hashed},
        }
        if provenance is not None:
            manifest["provenance"] = provenance
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if path.suffix == ".zip":
            with atomic.atomic_file(path) as tmp_zip, zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as zf:
                for name in [MANIFEST, *hashed]:
                    zf.write(stage / name, arcname=name)
            shutil.rmtree(stage)
        else:
            atomic.commit_directory(stage, path, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return path


def _safe_member(name: str, bundle: Path) -> str:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"{bundle}: refusing zip member {name!r} (absolute path or '..' escapes the bundle)")
    if len(p.parts) != 1:
        raise BundleError(f"{bundle}: unexpected nested zip member {name!r} (bundles are flat)")
    return p.name


def _extract_zip(path: Path, dest: Path) -> None:
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise BundleError(f"{path}: not a readable zip bundle ({exc})") from None
    with zf:
        members = zf.infolist()
        total = sum(m.file_size for m in members)
        if total > MAX_ZIP_BYTES:
            raise BundleError(f"{path}: declares {total} bytes uncompressed, above the {MAX_ZIP_BYTES} byte limit")
        for m in members:
            name = _safe_member(m.filename, path)
            if m.is_dir():
                raise BundleError(f"{path}: unexpected directory {m.filename!r} in bundle")
            try:
                with zf.open(m) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)
            except _ZIP_ERRORS as exc:
                raise BundleError(f"{path}: member {m.filename!r} is corrupt ({exc})") from None


def _read_json(path: Path, what: str, bundle: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{bundle}: missing {what} ({path.name})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{bundle}: {path.name} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{bundle}: {path.name} must hold a JSON object")
    return data


def verify_directory(directory: Path, bundle: Path | None = None) -> dict:
    """Check manifest format and every file hash of an unpacked bundle; return the manifest."""
    bundle = bundle or directory
    manifest = _read_json(directory / MANIFEST, "manifest", bundle)
    if manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{bundle}: manifest.json 'format' must be {FORMAT_NAME!r}, got {manifest.get('format')!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise BundleError(
            f"{bundle}: manifest.json 'format_version' {version!r} is not supported (this ptycho-core reads "
            f"up to {FORMAT_VERSION}; upgrade ptycho-core)"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or CONFIG not in files or not isinstance(manifest.get("backend"), str):
        raise BundleError(f"{bundle}: manifest.json must list 'files' (with {CONFIG}) and name a 'backend'")
    present = {p.name for p in directory.iterdir() if p.name != MANIFEST}
    missing = sorted(set(files) - present)
    if missing:
        raise BundleError(f"{bundle}: files listed in manifest.json are missing: {', '.join(missing)}")
    extra = sorted(present - set(files))
    if extra:
        raise BundleError(f"{bundle}: files not listed in manifest.json: {', '.join(extra)}")
    for name, digest in files.items():
        _safe_member(name, bundle)
        actual = sha256_file(directory / name)
        if actual != digest:
            raise BundleIntegrityError(
                f"{bundle}: sha256 of {name} is {actual}, manifest.json records {digest} (file changed or corrupt)"
            )
    return manifest


def read_manifest(path: str | os.PathLike) -> dict:
    """Read ``manifest.json`` of a bundle directory or zip without verifying hashes."""
    path = Path(path)
    if path.is_dir():
        return _read_json(path / MANIFEST, "manifest", path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle (expected a directory or a .zip)")
    try:
        with zipfile.ZipFile(path) as zf:
            raw = zf.read(MANIFEST)
    except KeyError:
        raise BundleError(f"{path}: missing manifest (manifest.json)") from None
    except _ZIP_ERRORS as exc:
        raise BundleError(f"{path}: not a readable zip bundle ({exc})") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: manifest.json is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: manifest.json must hold a JSON object")
    return data


def load_bundle(path: str | os.PathLike, backend: str | None = None) -> ModelHandle:
    """Verify and load a bundle; the backend comes from its manifest.

    Passing ``backend`` that differs from the manifest's backend is an error (convert the
    bundle with ``ptycho convert`` instead); nothing falls back to another backend.
    """
    from ptycho_core import backends
    from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig
    from ptycho_core.serialize import from_dict

    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle (expected a directory or a .zip)")
    with tempfile.TemporaryDirectory(prefix="ptycho-bundle-") as tmp:
        if path.is_dir():
            directory = path
        else:
            directory = Path(tmp)
            _extract_zip(path, directory)
        manifest = verify_directory(directory, path)
        owner = manifest["backend"]
        if backend is not None and backend != owner:
            raise BundleError(
                f"{path}: bundle was written by backend {owner!r} ({', '.join(manifest.get('weights', []))}), "
                f"not {backend!r}; load it with backend={owner!r} or convert it with "
                f"`ptycho convert {path} --to {backend}`"
            )
        implementation = backends.get(owner)  # install hint for a missing backend comes first
        configs = _read_json(directory / CONFIG, "config", path)
        source = f"{path}/{CONFIG}"
        model_config = from_dict(ModelConfig, configs.get("model", {}), source=source)
        training = configs.get("training")
        training_config = None if training is None else from_dict(TrainingConfig, training, source=source)
        handle = implementation.load_model(directory, manifest, model_config, training_config)
        inference = configs.get("inference")
        if inference is not None:
            handle.metadata["inference_config"] = from_dict(InferenceConfig, inference, source=source)
        handle.metadata["bundle"] = str(path)
        handle.metadata["manifest"] = manifest
    return handle
