"""Weights in a core bundle (``model.weights.h5``) and canonical weight export/import.

Choice (see the package README): the bundle holds Keras' ``.weights.h5`` file only, and the
architecture is rebuilt from the bundle's ``config.json`` (which the core writes and hands to
:func:`load_model`). An HDF5 weights file holds arrays only, so loading never deserialises
code or pickles: it is safe by construction, stricter than ``.keras`` with ``safe_mode=True``.
Canonical weights follow docs/conventions.md s6 (kernels HWIO float32, the Keras layout).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ptycho_core.config import ModelConfig, TrainingConfig
from ptycho_core.contracts import ModelHandle
from ptycho_core.errors import BundleError
from ptycho_tf._env import keras
from ptycho_tf.model import canonical_conv_names
from ptycho_tf.module import BACKEND_ID, PtychoModel

WEIGHT_FILE = "model.weights.h5"
# weight files other backends write, to recognise a bundle that is not ours
FOREIGN_FORMATS = {"model.ckpt": "pytorch", "last.ckpt": "pytorch", "model.pt": "pytorch"}


def build_handle(model_config: ModelConfig, training_config: TrainingConfig | None) -> ModelHandle:
    """A fresh, untrained model (kernel initialisers seeded from ``training_config.seed`` when given)."""
    seed = training_config.seed if training_config is not None else None
    native = PtychoModel(model_config, training_config, seed=seed)
    return ModelHandle(backend=BACKEND_ID, model_config=model_config, training_config=training_config,
                       native=native)


def save_model(model: ModelHandle, directory: Path) -> list[str]:
    """Write ``model.weights.h5`` into ``directory``; returns ``['model.weights.h5']``."""
    native: PtychoModel = model.native
    if getattr(native, "optimizer", None) is not None:  # trained: leave the Adam state out of the bundle
        clean = PtychoModel(native.model_config, native.training_config)
        clean.copy_weights_from(native)
        native = clean
    native.save_weights(str(Path(directory) / WEIGHT_FILE))
    return [WEIGHT_FILE]


def _foreign_error(directory: Path, backend: str, files: list[str]) -> BundleError:
    what = ", ".join(files) if files else f"no {WEIGHT_FILE}"
    return BundleError(
        f"{directory}: this bundle was written by backend {backend!r} ({what}); the tensorflow backend reads "
        f"Keras weight files ({WEIGHT_FILE}); load it with backend={backend!r} or convert it with "
        f"`ptycho convert {directory} --to tensorflow`"
    )


def load_weights_file(native: PtychoModel, path: Path) -> None:
    """Load a ``.weights.h5`` file into ``native``; a file that does not fit is a :class:`BundleError`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            native.load_weights(str(path))
        except (ValueError, KeyError, OSError) as exc:
            raise BundleError(f"{path}: weights do not fit the model of config.json ({exc})") from None
    skipped = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if skipped:  # Keras only warns when parts of the model find no weights: refuse a partial load
        raise BundleError(f"{path}: weights do not fit the model of config.json ({skipped[0]})")


def load_model(directory: Path, manifest: dict, model_config: ModelConfig,
               training_config: TrainingConfig | None) -> ModelHandle:
    """Rebuild the model from the configs and load ``model.weights.h5`` from a verified bundle directory."""
    directory = Path(directory)
    foreign = sorted(name for name in FOREIGN_FORMATS if (directory / name).exists())
    written_by = manifest.get("backend", BACKEND_ID) if isinstance(manifest, dict) else BACKEND_ID
    if written_by != BACKEND_ID:
        raise _foreign_error(directory, str(written_by), foreign)
    path = directory / WEIGHT_FILE
    if not path.is_file():
        if foreign:
            raise _foreign_error(directory, FOREIGN_FORMATS[foreign[0]], foreign)
        raise BundleError(f"{directory}: missing {WEIGHT_FILE} (the tensorflow backend's Keras weights file)")
    handle = build_handle(model_config, training_config)
    load_weights_file(handle.native, path)
    return handle


def export_weights(model: ModelHandle) -> dict[str, np.ndarray]:
    """Canonical name -> float32 array (conventions s6); kernels HWIO."""
    native: PtychoModel = model.native
    out: dict[str, np.ndarray] = {}
    for name in canonical_conv_names(model.model_config):
        layer = native.net.get_layer(name)
        out[f"{name}.kernel"] = np.array(keras.ops.convert_to_numpy(layer.kernel), dtype=np.float32, copy=True)
        out[f"{name}.bias"] = np.array(keras.ops.convert_to_numpy(layer.bias), dtype=np.float32, copy=True)
    phys = native.physics
    out["intensity_scale"] = np.array(keras.ops.convert_to_numpy(phys.intensity_scale), dtype=np.float32).reshape(())
    out["probe.real"] = np.array(keras.ops.convert_to_numpy(phys.probe_real), dtype=np.float32, copy=True)
    out["probe.imag"] = np.array(keras.ops.convert_to_numpy(phys.probe_imag), dtype=np.float32, copy=True)
    return out


def _take(weights: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in weights:
        raise BundleError(f"weights: missing {name!r} (expected shape {shape}) for this model config")
    arr = np.asarray(weights[name])
    if arr.shape != tuple(shape):
        raise BundleError(f"weights: {name!r} has shape {arr.shape}, expected {tuple(shape)} for this model config")
    return np.array(arr, dtype=np.float32, copy=True)


def import_weights(model_config: ModelConfig, training_config: TrainingConfig | None,
                   weights: dict[str, np.ndarray]) -> ModelHandle:
    """Build a model for the configs and set every weight from canonical names (extra names are an error)."""
    handle = build_handle(model_config, training_config)
    native: PtychoModel = handle.native
    used = set()
    for name in canonical_conv_names(model_config):
        layer = native.net.get_layer(name)
        layer.kernel.assign(_take(weights, f"{name}.kernel", tuple(layer.kernel.shape)))
        layer.bias.assign(_take(weights, f"{name}.bias", tuple(layer.bias.shape)))
        used.update({f"{name}.kernel", f"{name}.bias"})
    phys = native.physics
    N = model_config.N
    phys.intensity_scale.assign(_take(weights, "intensity_scale", ()))
    phys.probe_real.assign(_take(weights, "probe.real", (N, N)))
    phys.probe_imag.assign(_take(weights, "probe.imag", (N, N)))
    used.update({"intensity_scale", "probe.real", "probe.imag"})
    extra = sorted(set(weights) - used)
    if extra:
        raise BundleError(f"weights: unexpected names {extra} for this model config "
                          f"(N={model_config.N}, gridsize={model_config.gridsize}, "
                          f"pad_object={model_config.pad_object}, probe_big={model_config.probe_big}, "
                          f"object_window={model_config.object_window}, "
                          f"probe_big branch built: {model_config.uses_probe_big})")
    return handle
