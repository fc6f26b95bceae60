"""The main job: train -> save bundle -> load bundle -> infer -> stitch -> write outputs.

    >>> from ptycho_core import workflow
    >>> from ptycho_core.config import TrainingConfig
    >>> cfg = TrainingConfig(train_data_file="scan.npz", nepochs=20, backend="pytorch")  # doctest: +SKIP
    >>> rec = workflow.run(cfg)                                                          # doctest: +SKIP
    >>> rec.metadata["paths"]["amplitude_png"]                                           # doctest: +SKIP

The backend is chosen only by ``config.backend`` (whose default is ``$PTYCHO_BACKEND`` or
``'pytorch'``); nothing ever falls back to another backend. Reading data and grouping use
ptycho-data, which every backend package depends on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from ptycho_core import backends, bundle, reference
from ptycho_core.config import InferenceConfig, TrainingConfig
from ptycho_core.contracts import Reconstruction, TrainResult
from ptycho_core.errors import ConfigError, DataError, MissingDependencyError

if TYPE_CHECKING:
    from ptycho_core.contracts import Dataset, InferenceResult, ModelHandle

log = logging.getLogger("ptycho_core.workflow")

BUNDLE_NAME = "model"


def _data_module(name: str) -> Any:
    try:
        import importlib

        return importlib.import_module(f"ptycho_data.{name}")
    except ImportError as exc:  # only when ptycho-core is installed without any backend
        raise MissingDependencyError(
            "the workflow needs ptycho-data (installed with every backend): pip install ptycho-torch"
        ) from exc


def load_dataset(path: Path | str | None, what: str) -> Dataset:
    """Load a DATA-001 NPZ with ptycho-data, with a clear error when no file was given."""
    if path is None:
        raise ConfigError(f"{what}: no data file given (set it in the config or pass --{what.replace('_', '-')})")
    if not Path(path).is_file():
        raise DataError(f"{path}: no such data file ({what})")
    return _data_module("npz").load_dataset(path)


def train(config: TrainingConfig, *, dataset: Dataset | None = None, resume_from: Path | None = None) -> TrainResult:
    """Group the training data and train a new model with ``config.backend``."""
    dataset = dataset if dataset is not None else load_dataset(config.train_data_file, "train_data_file")
    backend = backends.get(config.backend)
    grouped = _data_module("grouping").group_for_training(dataset, config)
    log.info("training %s on %d groups of %d pattern(s) for %d epochs",
             backend.id, grouped.n_groups, grouped.channels, config.nepochs)
    start = time.perf_counter()
    model = backend.build_model(config.model, config)
    result = backend.train(model, grouped, config, resume_from)
    result.timings.setdefault("train_s", time.perf_counter() - start)
    return result


def inference_config_for(config: TrainingConfig, **overrides: Any) -> InferenceConfig:
    """An :class:`InferenceConfig` matching a training config (same model, backend, output_dir)."""
    fields = dict(
        model=config.model, test_data_file=config.test_data_file or config.train_data_file,
        neighbor_count=config.neighbor_count, seed=config.seed, output_dir=config.output_dir,
        backend=config.backend, accelerator=config.accelerator,
    )
    fields.update(overrides)
    return InferenceConfig(**fields)


def predict(model: ModelHandle, dataset: Dataset, config: InferenceConfig) -> InferenceResult:
    """Group ``dataset`` and predict object patches with the model's backend."""
    backend = backends.get(model.backend)
    grouped = _data_module("grouping").group_for_inference(dataset, config)
    return backend.infer(model, grouped, config)


def stitch(result: InferenceResult, config: InferenceConfig, backend_id: str,
           object_shape: tuple[int, int] | None = None) -> Reconstruction:
    """Reassemble predicted patches into the object with the backend's native stitching."""
    patches = reference.apply_flips(result.patches, config.flip_x, config.flip_y, config.transpose)
    shape, origin = reference.canvas_geometry(result.positions, config.stitch_crop, object_shape)
    obj = backends.get(backend_id).reassemble(patches, result.positions, config.stitch_crop, shape, origin)
    return Reconstruction(object=obj, origin=origin, metadata={"backend": backend_id})


def load_model(config: InferenceConfig) -> ModelHandle:
    """Load ``config.model_path``; its backend must be ``config.backend`` (no silent fallback)."""
    if config.model_path is None:
        raise ConfigError("InferenceConfig.model_path: no model bundle given (pass --model-path)")
    return bundle.load_bundle(config.model_path, backend=config.backend)


def infer(config: InferenceConfig, *, model: ModelHandle | None = None, dataset: Dataset | None = None,
          write: bool = True) -> Reconstruction:
    """Reconstruct ``config.test_data_file`` with a trained bundle; write outputs unless ``write=False``."""
    dataset = dataset if dataset is not None else load_dataset(config.test_data_file, "test_data_file")
    model = model if model is not None else load_model(config)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    result = predict(model, dataset, config)
    timings["infer_s"] = time.perf_counter() - start
    start = time.perf_counter()
    shape = None if dataset.object is None else dataset.object.shape
    rec = stitch(result, config, model.backend, shape)
    timings["stitch_s"] = time.perf_counter() - start
    rec.metadata.update(timings=timings, n_patches=int(result.patches.shape[0]))
    if write:
        write_outputs(rec, dataset, config.output_dir)
    return rec


def run(config: TrainingConfig, inference_config: InferenceConfig | None = None) -> Reconstruction:
    """Train, save the bundle, load it back, reconstruct the test data and write all outputs."""
    train_ds = load_dataset(config.train_data_file, "train_data_file")
    test_path = config.test_data_file or config.train_data_file
    test_ds = train_ds if test_path == config.train_data_file else load_dataset(test_path, "test_data_file")
    out = Path(config.output_dir)
    bundle_path = out / BUNDLE_NAME
    icfg = inference_config or inference_config_for(config)
    icfg = attrs.evolve(icfg, model_path=bundle_path, test_data_file=test_path)
    out.mkdir(parents=True, exist_ok=True)
    result = train(config, dataset=train_ds)
    bundle.save_bundle(result.model, bundle_path, training_config=config, inference_config=icfg, overwrite=True)
    model = bundle.load_bundle(bundle_path, backend=config.backend)
    rec = infer(icfg, model=model, dataset=test_ds, write=False)
    rec.metadata["history"] = {k: [float(v) for v in vals] for k, vals in result.history.items()}
    rec.metadata["timings"] = {**result.timings, **rec.metadata["timings"]}
    rec.metadata["epochs"] = result.epochs
    rec.metadata["paths"] = {"bundle": str(bundle_path)}
    write_outputs(rec, test_ds, out)
    return rec


def write_outputs(rec: Reconstruction, dataset: Dataset, output_dir: Path) -> dict[str, str]:
    """Write reconstruction.npz, amplitude/phase PNGs, loss.png and (with ground truth) metrics."""
    from ptycho_core import plots

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = dict(rec.metadata.get("paths", {}))
    npz = out / "reconstruction.npz"
    _atomic_savez(npz, object=rec.object, amplitude=rec.amplitude, phase=rec.phase,
                  origin=np.asarray(rec.origin, dtype=np.float64), backend=np.asarray(rec.metadata["backend"]))
    paths["reconstruction"] = str(npz)
    paths["amplitude_png"] = str(plots.save_image(rec.amplitude, out / "amplitude.png", "Amplitude", rec.origin))
    paths["phase_png"] = str(plots.save_image(rec.phase, out / "phase.png", "Phase (rad)", rec.origin, cmap="twilight"))
    history = rec.metadata.get("history")
    if history:
        paths["loss_png"] = str(plots.save_loss(history, out / "loss.png"))
    if dataset.object is not None and rec.object.shape == dataset.object.shape:
        metrics = _data_module("metrics").evaluate_reconstruction(rec.object, dataset.object, dataset.positions)
        rec.metadata["metrics"] = metrics
        metrics_path = out / "metrics.json"
        _atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=float))
        paths["metrics"] = str(metrics_path)
        paths["comparison_png"] = str(plots.save_comparison(rec.object, dataset.object, out / "comparison.png",
                                                            metrics))
    rec.metadata["paths"] = paths
    summary = {k: v for k, v in rec.metadata.items() if k in ("backend", "timings", "epochs", "paths", "n_patches")}
    _atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return paths


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)

