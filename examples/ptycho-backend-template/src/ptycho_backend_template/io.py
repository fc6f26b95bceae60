"""Weights of the template model: the bundle's ``model.npz`` and the weight export/import of ``ptycho convert``.

``model.npz`` is written with :func:`numpy.savez` and read with ``numpy.load(..., allow_pickle=False)``,
so loading a bundle never unpickles anything. It holds every weight of
:func:`~ptycho_backend_template.model.weight_shapes` (float32) plus ``meta.backend`` (the backend id,
a unicode scalar) and ``meta.epochs`` (int64).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ptycho_backend_template.model import BACKEND_ID, TemplateModel, initial_weights, weight_shapes
from ptycho_core.contracts import ModelHandle
from ptycho_core.errors import BundleError, PtychoInputError

if TYPE_CHECKING:
    from ptycho_core.config import ModelConfig, TrainingConfig

WEIGHT_FILE = "model.npz"
META_KEYS = ("meta.backend", "meta.epochs")


def build_handle(model_config: ModelConfig, training_config: TrainingConfig | None) -> ModelHandle:
    """An untrained model (see :func:`~ptycho_backend_template.model.initial_weights`)."""
    native = TemplateModel(initial_weights(model_config, training_config), model_config.N)
    return ModelHandle(backend=BACKEND_ID, model_config=model_config, training_config=training_config,
                       native=native, metadata={"epochs": 0})


def validated_weights(arrays: dict, N: int, where: str,
                      error: type[PtychoInputError] = BundleError) -> dict[str, np.ndarray]:
    """Check that ``arrays`` holds every weight of a model with side ``N``: real, finite, right shape.

    Extra names are left to the caller. Raises ``error`` naming ``where`` and the weight.
    """
    expected = weight_shapes(N)
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise error(f"{where}: missing weights {missing} (a {BACKEND_ID} model with N={N} has {sorted(expected)})")
    out = {}
    for name, shape in expected.items():
        arr = np.asarray(arrays[name])
        if arr.dtype.kind not in "fiu":
            raise error(f"{where}: weight {name!r} must be a real numeric array, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise error(f"{where}: weight {name!r} has shape {arr.shape}, expected {shape} for N={N}")
        if not np.isfinite(arr).all():
            raise error(f"{where}: weight {name!r} contains NaN or infinite values")
        out[name] = arr.astype(np.float32)
    return out


def save_model(model: ModelHandle, directory: Path) -> list[str]:
    """Write ``model.npz`` into the bundle's staging ``directory``; return ``['model.npz']``."""
    native: TemplateModel = model.native
    arrays = {name: np.asarray(value, dtype=np.float32) for name, value in native.weights.items()}
    arrays["meta.backend"] = np.array(BACKEND_ID)
    arrays["meta.epochs"] = np.array(int(model.metadata.get("epochs", 0)), dtype=np.int64)
    with open(Path(directory) / WEIGHT_FILE, "wb") as fh:
        np.savez(fh, **arrays)
    return [WEIGHT_FILE]


def load_model(directory: Path, manifest: dict, model_config: ModelConfig,
               training_config: TrainingConfig | None) -> ModelHandle:
    """Load ``model.npz`` from a verified bundle ``directory`` (``allow_pickle=False``).

    Raises
    ------
    ptycho_core.errors.BundleError
        The bundle belongs to another backend, ``model.npz`` is missing or unreadable, or its
        weights do not fit ``model_config``.
    """
    directory = Path(directory)
    written_by = manifest.get("backend") if isinstance(manifest, dict) else None
    if written_by != BACKEND_ID:
        files = ", ".join(manifest.get("weights", [])) if isinstance(manifest, dict) else ""
        raise BundleError(
            f"{directory}: this bundle was written by backend {written_by!r} ({files or 'no weight files'}); the "
            f"{BACKEND_ID} backend reads {WEIGHT_FILE}; load it with backend={written_by!r} or convert it with "
            f"`ptycho convert {directory} --to {BACKEND_ID}`"
        )
    path = directory / WEIGHT_FILE
    if not path.is_file():
        raise BundleError(f"{directory}: missing {WEIGHT_FILE} (the {BACKEND_ID} backend's weights)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # not a zip, truncated, or holding pickled objects
        raise BundleError(f"{path}: cannot be read as a NumPy .npz without pickle ({exc})") from None
    if str(arrays.get("meta.backend", "")) != BACKEND_ID:
        raise BundleError(f"{path}: 'meta.backend' is {arrays.get('meta.backend')!r}, expected {BACKEND_ID!r}")
    extra = sorted(set(arrays) - set(weight_shapes(model_config.N)) - set(META_KEYS))
    if extra:
        raise BundleError(f"{path}: unexpected arrays {extra} for a {BACKEND_ID} model")
    weights = validated_weights(arrays, model_config.N, str(path))
    epochs = int(arrays["meta.epochs"]) if "meta.epochs" in arrays else 0
    return ModelHandle(backend=BACKEND_ID, model_config=model_config, training_config=training_config,
                       native=TemplateModel(weights, model_config.N), metadata={"epochs": epochs})


def export_weights(model: ModelHandle) -> dict[str, np.ndarray]:
    """Every weight as a float32 array; ``intensity_scale`` and ``probe.*`` use the canonical names."""
    native: TemplateModel = model.native
    return {name: np.array(value, dtype=np.float32, copy=True) for name, value in native.weights.items()}


def import_weights(model_config: ModelConfig, training_config: TrainingConfig | None,
                   weights: dict[str, np.ndarray]) -> ModelHandle:
    """A model for the configs holding ``weights`` (every name of ``weight_shapes``, no others)."""
    extra = sorted(set(weights) - set(weight_shapes(model_config.N)))
    if extra:
        raise BundleError(f"weights: unexpected names {extra} for a {BACKEND_ID} model (N={model_config.N}); "
                          "weights of a CNN backend cannot be imported into this model")
    checked = validated_weights(weights, model_config.N, "weights")
    return ModelHandle(backend=BACKEND_ID, model_config=model_config, training_config=training_config,
                       native=TemplateModel(checked, model_config.N), metadata={"epochs": 0})
