"""The main job: train -> save bundle -> load bundle -> infer -> stitch -> write outputs.

    >>> from ptycho import workflow
    >>> from ptycho_core.config import TrainingConfig
    >>> cfg = TrainingConfig(train_data_file="scan.npz", nepochs=20, backend="pytorch")  # doctest: +SKIP
    >>> rec = workflow.run(cfg)                                                          # doctest: +SKIP
    >>> rec.metadata.paths["amplitude_png"]                                           # doctest: +SKIP

The backend is chosen only by ``config.backend`` (whose default is ``$PTYCHO_BACKEND`` or
``'pytorch'``); nothing ever falls back to another backend. Reading data and grouping use
ptycho-data, which every backend package depends on.

Data larger than memory: a lazy dataset directory (``ptycho_data.lazy``) or an HDF5 dataset
file is opened lazily, grouping then gives a ``GroupedData`` whose ``X`` is read batch by
batch by the backends, and :func:`infer` predicts and stitches chunk by chunk
(:func:`predict_and_stitch`), so neither the patterns nor the predicted patches are ever
held all at once. NPZ files are always loaded whole.

Several training datasets: ``TrainingConfig.train_data_file`` may name several files (a list,
a glob pattern, a directory of datasets; :func:`data_paths`); each is grouped on its own and
normalised by its own factor, and the groups are trained on together
(``ptycho_data.grouping.group_datasets``). ``init_from`` starts training from the weights of a
model bundle or of a shipped model ``pretrained:NAME`` (fine-tuning, :mod:`ptycho.finetune`,
:mod:`ptycho.pretrained`).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from ptycho_core import atomic, backends, bundle, reference
from ptycho_core.config import InferenceConfig, ModelConfig, ReadOptions, TrainingConfig
from ptycho_core.contracts import Reconstruction, Refinement, TrainResult
from ptycho_core.errors import ConfigError, DataError, OutputExistsError

if TYPE_CHECKING:
    from ptycho_core.contracts import Dataset, GroupedData, InferenceResult, ModelHandle

log = logging.getLogger("ptycho.workflow")

BUNDLE_NAME = "model"

NPHOTONS_TOLERANCE = 2.0
"""An explicit ``nphotons`` more than this factor off the data's photons per pattern is warned about."""

STREAM_CHUNK_BYTES = 1 << 27
"""Predicted patches (complex64) held at once while :func:`predict_and_stitch` streams a lazy dataset."""

def load_dataset(path: Path | str | None, what: str, options: ReadOptions | None = None) -> Dataset:
    """Load a dataset with ptycho-data's one reader; see :func:`ptycho_data.readers.load_dataset`."""
    from ptycho_data.readers import load_dataset as read

    return read(path, what, options)


#: Fraction of the probe's energy outside the model's object support above which :func:`report_probe_support` says
#: that the loss is biased (info), and above which it warns.
PROBE_OUTSIDE_NOTE, PROBE_OUTSIDE_WARN = 1e-3, 0.05


def report_probe_support(probe: Any, model: ModelConfig) -> float | None:
    """Log the fraction of ``probe``'s energy outside the object support of ``model`` and return it.

    Only for models that merge their groups (``ModelConfig.stitches_group_object``: gridsize > 1 with
    ``object_big``), whose object is zero outside the union of the groups' central windows (side
    ``ModelConfig.window_side``, N/2 by default; physics.md s5, "Object support and the probe"); None
    for the others. Info below :data:`PROBE_OUTSIDE_WARN`, a warning above it, naming a wider
    ``object_window`` and gridsize 1 (whose outer branch covers the whole patch) as the alternatives.
    """
    if not model.stitches_group_object:
        return None
    side = model.window_side
    fraction = reference.probe_outside_window(probe, side)
    text = (f"probe: {100 * fraction:.2g} % of its energy lies outside the central {side} x {side} window, the "
            f"object support of a gridsize-{model.gridsize} model with object_window {model.object_window:g} "
            f"(physics.md s5)")
    if fraction > PROBE_OUTSIDE_NOTE:
        text += ("; the true object cannot fit these patterns exactly, so the loss biases the network's amplitude "
                 "(the default simulated probe, 0.8 % outside the N/2 window, moves the loss's minimum to amplitude "
                 "SSIM 0.77 on the demo's object: docs/amortised.md, benchmarks/loss_ceiling.py)")
    if fraction > PROBE_OUTSIDE_WARN:
        log.warning("%s; a wider object_window (up to 1.0, the whole patch) or gridsize 1 models more of it", text)
    else:
        log.info("%s", text)
    return fraction


def resolve_nphotons(config: TrainingConfig, dataset: Any) -> TrainingConfig:
    """``config`` with ``nphotons`` measured from ``dataset`` (one, or a list) when unset (physics.md s3), else checked.

    The measure is :func:`ptycho_core.reference.mean_photons` (mean over patterns of
    ``sum(amplitude**2)``). An explicit ``nphotons`` more than :data:`NPHOTONS_TOLERANCE` times
    off the data is kept (it is an override) but logged as a warning.
    """
    sets = list(dataset) if isinstance(dataset, (list, tuple)) else [dataset]
    counts = [len(ds.xcoords) for ds in sets]
    per_set = [reference.mean_photons(ds if hasattr(ds, "iter_batches") else ds.diffraction) for ds in sets]
    measured = float(sum(c * m for c, m in zip(counts, per_set)) / sum(counts))  # the mean over all patterns
    if config.nphotons is None:
        log.info("photons per pattern measured from the data: %.4g (mean of sum(amplitude^2)%s); physics scale "
                 "s = sqrt(nphotons)/(N/2) = %.4g", measured, f" over {len(sets)} datasets" if len(sets) > 1 else "",
                 math.sqrt(measured) / (sets[0].N / 2))
        return attrs.evolve(config, nphotons=measured)
    ratio = config.nphotons / measured if measured > 0 else math.inf
    if not 1 / NPHOTONS_TOLERANCE <= ratio <= NPHOTONS_TOLERANCE:
        log.warning("nphotons = %.4g overrides the %.4g photons per pattern measured in the data (%.3gx): the "
                    "physics scale will be off by %.3gx; drop --nphotons (or set it to none) to use the data's",
                    config.nphotons, measured, ratio, math.sqrt(ratio))
    return config


GLOB_CHARS = "*?["
#: File suffixes a directory of training datasets is searched for (the format itself is chosen by content).
DATASET_SUFFIXES = (".npz", ".h5", ".hdf5", ".hdf")


def _is_dataset(path: Path) -> bool:
    """A data file (NPZ or HDF5) or a lazy dataset directory (``meta.json``), not hidden."""
    if path.name.startswith("."):
        return False
    if path.is_dir():
        return (path / "meta.json").is_file()
    return path.is_file() and path.suffix.lower() in DATASET_SUFFIXES


def data_paths(value: Path | str | Sequence[Path | str] | None, what: str) -> list[Path]:
    """The datasets ``value`` names: paths, glob patterns and directories of datasets, expanded.

    A path with ``*``, ``?`` or ``[`` is a glob pattern (sorted matches that are datasets); a
    directory that is not itself a lazy dataset (no ``meta.json``) stands for the datasets in it
    (NPZ and HDF5 files and lazy dataset directories, sorted by name); anything else is one
    dataset. The order is kept; a dataset named twice is an error.

    Raises
    ------
    ConfigError
        Nothing given.
    DataError
        A pattern or directory without datasets, or the same dataset twice.
    """
    if value is None:
        raise ConfigError(f"{what}: no data file given (set it in the config or pass --{what.replace('_', '-')})")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    kinds = "NPZ files, HDF5 files (.h5, .hdf5, .hdf) or lazy dataset directories (with meta.json)"
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if any(c in str(item) for c in GLOB_CHARS):
            found = [p for p in sorted(map(Path, glob.glob(str(item)))) if _is_dataset(p)]
            if not found:
                raise DataError(f"{what}: the pattern {str(item)!r} matches no dataset (expected {kinds})")
            out += found
        elif path.is_dir() and not (path / "meta.json").exists():
            found = sorted(p for p in path.iterdir() if _is_dataset(p))
            if not found:
                raise DataError(f"{what}: the directory {path} holds no dataset (expected {kinds})")
            out += found
        else:
            out.append(path)
    seen: set[Path] = set()
    for path in out:
        key = path.resolve()
        if key in seen:
            raise DataError(f"{what}: {path} is named twice (a dataset would count double); name each once")
        seen.add(key)
    return out


def load_datasets(value: Path | str | Sequence[Path | str] | None, what: str,
                  options: ReadOptions | None = None) -> tuple[list[Path], list[Any]]:
    """Every dataset :func:`data_paths` finds in ``value``, loaded with :func:`load_dataset` (``options``).

    Datasets of a different N than the first are an error naming both files; nothing stays open then.
    """
    paths = data_paths(value, what)
    loaded: list[Any] = []
    try:
        for path in paths:
            ds = load_dataset(path, what, options)
            loaded.append(ds)
            if ds.N != loaded[0].N:
                raise DataError(f"{what}: {path} has patterns of side N = {ds.N}, but {paths[0]} has N = "
                                f"{loaded[0].N}; datasets trained together must have the same N")
    except BaseException:
        _close(*loaded)
        raise
    return paths, loaded


def first_training_file(config: TrainingConfig) -> Path | None:
    """The test data of a training config: ``test_data_file``, else the first training dataset."""
    if config.test_data_file is not None or config.train_data_file is None:
        return config.test_data_file
    return data_paths(config.train_data_file, "train_data_file")[0]


def _close(*datasets: Any) -> None:
    """Release the files of lazy datasets this module opened (HDF5); in-memory datasets have nothing to close."""
    for ds in datasets:
        if isinstance(ds, (list, tuple)):
            _close(*ds)
            continue
        close = getattr(ds, "close", None)
        if callable(close):
            close()


def is_primary_process(environ: dict[str, str] | None = None) -> bool:
    """False in the non-zero ranks of a distributed (DDP) job, which must not write outputs.

    Read from the launcher's environment, so it works without importing a framework: ``RANK``
    (torchrun), else ``SLURM_PROCID`` when SLURM runs several tasks, else ``NODE_RANK`` and
    ``LOCAL_RANK`` (what Lightning sets for the processes it starts). No variable: one process.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]) == 0
    return int(env.get("NODE_RANK", "0")) == 0 and int(env.get("LOCAL_RANK", "0")) == 0


#: Files (and the bundle) of a result directory that a new run refuses to replace unless told to overwrite.
RESULT_FILES = ("reconstruction.npz", "summary.json")


def check_no_result(paths: Sequence[Path | str], overwrite: bool = False) -> None:
    """Refuse to replace an earlier result: raise if any of ``paths`` exists, unless ``overwrite``.

    A non-empty directory counts as existing, an empty one does not.

    Raises
    ------
    ptycho_core.errors.OutputExistsError
        Names the first existing path and says how to replace it.
    """
    if overwrite:
        return
    for path in map(Path, paths):
        if path.is_dir() and not any(path.iterdir()):
            continue
        if path.exists():
            raise OutputExistsError(f"{path}: already exists (the result of an earlier run); pass --overwrite "
                                    "(overwrite=True in Python) to replace it, or choose another --output-dir")


def start_provenance(config: TrainingConfig | InferenceConfig, inference_config: InferenceConfig | None = None,
                     command: Sequence[str] | None = None) -> dict[str, Any]:
    """:func:`ptycho_core.provenance.start` for a run of ``config`` (inputs: its data files and model)."""
    from ptycho_core import provenance

    if isinstance(config, TrainingConfig):
        configs: dict[str, Any] = {"training": config, "inference": inference_config}
        train = data_paths(config.train_data_file, "train_data_file") if config.train_data_file is not None else []
        test = config.test_data_file if config.test_data_file not in train else None
        inputs = {"train_data_file": train[0] if len(train) == 1 else None, "test_data_file": test}
        if len(train) > 1:
            inputs.update({f"train_data_file[{i}]": p for i, p in enumerate(train)})
    else:
        configs = {"inference": config}
        inputs = {"test_data_file": config.test_data_file, "model_path": config.model_path}
    from ptycho import pretrained

    inputs = {k: pretrained.directory(v) if pretrained.is_reference(v) else v for k, v in inputs.items()
              if v is not None}
    inputs = {k: v for k, v in inputs.items() if Path(v).exists()}
    return provenance.start(command=command, backend=config.backend, accelerator=config.accelerator,
                            configs=configs, inputs=inputs)


def train(config: TrainingConfig, *, dataset: Dataset | Sequence[Dataset] | None = None,
          resume_from: Path | None = None, overwrite: bool = False, init_from: Path | None = None,
          read_options: ReadOptions | None = None) -> TrainResult:
    """Group the training data and train a model with ``config.backend``.

    ``dataset`` (one, or a list) replaces reading ``config.train_data_file`` (with
    ``read_options``); several datasets are grouped each on its own and trained on together.
    The model is new, or with ``init_from`` the weights of that bundle or shipped model ``pretrained:NAME``
    (:func:`ptycho.finetune.initial_model`: same ModelConfig, and for a bundle the same backend). Without
    ``resume_from``, checkpoints of an earlier run in ``output_dir/checkpoints`` are not trained
    over unless ``overwrite`` (:class:`~ptycho_core.errors.OutputExistsError`). ``nphotons`` is
    measured from the data when unset (:func:`resolve_nphotons`); the trained model's
    ``training_config`` holds the value used.
    """
    if resume_from is not None and init_from is not None:
        raise ConfigError("init_from: cannot be combined with resume_from (a checkpoint already holds the weights); "
                          "pass one of --resume and --init-from")
    if resume_from is None:
        check_no_result([Path(config.output_dir) / "checkpoints"], overwrite)
    if init_from is not None:
        from ptycho.finetune import check_compatible

        check_compatible(config, init_from)  # before reading any data
    names: list[str] | None = None
    opened: list[Any] = []
    if dataset is None:
        paths, opened = load_datasets(config.train_data_file, "train_data_file", read_options)
        dataset, names = (opened[0] if len(opened) == 1 else opened), [str(p) for p in paths]
    try:
        config = resolve_nphotons(config, dataset)
        backend = backends.get(config.backend)
        from ptycho_data import grouping

        grouped = grouping.group_for_training(
            list(dataset) if isinstance(dataset, (list, tuple)) else dataset, config,
            **({"names": names} if isinstance(dataset, (list, tuple)) else {}))
        report_probe_support(grouped.probe, config.model)
        n_sets = 1 if grouped.norm_factors is None else len(grouped.norm_factors)
        log.info("training %s on %d groups of %d pattern(s) from %d dataset(s) for %d epochs",
                 backend.id, grouped.n_groups, grouped.channels, n_sets, config.nepochs)
        start = time.perf_counter()
        if init_from is not None:
            from ptycho.finetune import initial_model

            model = initial_model(config, init_from)
        else:
            model = backend.build_model(config.model, config)
        result = backend.train(model, grouped, config, resume_from)
    finally:
        _close(opened)
    result.timings.setdefault("train_s", time.perf_counter() - start)
    return result


#: InferenceConfig fields that :func:`inference_config_for` takes from the training config.
INFERENCE_FROM_TRAINING = ("model", "test_data_file", "neighbor_count", "seed", "output_dir", "backend",
                           "accelerator", "progress")


def inference_config_for(config: TrainingConfig, **overrides: Any) -> InferenceConfig:
    """An :class:`InferenceConfig` matching a training config (same model, backend, output_dir).

    The :data:`INFERENCE_FROM_TRAINING` fields come from ``config`` (``test_data_file``: its test
    data, else its first training dataset), the others are the defaults; ``overrides`` replace either.
    """
    fields = {name: getattr(config, name) for name in INFERENCE_FROM_TRAINING}
    fields["test_data_file"] = first_training_file(config)
    fields.update(overrides)
    return InferenceConfig(**fields)


def predict(model: ModelHandle, dataset: Dataset, config: InferenceConfig) -> InferenceResult:
    """Group ``dataset`` and predict object patches with the model's backend."""
    from ptycho_data import grouping

    backend = backends.get(model.backend)
    grouped = grouping.group_for_inference(dataset, config)
    return backend.infer(model, grouped, config)


def stitch_weight(config: InferenceConfig, probe: np.ndarray | None) -> np.ndarray | None:
    """The (N, N) weight of every patch pixel for ``config.stitch_weight`` (None: equal weights).

    ``'probe'``: :func:`ptycho_core.reference.probe_stitch_weight` of ``probe``, flipped like the patches
    (``flip_x``, ``flip_y``, ``transpose``). ``probe`` is the probe of the data being reconstructed; without it
    a probe weighting is an error, not a silent fallback to equal weights.
    """
    if config.stitch_weight == "uniform":
        return None
    if probe is None:
        raise ConfigError("InferenceConfig.stitch_weight: 'probe' weights the stitching by the probe, but no probe "
                          "was given (pass the dataset's probe, or set stitch_weight = 'uniform')")
    weight = reference.probe_stitch_weight(probe)
    return reference.apply_flips(weight[None], config.flip_x, config.flip_y, config.transpose)[0]


def _reassemble(backend: backends.Backend, patches: np.ndarray, weight: np.ndarray | None, positions: np.ndarray,
                crop: int, shape: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    """The backend's native stitching, weighted by ``weight`` (N, N) when given: ``stitch(P w) / stitch(w)``.

    Both stitches divide by the same coverage, so their ratio is the weighted mean of the crops
    (:func:`ptycho_core.reference.reassemble_weighted`); 0 where no crop landed.
    """
    if weight is None:
        return backend.reassemble(patches, positions, crop, shape, origin)
    num = backend.reassemble((patches * weight).astype(np.complex64), positions, crop, shape, origin)
    weights = np.empty(patches.shape, dtype=np.complex64)  # writable: a backend may hand it to its framework
    weights[:] = weight
    den = backend.reassemble(weights, positions, crop, shape, origin).real
    covered = den > 0
    return np.where(covered, num / np.where(covered, den, 1.0), 0).astype(np.complex64)


def stitch(result: InferenceResult, config: InferenceConfig, backend_id: str,
           object_shape: tuple[int, int] | None = None, *, probe: np.ndarray | None = None) -> Reconstruction:
    """Reassemble predicted patches into the object with the backend's native stitching.

    ``probe`` (N, N), the probe of the reconstructed data, is needed for ``config.stitch_weight = 'probe'``
    (the default; :func:`stitch_weight`).
    """
    weight = stitch_weight(config, probe)
    patches = reference.apply_flips(result.patches, config.flip_x, config.flip_y, config.transpose)
    shape, origin = reference.canvas_geometry(result.positions, config.stitch_crop, object_shape)
    obj = _reassemble(backends.get(backend_id), patches, weight, result.positions, config.stitch_crop, shape, origin)
    return Reconstruction(object=obj, origin=origin, metadata={"backend": backend_id})


def load_model(config: InferenceConfig) -> ModelHandle:
    """Load ``config.model_path``: a bundle, whose backend must be ``config.backend`` (no silent fallback), or a
    shipped model ``pretrained:NAME`` (:mod:`ptycho.pretrained`), built by ``config.backend`` from its weights."""
    if config.model_path is None:
        raise ConfigError("InferenceConfig.model_path: no model bundle given (pass --model-path)")
    from ptycho import pretrained

    return pretrained.load(config.model_path, backend=config.backend)


def _with_model_config(config: InferenceConfig, model: ModelHandle) -> InferenceConfig:
    """``config`` with the model settings of ``model`` (the bundle fixes them; grouping needs its gridsize)."""
    if config.model == model.model_config:
        return config
    if config.model != ModelConfig():
        log.info("using the model settings of the bundle (%s), not those of the inference config", model.model_config)
    return attrs.evolve(config, model=model.model_config)


def predict_and_stitch(model: ModelHandle, grouped: GroupedData, config: InferenceConfig,
                       object_shape: tuple[int, int] | None = None, *,
                       canvas: tuple[tuple[int, int], tuple[int, int]] | None = None) -> Reconstruction:
    """Predict and stitch chunk by chunk, holding one chunk of predicted patches at a time.

    The groups are taken in chunks of :data:`STREAM_CHUNK_BYTES` worth of patches (a lazy
    ``X`` stays lazy: the backend reads it batch by batch). Each chunk is stitched by the
    backend's native reassembly onto the bounding box of its crops; since that result is
    ``sum / (coverage + eps)``, multiplying it by the chunk's coverage (the splat of ones,
    :func:`ptycho_core.reference.reassemble` with ``return_coverage``) recovers the chunk's
    sum, which is added into one float64 canvas together with the coverage. The result equals
    :func:`stitch` of all patches at once up to float rounding.

    Parameters
    ----------
    model : ModelHandle
        A trained model.
    grouped : GroupedData
        Groups to reconstruct (in memory or lazy).
    config : InferenceConfig
        Batch size, crop and flips.
    object_shape : (int, int), optional
        Canvas = the object (origin (0, 0)), as in :func:`stitch`.
    canvas : ((H, W), (x0, y0)), optional
        Explicit canvas shape and origin (default: :func:`ptycho_core.reference.canvas_geometry`).

    Returns
    -------
    Reconstruction
        With ``metadata.timings`` (``infer_s``, ``stitch_s``) and ``metadata.n_patches``.
    """
    backend = backends.get(model.backend)
    crop = config.stitch_crop
    weight = stitch_weight(config, grouped.probe)
    positions = grouped.positions.reshape(-1, 2)
    shape, origin = canvas if canvas is not None else reference.canvas_geometry(positions, crop, object_shape)
    H, W = shape
    total = np.zeros((H, W), dtype=np.complex128)
    coverage = np.zeros((H, W), dtype=np.float64)  # the summed weights (equal weights: the coverage)
    per_chunk = max(1, STREAM_CHUNK_BYTES // (grouped.N * grouped.N * grouped.channels * 8))
    infer_s = stitch_s = 0.0
    for first in range(0, grouped.n_groups, per_chunk):
        t0 = time.perf_counter()
        result = backend.infer(model, grouped.batch(slice(first, first + per_chunk)), config)
        t1 = time.perf_counter()
        patches = reference.apply_flips(result.patches, config.flip_x, config.flip_y, config.transpose)
        part_pos = result.positions
        del result
        sub_shape, sub_origin = reference.canvas_geometry(part_pos, crop)  # bounding box of this chunk
        if weight is not None:
            patches = (patches * weight).astype(np.complex64)
        part = backend.reassemble(patches, part_pos, crop, sub_shape, sub_origin)
        del patches
        ones = np.ones((part_pos.shape[0], crop, crop), dtype=np.float32)
        _, part_cov = reference.reassemble(ones, part_pos, crop, sub_shape, sub_origin, return_coverage=True)
        part_w = None
        if weight is not None:  # the summed weights: the splat of the weight's crop at every position
            w_crops = np.broadcast_to(reference.crop_center(weight, crop), ones.shape)
            part_w = reference.splat_sum(w_crops, part_pos, sub_shape, sub_origin)[0].real
        _add_at(total, coverage, part, part_cov, sub_origin, origin, part_w)
        stitch_s += time.perf_counter() - t1
        infer_s += t1 - t0
    obj = (total / (coverage + reference.COVERAGE_EPS)).astype(np.complex64)
    return Reconstruction(object=obj, origin=origin, metadata={
        "backend": model.backend, "timings": {"infer_s": infer_s, "stitch_s": stitch_s},
        "n_patches": int(positions.shape[0]), "streamed": True})


def _add_at(total: np.ndarray, coverage: np.ndarray, part: np.ndarray, part_cov: np.ndarray,
            part_origin: tuple[int, int], origin: tuple[int, int], part_w: np.ndarray | None = None) -> None:
    """Add a chunk's sums ``part * (part_cov + eps)`` and its summed weights ``part_w`` (default: the coverage
    ``part_cov``) into the canvas where they overlap it."""
    r0, c0 = part_origin[1] - origin[1], part_origin[0] - origin[0]
    h, w = part.shape
    H, W = total.shape
    rs, re_ = max(r0, 0), min(r0 + h, H)
    cs, ce = max(c0, 0), min(c0 + w, W)
    if rs >= re_ or cs >= ce:
        return
    src = (slice(rs - r0, re_ - r0), slice(cs - c0, ce - c0))
    cov = part_cov[src].astype(np.float64)
    total[rs:re_, cs:ce] += part[src].astype(np.complex128) * (cov + reference.COVERAGE_EPS)
    coverage[rs:re_, cs:ce] += cov if part_w is None else part_w[src]


def infer(config: InferenceConfig, *, model: ModelHandle | None = None, dataset: Dataset | None = None,
          write: bool = True, overwrite: bool = False, command: Sequence[str] | None = None,
          read_options: ReadOptions | None = None) -> Reconstruction:
    """Reconstruct ``config.test_data_file`` with a trained bundle; write outputs unless ``write=False``.

    An earlier result in ``config.output_dir`` (:data:`RESULT_FILES`) is replaced only with
    ``overwrite=True``. The outputs record their provenance (command line, default ``sys.argv``).
    A lazy dataset (see :func:`load_dataset`) is predicted and stitched chunk by chunk
    (:func:`predict_and_stitch`); in-memory data as one :func:`predict` + :func:`stitch`.
    """
    if write:
        check_no_result([Path(config.output_dir) / name for name in RESULT_FILES], overwrite)
    record = start_provenance(config, command=command) if write else None
    opened = dataset is None
    dataset = dataset if dataset is not None else load_dataset(config.test_data_file, "test_data_file", read_options)
    try:
        model = model if model is not None else load_model(config)
        config = _with_model_config(config, model)
        shape = None if dataset.object is None else dataset.object.shape
        from ptycho_data import grouping

        grouped = grouping.group_for_inference(dataset, config)
        if grouped.is_lazy:
            log.info("streaming inference over %d lazily read groups", grouped.n_groups)
            rec = predict_and_stitch(model, grouped, config, shape)
        else:
            timings: dict[str, float] = {}
            start = time.perf_counter()
            result = backends.get(model.backend).infer(model, grouped, config)
            timings["infer_s"] = time.perf_counter() - start
            start = time.perf_counter()
            rec = stitch(result, config, model.backend, shape, probe=dataset.probe)
            timings["stitch_s"] = time.perf_counter() - start
            rec.metadata.timings.update(timings)
            rec.metadata.n_patches = int(result.patches.shape[0])
        if config.refine_iterations:
            rec = refine(rec, dataset, config)
        if write:
            write_outputs(rec, dataset, config.output_dir, provenance=record, stitch_crop=config.stitch_crop)
        return rec
    finally:
        if opened:
            _close(dataset)


def _patterns(dataset: Any) -> Any:
    """What :mod:`ptycho.refine` reads the measured amplitudes from: a lazy dataset block by block."""
    return dataset if hasattr(dataset, "read") else dataset.diffraction


def data_misfits(rec: Reconstruction, dataset: Any) -> tuple[float, float]:
    """How well the network's stitched object explains ``dataset``'s patterns, without ground truth.

    Returns ``(network, flat)``: :func:`ptycho.refine.object_misfit` (the relative amplitude misfit
    of physics.md s8) of ``rec``'s network output (the object itself, or, when ``rec`` was refined,
    the refinement's first misfit, which is that of ``metadata.refine.network_object``) and of a
    flat object on the same canvas, the reference that explains none of the object's structure.
    """
    from ptycho.refine import object_misfit

    def misfit(obj: np.ndarray) -> float:
        return object_misfit(obj, rec.origin, _patterns(dataset), dataset.positions, dataset.probe)

    refined = rec.metadata.refine
    network = refined.misfit[0] if refined is not None else misfit(rec.object)
    return network, misfit(np.ones_like(rec.object))


def refine(rec: Reconstruction, dataset: Any, config: InferenceConfig) -> Reconstruction:
    """``config.refine_iterations`` passes of :func:`ptycho.refine.refine_object` on ``rec``.

    Returns a new reconstruction on the same canvas; its ``metadata.refine`` (a
    :class:`~ptycho_core.contracts.Refinement`) holds the iterations, the misfit per pass, the
    fitted scale, the seconds and ``network_object`` (the stitched network output before
    refinement), and ``metadata.timings['refine_s']`` the seconds.
    """
    from ptycho.refine import refine_object

    res = refine_object(rec.object, rec.origin, _patterns(dataset), dataset.positions, dataset.probe,
                        config.refine_iterations, seed=config.seed, progress=None if config.progress else False)
    log.info("refined %d passes in %.1f s: misfit %.3g -> %.3g", config.refine_iterations, res.seconds,
             res.misfit[0], res.misfit[-1])
    refinement = Refinement(iterations=config.refine_iterations, misfit=res.misfit, scale=res.scale,
                            seconds=res.seconds, network_object=rec.object)
    meta = attrs.evolve(rec.metadata, timings={**rec.metadata.timings, "refine_s": res.seconds}, refine=refinement,
                        network_misfit=res.misfit[0])
    return Reconstruction(object=res.object, origin=rec.origin, metadata=meta)


def run(config: TrainingConfig, inference_config: InferenceConfig | None = None, *, overwrite: bool = False,
        command: Sequence[str] | None = None, init_from: Path | None = None,
        read_options: ReadOptions | None = None) -> Reconstruction:
    """Train, save the bundle, load it back, reconstruct the test data and write all outputs.

    An earlier result in ``config.output_dir`` (the bundle, :data:`RESULT_FILES`, checkpoints)
    is replaced only with ``overwrite=True``. The bundle and the outputs record their
    provenance (command line: ``command``, default ``sys.argv``). With several training
    datasets the test data defaults to the first; ``init_from`` as in :func:`train`;
    ``read_options`` apply to the training and the test data.
    """
    out = Path(config.output_dir)
    check_no_result([out / BUNDLE_NAME, *(out / name for name in RESULT_FILES)], overwrite)
    train_paths, train_sets = load_datasets(config.train_data_file, "train_data_file", read_options)
    train_ds = train_sets[0] if len(train_sets) == 1 else train_sets
    test_path = config.test_data_file or train_paths[0]
    test_ds = (train_sets[0] if test_path == train_paths[0]
               else load_dataset(test_path, "test_data_file", read_options))
    bundle_path = out / BUNDLE_NAME
    icfg = inference_config or inference_config_for(config)
    icfg = attrs.evolve(icfg, model_path=bundle_path, test_data_file=test_path)
    record = start_provenance(config, icfg, command)
    out.mkdir(parents=True, exist_ok=True)
    if init_from is not None:
        record["inputs"]["init_from"] = provenance_input(init_from)
    result = train(config, dataset=train_ds, overwrite=overwrite, init_from=init_from)
    if not is_primary_process():  # another rank of a DDP job: rank 0 saves and writes everything
        rec = infer(icfg, model=result.model, dataset=test_ds, write=False)
        _close(train_ds, test_ds)
        return rec
    from ptycho_core import provenance

    bundle.save_bundle(result.model, bundle_path, training_config=result.model.training_config or config,
                       inference_config=icfg, overwrite=True, provenance=provenance.finish(record))
    model = bundle.load_bundle(bundle_path, backend=config.backend)
    rec = infer(icfg, model=model, dataset=test_ds, write=False)
    rec.metadata.history = {k: [float(v) for v in vals] for k, vals in result.history.items()}
    rec.metadata.timings = {**result.timings, **rec.metadata.timings}
    rec.metadata.epochs = result.epochs
    rec.metadata.paths = {"bundle": str(bundle_path)}
    write_outputs(rec, test_ds, out, provenance=record, stitch_crop=icfg.stitch_crop)
    _close(train_ds, test_ds)
    return rec


def provenance_input(path: Path | str) -> dict[str, Any]:
    """:func:`ptycho_core.provenance.input_record` of an input such as an ``init_from`` bundle (for a shipped
    model ``pretrained:NAME``: its directory, plus ``"pretrained": NAME``)."""
    from ptycho import pretrained
    from ptycho_core import provenance

    if pretrained.is_reference(path):
        return {**provenance.input_record(pretrained.directory(path)), "pretrained": pretrained.name_of(path)}
    return provenance.input_record(path)


def score(rec: Reconstruction, dataset: Dataset) -> dict[str, Any] | None:
    """Metrics of ``rec`` against ``dataset.object`` (None without ground truth on the same grid).

    :func:`ptycho_data.metrics.evaluate_reconstruction` over the scan positions; after
    refinement ``metrics['network']`` scores the network's own output too. Stored in
    ``rec.metadata.metrics``.
    """
    if dataset.object is None or rec.object.shape != dataset.object.shape:
        return None
    from ptycho_data.metrics import evaluate_reconstruction as evaluate

    metrics = evaluate(rec.object, dataset.object, dataset.positions)
    refined = rec.metadata.refine
    if refined:  # the network's own output too, so the gain of the refinement is visible
        metrics["network"] = evaluate(refined.network_object, dataset.object, dataset.positions)
    rec.metadata.metrics = metrics
    return metrics


def write_outputs(rec: Reconstruction, dataset: Dataset, output_dir: Path,
                  provenance: dict[str, Any] | None = None, *, stitch_crop: int | None = None) -> dict[str, str]:
    """Write reconstruction.npz, amplitude/phase PNGs, loss.png and (with ground truth) metrics.

    ``provenance`` (:func:`start_provenance`) is finished now and stored in ``summary.json``
    and ``reconstruction.npz`` (key ``provenance``, a JSON string). The figures
    (:mod:`ptycho.plots`) mask the pixels outside the stitched crops (``stitch_crop``, default
    :class:`InferenceConfig`'s) of ``dataset``'s scan positions, outline the region the metrics
    score and give metres when ``dataset.metadata['pixel_size_m']`` is known.
    """
    from ptycho import plots
    from ptycho_core import provenance as prov

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = dict(rec.metadata.paths)
    npz = out / "reconstruction.npz"
    refined = rec.metadata.refine
    extra = {"network_object": refined.network_object} if refined else {}
    if provenance is not None:
        provenance = prov.finish(provenance)
        extra["provenance"] = np.asarray(json.dumps(provenance, default=str))
    _atomic_savez(npz, object=rec.object, amplitude=rec.amplitude, phase=rec.phase,
                  origin=np.asarray(rec.origin, dtype=np.float64), backend=np.asarray(rec.metadata.backend),
                  **extra)
    paths["reconstruction"] = str(npz)
    metrics = score(rec, dataset)
    if metrics is not None:
        metrics_path = out / "metrics.json"
        _atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=float))
        paths["metrics"] = str(metrics_path)
    crop = stitch_crop if stitch_crop is not None else InferenceConfig().stitch_crop
    mask = plots.scanned_mask(rec.object.shape, rec.origin, dataset.positions, crop)
    pixel = (getattr(dataset, "metadata", None) or {}).get("pixel_size_m")
    pixel = float(pixel) if pixel else None
    from ptycho_data.metrics import evaluated_box

    box = evaluated_box(metrics) if metrics else None
    paths["amplitude_png"] = str(plots.save_image(rec.amplitude, out / "amplitude.png", "Amplitude", rec.origin,
                                                  kind="amplitude", mask=mask, pixel_size_m=pixel, box=box))
    phase = plots.remove_phase_offset(rec.object, mask)
    paths["phase_png"] = str(plots.save_image(phase, out / "phase.png", "Phase (mean over the scanned region removed)",
                                              rec.origin, kind="phase", mask=mask, pixel_size_m=pixel, box=box))
    history = rec.metadata.history
    if history:
        paths["loss_png"] = str(plots.save_loss(history, out / "loss.png"))
    if metrics is not None:
        paths["comparison_png"] = str(plots.save_comparison(
            rec.object, dataset.object, out / "comparison.png", metrics,
            network=refined.network_object if refined else None, mask=mask, pixel_size_m=pixel))
    if rec.metadata.flat_misfit is None:
        start = time.perf_counter()
        rec.metadata.network_misfit, rec.metadata.flat_misfit = data_misfits(rec, dataset)
        rec.metadata.timings["misfit_s"] = time.perf_counter() - start
    rec.metadata.paths = paths
    summary = rec.metadata.summary()
    if history:
        summary["training"] = training_summary(history)
    if refined:
        summary["refine"] = refined.summary()
    if provenance is not None:
        summary["provenance"] = provenance
    _atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return paths


def training_summary(history: dict[str, list[float]]) -> dict[str, Any]:
    """The network's fit at the end of training: epochs run, final Poisson deviance, misfit and rate.

    ``deviance`` is the Poisson negative log-likelihood minus its floor (0 = the predicted
    intensities equal the measured ones); ``misfit`` is ``sum((sqrt(lam) - sqrt(k))^2) / sum(k)``
    over the training data. Keys missing from a backend's history are left out.
    """
    out: dict[str, Any] = {"epochs_run": len(history.get("loss", []))}
    for key in ("deviance", "misfit", "loss", "lr"):
        if history.get(key):
            out[key] = float(history[key][-1])
    return out


def _atomic_write_text(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    with atomic.atomic_file(path) as tmp:  # tmp ends in .npz, so np.savez keeps its name
        np.savez(tmp, **arrays)

