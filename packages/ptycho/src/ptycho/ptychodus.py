"""Ptychodus adapter: ptycho's backends as Ptychodus reconstructors (``pip install 'ptycho-core[ptychodus]'``).

    >>> from ptycho.ptychodus import PtychoReconstructorLibrary    # doctest: +SKIP
    >>> [r.name for r in PtychoReconstructorLibrary()]                  # doctest: +SKIP
    ['pytorch', 'tensorflow']

:class:`PtychoReconstructorLibrary` (library name ``ptycho``) yields one
:class:`PtychoReconstructor` per installed ptycho backend; Ptychodus lists them as
``ptycho_<backend>``. Each implements Ptychodus's ``TrainableReconstructor``: ``reconstruct``
runs inference and stitching through :mod:`ptycho.workflow`; ``train`` trains on a DATA-001
NPZ written by ``export_training_data``; models are ptycho bundles (``.zip``).

Ptychodus 1.7.0 has no plugin discovery for reconstructors: ``ModelCore`` passes a fixed list
of libraries to ``ProcessingCore``. :func:`create_model_core` (or :func:`install`, for every
``ModelCore`` built afterwards) adds this library to that list; ``python -m ptycho.ptychodus``
starts Ptychodus with it. Importing this module imports no deep-learning framework.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
from ptychodus.api.product import LossValue
from ptychodus.api.reconstruct import (
    ReconstructInput,
    Reconstructor,
    ReconstructorLibrary,
    ReconstructOutput,
    TrainableReconstructor,
    TrainOutput,
)
from ptychodus.api.settings import SettingsRegistry

from ptycho import workflow
from ptycho.ptychodus_data import mean_photons, output_product, to_dataset
from ptycho_core import backends, bundle
from ptycho_core.config import DEFAULT_NEIGHBOR_COUNT, InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError, DataError
from ptycho_data import grouping, npz

if TYPE_CHECKING:
    from ptycho_core.contracts import Dataset, ModelHandle

__all__ = ["LIBRARY_NAME", "PtychoReconstructor", "PtychoReconstructorLibrary", "PtychoSettings",
           "create_model_core", "install", "main"]

LIBRARY_NAME = "ptycho"
"""Ptychodus splits ``<library>_<reconstructor>`` at the first ``_``: the name must not contain one."""
MODEL_EXTENSION = ".zip"
PROGRESS_GOAL = 100
log = logging.getLogger("ptycho.ptychodus")


class PtychoSettings:
    """Training and stitching settings, group ``[Ptycho]`` of the Ptychodus settings file."""

    def __init__(self, registry: SettingsRegistry) -> None:
        group = registry.create_group("Ptycho")
        self.epochs = group.create_integer_parameter("Epochs", 40, minimum=1)
        self.batch_size = group.create_integer_parameter("BatchSize", 16, minimum=1)
        self.gridsize = group.create_integer_parameter("GridSize", 1, minimum=1)
        self.filter_scale = group.create_integer_parameter("FilterScale", 2, minimum=1)
        self.learning_rate = group.create_real_parameter("LearningRate", 1e-3, minimum=0.0)
        self.validation_fraction = group.create_real_parameter("ValidationFraction", 0.1, minimum=0.0, maximum=0.5)
        self.stitch_crop = group.create_integer_parameter("StitchCrop", 20, minimum=1)
        self.seed = group.create_integer_parameter("Seed", 42, minimum=0)
        self.refine_iterations = group.create_integer_parameter("RefineIterations", 0, minimum=0)

    def training_config(self, backend: str, dataset: Dataset, output_dir: Path) -> TrainingConfig:
        """A :class:`TrainingConfig` for ``dataset`` (pattern size and photon count taken from it)."""
        gridsize = self.gridsize.get_value()
        model = ModelConfig(N=dataset.N, gridsize=gridsize, n_filters_scale=self.filter_scale.get_value())
        return TrainingConfig(
            model=model, nepochs=self.epochs.get_value(), batch_size=self.batch_size.get_value(),
            learning_rate=float(self.learning_rate.get_value()), nphotons=mean_photons(dataset),
            neighbor_count=max(DEFAULT_NEIGHBOR_COUNT, gridsize * gridsize - 1), seed=self.seed.get_value(),
            output_dir=output_dir,
            backend=backend,
        )


class PtychoReconstructor(TrainableReconstructor):
    """One ptycho backend as a Ptychodus ``TrainableReconstructor`` (name = backend id)."""

    def __init__(self, backend_id: str, settings: PtychoSettings, logger: logging.Logger) -> None:
        self._backend = backend_id
        self._settings = settings
        self._log = logger
        self._model: ModelHandle | None = None

    @property
    def name(self) -> str:
        return self._backend

    @property
    def model(self) -> ModelHandle | None:
        """The loaded or trained model, ``None`` before ``train`` or ``load_model_from_file``."""
        return self._model

    def get_progress_goal(self) -> int:
        return PROGRESS_GOAL

    # -- reconstruction ------------------------------------------------------------------
    def reconstruct(self, parameters: ReconstructInput) -> Iterator[ReconstructOutput]:
        """Predict object patches with the loaded model and stitch them onto the input object's grid."""
        if self._model is None:
            raise ConfigError(f"{LIBRARY_NAME}_{self._backend}: no model loaded; train one or open a ptycho "
                              f"model bundle (*{MODEL_EXTENSION}) first")
        dataset = to_dataset(parameters)
        model = self._model
        if model.model_config.N != dataset.N:
            raise DataError(f"ReconstructInput.diffraction_patterns: the model expects {model.model_config.N} x "
                            f"{model.model_config.N} patterns, got {dataset.N} x {dataset.N}")
        config = InferenceConfig(model=model.model_config, backend=self._backend,
                                 stitch_crop=min(self._settings.stitch_crop.get_value(), dataset.N),
                                 seed=self._settings.seed.get_value(),
                                 refine_iterations=self._settings.refine_iterations.get_value())
        result = workflow.predict(model, dataset, config)
        rec = workflow.stitch(result, config, self._backend, dataset.object.shape, probe=dataset.probe)
        if config.refine_iterations:
            rec = workflow.refine(rec, dataset, config)
        coverage = _coverage(result.positions, result.patches.shape[1], config, dataset.object.shape)
        obj = np.where(coverage > 0, rec.object, dataset.object)
        self._log.info("reconstructed %d patterns with ptycho backend %r", dataset.n, self._backend)
        comment = f"reconstructed by {LIBRARY_NAME}_{self._backend} (ptycho backend {self._backend!r})"
        yield ReconstructOutput(product=output_product(parameters, obj, comment), progress=PROGRESS_GOAL)

    # -- models --------------------------------------------------------------------------
    def is_model_loaded(self) -> bool:
        return self._model is not None

    def get_model_file_filter(self) -> str:
        return f"ptycho Model Bundles (*{MODEL_EXTENSION})"

    def get_model_file_extension(self) -> str:
        return MODEL_EXTENSION

    def load_model_from_file(self, file_path: Path) -> None:
        """Load a ptycho bundle written by this backend (another backend's bundle is an error)."""
        self._model = bundle.load_bundle(Path(file_path), backend=self._backend)

    def save_model(self, file_path: Path) -> None:
        """Write the current model as a ptycho bundle ``.zip`` (replacing an existing file)."""
        if self._model is None:
            raise ConfigError(f"{LIBRARY_NAME}_{self._backend}: no model to save; train or open one first")
        bundle.save_bundle(self._model, _bundle_path(Path(file_path)), overwrite=True)

    # -- training ------------------------------------------------------------------------
    def get_training_data_file_filter(self) -> str:
        return "ptycho DATA-001 NPZ Files (*.npz)"

    def export_training_data(self, file_path: Path, parameters: ReconstructInput) -> None:
        """Write the input as a DATA-001 NPZ (amplitudes = sqrt(counts), positions in object pixels)."""
        npz.save_dataset(to_dataset(parameters), Path(file_path))

    def train(self, input_path: Path, output_path: Path) -> Iterator[TrainOutput]:
        """Train a new model on a DATA-001 NPZ and save it as ``model.zip`` (or the ``.zip`` given).

        ``input_path`` is the NPZ or a directory holding exactly one ``*.npz``; ``output_path``
        is a directory (the bundle goes to ``<output_path>/model.zip``) or a ``.zip`` file.
        A seeded ``ValidationFraction`` of the patterns is held out; its loss is reported once
        after training, the training loss for every epoch.
        """
        dataset = npz.load_dataset(_training_file(Path(input_path)))
        train_ds, val_ds = _split(dataset, float(self._settings.validation_fraction.get_value()),
                                  self._settings.seed.get_value())
        with tempfile.TemporaryDirectory(prefix="ptycho-ptychodus-") as tmp:
            config = self._settings.training_config(self._backend, train_ds, Path(tmp))
            result = workflow.train(config, dataset=train_ds)
            val_loss = self._validation_loss(result.model, val_ds, config)
        self._model = result.model
        target = Path(output_path)
        target = _bundle_path(target) if target.suffix else target / f"model{MODEL_EXTENSION}"
        bundle.save_bundle(result.model, target, training_config=config, overwrite=True)
        self._log.info("trained %s for %d epochs; model saved to %s", self._backend, result.epochs, target)
        losses = result.history["loss"]
        validation = [] if val_loss is None else [LossValue(epoch=len(losses) - 1, value=val_loss)]
        yield TrainOutput(training_loss=[LossValue(epoch=i, value=float(v)) for i, v in enumerate(losses)],
                          validation_loss=validation, progress=PROGRESS_GOAL)

    def _validation_loss(self, model: ModelHandle, val_ds: Dataset | None, config: TrainingConfig) -> float | None:
        if val_ds is None:
            return None
        config = attrs.evolve(config, nphotons=mean_photons(val_ds))
        try:
            grouped = grouping.group_for_training(val_ds, config)
        except DataError as exc:
            self._log.warning("no validation loss: %s", exc)
            return None
        return float(backends.get(self._backend).forward(model, grouped, config).loss)


def _coverage(positions: np.ndarray, n_side: int, config: InferenceConfig, shape: tuple[int, int]) -> np.ndarray:
    from ptycho_core import reference

    ones = np.ones((positions.shape[0], n_side, n_side), dtype=np.complex64)
    _, coverage = reference.reassemble(ones, positions, config.stitch_crop, shape, (0, 0), return_coverage=True)
    return np.asarray(coverage)


def _bundle_path(path: Path) -> Path:
    if path.suffix == "":
        return path.with_suffix(MODEL_EXTENSION)
    if path.suffix != MODEL_EXTENSION:
        raise ConfigError(f"{path}: ptycho models are saved as {MODEL_EXTENSION} bundles, got suffix {path.suffix!r}")
    return path


def _training_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no such training data file or directory")
    found = sorted(path.glob("*.npz"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DataError(f"{path}: expected exactly one *.npz training data file (export one from Ptychodus), "
                        f"found {names}")
    return found[0]


def _split(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    n_val = int(round(fraction * dataset.n))
    if fraction <= 0 or dataset.n < 2:
        return dataset, None
    n_val = min(max(n_val, 1), dataset.n - 1)
    order = np.random.default_rng(seed).permutation(dataset.n)
    return dataset.subset(np.sort(order[n_val:])), dataset.subset(np.sort(order[:n_val]))


class PtychoReconstructorLibrary(ReconstructorLibrary):
    """Ptychodus library ``ptycho``: one reconstructor per installed ptycho backend.

    Parameters
    ----------
    settings_registry : ptychodus.api.settings.SettingsRegistry, optional
        Registry that holds the ``[Ptycho]`` settings group; a private one when omitted.
    """

    def __init__(self, settings_registry: SettingsRegistry | None = None) -> None:
        super().__init__("ptycho.ptychodus")
        self.settings = PtychoSettings(settings_registry if settings_registry is not None else SettingsRegistry())
        installed = [entry.id for entry in backends.available() if entry.installed]
        self._reconstructors = [PtychoReconstructor(bid, self.settings, self.get_logger()) for bid in installed]
        if not installed:
            self.get_logger().warning("no ptycho backend installed: pip install ptycho-torch (or ptycho-tf)")

    @property
    def name(self) -> str:
        return LIBRARY_NAME

    def __iter__(self) -> Iterator[Reconstructor]:
        return iter(self._reconstructors)


# -- registration with Ptychodus's ModelCore ---------------------------------------------------
_PATCH_LOCK = threading.Lock()


def _with_ptycho(processing_core: Any) -> Any:
    def build(task_manager: Any, settings_registry: SettingsRegistry, product_api: Any, libraries: Any) -> Any:
        library = PtychoReconstructorLibrary(settings_registry)
        return processing_core(task_manager, settings_registry, product_api, [*libraries, library])

    build.ptycho_wraps = processing_core  # type: ignore[attr-defined]
    return build


def create_model_core(settings_file: Path | None = None, **kwargs: Any) -> Any:
    """A Ptychodus ``ModelCore`` whose reconstructor list includes the ``ptycho`` library.

    ``ModelCore`` hands a fixed list of libraries to ``ProcessingCore``; this builds it with
    that constructor wrapped to append :class:`PtychoReconstructorLibrary` (sharing the
    core's settings registry). Arguments are passed to ``ModelCore``.
    """
    from ptychodus.model import core as core_module

    with _PATCH_LOCK:
        original = core_module.ProcessingCore
        core_module.ProcessingCore = _with_ptycho(getattr(original, "ptycho_wraps", original))
        try:
            return core_module.ModelCore(settings_file, **kwargs)
        finally:
            core_module.ProcessingCore = original


def install() -> None:
    """Add the ``ptycho`` library to every Ptychodus ``ModelCore`` built afterwards (idempotent)."""
    from ptychodus.model import core as core_module

    with _PATCH_LOCK:
        if not hasattr(core_module.ProcessingCore, "ptycho_wraps"):
            core_module.ProcessingCore = _with_ptycho(core_module.ProcessingCore)


def main() -> int:
    """Run Ptychodus's own entry point (GUI or ``--batch``) with the ``ptycho`` library installed."""
    install()
    from ptychodus.__main__ import main as ptychodus_main

    return int(ptychodus_main())


if __name__ == "__main__":
    raise SystemExit(main())
