"""A small Python API for notebooks: :func:`train` and :func:`reconstruct` on plain NumPy arrays.

Both are exported by the package (``ptycho.train``, ``ptycho.reconstruct``) and imported only
when first used, so ``import ptycho`` stays light. They write nothing unless given
``output_dir``; then they write what ``ptycho train`` (the model bundle) and ``ptycho infer``
(reconstruction.npz, PNGs, summary.json, metrics with ground truth) write.

Inputs (validated here, with errors that name the argument and the expected shape):

- ``diffraction``: shape ``(n, N, N)``, real, >= 0, ``N`` one of 64, 128, 256, zero frequency
  at the centre (``np.fft.fftshift``-ed). **Amplitudes** (the square root of the photon counts),
  as in the data format; pass measured counts with ``intensities=True`` (their square root is taken).
- ``positions``: shape ``(n, 2)``, the scan centres ``(x, y)`` in object pixels, one per pattern.
- ``probe``: shape ``(N, N)``, complex.
- ``ground_truth`` (optional, :func:`reconstruct` only): the complex object, shape ``(H, W)``;
  the reconstruction is then stitched on its grid and scored (``metadata.metrics``).

Settings: every field of :class:`~ptycho_core.config.TrainingConfig` (for :func:`train`) or
:class:`~ptycho_core.config.InferenceConfig` (for :func:`reconstruct`) and, for :func:`train`,
of :class:`~ptycho_core.config.ModelConfig` may be given as a keyword (``batch_size=8``,
``gridsize=2``); ``N`` comes from the patterns. Unknown names are an error listing the valid ones.

    >>> import ptycho
    >>> from ptycho_data.simulate import SimulationConfig, simulate_dataset
    >>> data = simulate_dataset(SimulationConfig(N=64, n_positions=36, seed=1), progress=False)
    >>> positions = np.stack([data.xcoords, data.ycoords], axis=1)
    >>> trained = ptycho.train(data.diffraction, positions, data.probe, nepochs=1,
    ...                        n_filters_scale=1, progress=False)                    # doctest: +SKIP
    >>> rec = ptycho.reconstruct(data.diffraction, positions, data.probe, model=trained,
    ...                          ground_truth=data.object, progress=False)            # doctest: +SKIP
    >>> rec.object.shape == data.object.shape                                        # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from ptycho_core.config import ALLOWED_N, InferenceConfig, ModelConfig, TrainingConfig
from ptycho_core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from ptycho_core.contracts import Dataset, ModelHandle, Reconstruction, TrainResult

__all__ = ["as_dataset", "reconstruct", "train"]

#: Config fields the API sets itself (from its arguments), so they are not keyword overrides.
_RESERVED = {"N", "model", "train_data_file", "test_data_file", "model_path", "output_dir"}


def _array(value: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except Exception as exc:  # a ragged list, an object that is not an array
        raise DataError(f"{name}: expected a NumPy array, got {type(value).__name__} ({exc})") from exc


def as_dataset(diffraction: Any, positions: Any, probe: Any, *, intensities: bool = False,
               ground_truth: Any = None, pixel_size_m: float | None = None) -> Dataset:
    """A :class:`~ptycho_core.contracts.Dataset` of plain arrays, checked (see the module docstring).

    Raises
    ------
    ptycho_core.errors.DataError
        Naming the argument, the expected shape and what was given.

    >>> as_dataset(np.ones((4, 64, 64)), np.zeros((4, 2)), np.ones((64, 64), complex)).n
    4
    >>> as_dataset(np.ones((64, 64)), np.zeros((1, 2)), np.ones((64, 64)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ptycho_core.errors.DataError: diffraction: expected shape (n, N, N) ..., got (64, 64); for one pattern ...
    """
    from ptycho_core.contracts import Dataset

    diff = _array(diffraction, "diffraction")
    if diff.ndim != 3:
        hint = "; for one pattern pass diffraction[None]" if diff.ndim == 2 else ""
        raise DataError(f"diffraction: expected shape (n, N, N) (n patterns of N x N pixels), got {diff.shape}{hint}")
    n, h, w = diff.shape
    if h != w or h not in ALLOWED_N:
        raise DataError(f"diffraction: expected square patterns of side N in {ALLOWED_N}, shape (n, N, N), "
                        f"got {diff.shape}")
    if n == 0:
        raise DataError("diffraction: expected at least one pattern, got shape (0, N, N)")
    if np.iscomplexobj(diff):
        raise DataError("diffraction: expected real, non-negative amplitudes (or intensities=True for counts), "
                        "got a complex array; pass np.abs(...) of the far field")
    if not np.issubdtype(diff.dtype, np.number) or diff.dtype == bool:
        raise DataError(f"diffraction: expected a numeric array, got dtype {diff.dtype}")
    diff = diff.astype(np.float64 if intensities else np.float32, copy=False)
    if not np.all(np.isfinite(diff)):
        raise DataError("diffraction: contains NaN or infinite values")
    if np.any(diff < 0):
        what = "intensities (counts)" if intensities else "amplitudes"
        raise DataError(f"diffraction: {what} must be >= 0 (negative values found; min {float(diff.min()):.4g})")
    if intensities:
        diff = np.sqrt(diff)
    pos = _array(positions, "positions").astype(np.float64) if positions is not None else None
    if pos is None or pos.ndim != 2 or pos.shape != (n, 2):
        got = None if pos is None else pos.shape
        extra = " (it looks transposed: pass positions.T)" if pos is not None and pos.shape == (2, n) else ""
        raise DataError(f"positions: expected shape ({n}, 2), the scan centre (x, y) in object pixels of each of "
                        f"the {n} patterns, got {got}{extra}")
    if not np.all(np.isfinite(pos)):
        raise DataError("positions: contains NaN or infinite values")
    pr = _array(probe, "probe")
    if pr.shape != (h, h):
        raise DataError(f"probe: expected shape ({h}, {h}) (complex, the patterns' N x N), got {pr.shape}")
    truth = None
    if ground_truth is not None:
        truth = _array(ground_truth, "ground_truth")
        if truth.ndim != 2 or min(truth.shape) < h:
            raise DataError(f"ground_truth: expected a complex 2-D object of shape (H, W) with H, W >= N = {h}, "
                            f"got {truth.shape}")
    metadata: dict[str, Any] = {"source": "arrays"}
    if pixel_size_m is not None:
        if not (isinstance(pixel_size_m, (int, float)) and pixel_size_m > 0):
            raise ConfigError(f"pixel_size_m: expected a positive number of metres, got {pixel_size_m!r}")
        metadata["pixel_size_m"] = float(pixel_size_m)
    return Dataset(diffraction=diff, xcoords=pos[:, 0], ycoords=pos[:, 1], probe=pr, object=truth,
                   metadata=metadata)


@contextlib.contextmanager
def _framework_chatter(verbose: bool) -> Iterator[None]:
    """Hold the frameworks' INFO lines (Lightning tips, GPU/TPU lines) back for the block unless ``verbose``.

    The loggers of :data:`ptycho_core.console.FRAMEWORK_LOGGERS` are set to WARNING and restored
    afterwards; warnings and errors still show. ``TF_CPP_MIN_LOG_LEVEL`` defaults to 3 (set before
    TensorFlow is first imported; an explicit setting wins), as on the command line.
    """
    if verbose:
        yield
        return
    from ptycho_core.console import FRAMEWORK_LOGGERS, TF_QUIET_LOG_LEVEL

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(TF_QUIET_LOG_LEVEL))  # TensorFlow's C++ notices (oneDNN)
    loggers = [logging.getLogger(name) for name in FRAMEWORK_LOGGERS]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)


def _split_overrides(overrides: Mapping[str, Any], classes: tuple[type, ...], what: str) -> list[dict[str, Any]]:
    """``overrides`` split by the class whose field each names; unknown or reserved names are errors."""
    parts: list[dict[str, Any]] = [{} for _ in classes]
    for key, value in overrides.items():
        for part, cls in zip(parts, classes):
            if key in {f.name for f in attrs.fields(cls)} and key not in _RESERVED:
                part[key] = value
                break
        else:
            valid = sorted({f.name for cls in classes for f in attrs.fields(cls)} - _RESERVED - {"N"})
            hint = " (N comes from the patterns)" if key == "N" else ""
            raise ConfigError(f"{what}: unknown setting {key!r}{hint}; expected one of {', '.join(valid)}")
    return parts


def _evolve(cls: type, base: Any, fields: dict[str, Any], what: str) -> Any:
    try:
        return attrs.evolve(base, **fields) if base is not None else cls(**fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc


def train(diffraction: Any, positions: Any, probe: Any, *, nepochs: int | None = None, backend: str | None = None,
          intensities: bool = False, output_dir: str | os.PathLike | None = None, overwrite: bool = False,
          progress: bool = True, verbose: bool = False, config: TrainingConfig | None = None,
          **overrides: Any) -> TrainResult:
    """Train a model on arrays; write nothing unless ``output_dir`` is given.

    Parameters
    ----------
    diffraction, positions, probe
        See the module docstring: ``(n, N, N)`` amplitudes (counts with ``intensities=True``),
        ``(n, 2)`` positions ``(x, y)`` in object pixels, ``(N, N)`` complex probe.
    nepochs : int, optional
        Epochs (default: the config's, 40).
    backend : str, optional
        ``'pytorch'``, ``'tensorflow'``, ... (default: ``$PTYCHO_BACKEND`` or ``'pytorch'``).
    output_dir : path, optional
        Without it, training runs in a temporary directory (checkpoints, logs) that is removed
        afterwards, so nothing is left behind. With it: checkpoints, logs and the model bundle
        ``output_dir/model`` (refused if one exists, unless ``overwrite``), as ``ptycho train``.
    progress : bool
        Show the progress bar (on stderr, when it is a terminal; ``False`` for none).
    verbose : bool
        Also show the framework's INFO lines (Lightning's GPU/TPU lines and tips).
    config : TrainingConfig, optional
        Base settings; the keywords override them. ``config.model.N`` is replaced by the patterns' N.
    **overrides
        Fields of :class:`~ptycho_core.config.TrainingConfig` or :class:`~ptycho_core.config.ModelConfig`.

    Returns
    -------
    TrainResult
        ``.model`` (pass it, or the result itself, to :func:`reconstruct`), ``.history`` (per
        epoch: ``loss``, ``deviance``, ...), ``.epochs``; ``.checkpoint_dir`` is None without
        ``output_dir``.

    >>> result = train(diffraction, positions, probe, nepochs=2, backend="pytorch",
    ...                n_filters_scale=1, progress=False)                              # doctest: +SKIP
    >>> result.history["deviance"][-1] < result.history["deviance"][0]                 # doctest: +SKIP
    True
    """
    from ptycho import workflow
    from ptycho_core import bundle

    dataset = as_dataset(diffraction, positions, probe, intensities=intensities)
    train_fields, model_fields = _split_overrides(overrides, (TrainingConfig, ModelConfig), "train")
    base_model = config.model if config is not None else None
    model_cfg = _evolve(ModelConfig, base_model, {**model_fields, "N": dataset.N}, "train")
    fields: dict[str, Any] = {**train_fields, "model": model_cfg, "progress": progress, "train_data_file": None,
                              "test_data_file": None}
    if nepochs is not None:
        fields["nepochs"] = nepochs
    if backend is not None:
        fields["backend"] = backend
    if output_dir is None:
        with tempfile.TemporaryDirectory(prefix="ptycho-train-") as tmp, _framework_chatter(verbose):
            cfg = _evolve(TrainingConfig, config, {**fields, "output_dir": Path(tmp)}, "train")
            result = workflow.train(cfg, dataset=dataset)
        return attrs.evolve(result, checkpoint_dir=None)
    out = Path(output_dir)
    cfg = _evolve(TrainingConfig, config, {**fields, "output_dir": out}, "train")
    target = out / workflow.BUNDLE_NAME
    workflow.check_no_result([target], overwrite)
    record = workflow.start_provenance(cfg, command=["ptycho.train(...)"])
    with _framework_chatter(verbose):
        result = workflow.train(cfg, dataset=dataset, overwrite=overwrite)
    if workflow.is_primary_process():
        from ptycho_core import provenance

        bundle.save_bundle(result.model, target, training_config=result.model.training_config or cfg,
                           overwrite=overwrite, provenance=provenance.finish(record))
    return result


def _model_handle(model: Any, backend: str | None) -> ModelHandle:
    """A loaded model from a bundle path (or any string the CLI's ``--model-path`` takes), a handle or a TrainResult."""
    from ptycho import workflow
    from ptycho_core.contracts import ModelHandle, TrainResult

    if isinstance(model, TrainResult):
        model = model.model
    if isinstance(model, ModelHandle):
        if backend is not None and backend != model.backend:
            raise ConfigError(f"backend: the model is a {model.backend!r} model, not {backend!r} (convert it with "
                              "`ptycho convert`); leave backend unset")
        return model
    if isinstance(model, (str, os.PathLike)):
        if backend is None and Path(model).exists():  # as `ptycho infer`: the bundle's own backend
            from ptycho_core import bundle

            backend = bundle.read_manifest(model).get("backend")
        fields = {"model_path": model} if backend is None else {"model_path": model, "backend": backend}
        return workflow.load_model(InferenceConfig(**fields))  # the loader of `ptycho infer --model-path`
    raise ConfigError(f"model: expected a model bundle path, a loaded model (ModelHandle) or the TrainResult of "
                      f"ptycho.train, got {type(model).__name__}")


def reconstruct(diffraction: Any, positions: Any, probe: Any, *, model: Any, refine: int = 0,
                intensities: bool = False, ground_truth: Any = None, pixel_size_m: float | None = None,
                output_dir: str | os.PathLike | None = None, overwrite: bool = False, progress: bool = True,
                verbose: bool = False, backend: str | None = None, **overrides: Any) -> Reconstruction:
    """Reconstruct the object of a scan given as arrays with a trained model; write nothing unless ``output_dir``.

    Parameters
    ----------
    diffraction, positions, probe
        See the module docstring: ``(n, N, N)`` amplitudes (counts with ``intensities=True``),
        ``(n, 2)`` positions ``(x, y)`` in object pixels, ``(N, N)`` complex probe.
    model : path, ModelHandle or TrainResult
        A model bundle directory or ``.zip`` (loaded as ``ptycho infer --model-path`` loads it),
        a loaded model, or what :func:`train` returned.
    refine : int
        Passes of iterative refinement of the network's output against the patterns (physics.md s8).
    ground_truth : complex array (H, W), optional
        The true object: the result is stitched on its grid and ``metadata.metrics`` holds the
        scores (MAE, PSNR, SSIM, FRC), as ``metrics.json``.
    pixel_size_m : float, optional
        Object pixel size, for a metre axis on the figures.
    output_dir : path, optional
        Write reconstruction.npz, amplitude.png, phase.png, summary.json (and metrics.json,
        comparison.png with ``ground_truth``) there; an earlier result is refused unless ``overwrite``.
    progress : bool
        Show the refinement's progress bar (on stderr, when it is a terminal; ``False`` for none).
    verbose : bool
        Also show the framework's INFO lines.
    backend : str, optional
        Must match the model's (default: the bundle's own).
    **overrides
        Fields of :class:`~ptycho_core.config.InferenceConfig` (``batch_size``, ``stitch_crop``, ...).

    Returns
    -------
    Reconstruction
        ``.object`` (complex), ``.amplitude``, ``.phase``, ``.origin`` (x, y of pixel [0, 0]) and
        ``.metadata`` (timings, ``refine``, ``metrics``, ``paths``).

    >>> rec = reconstruct(diffraction, positions, probe, model="run/model", refine=10,
    ...                   progress=False)                                              # doctest: +SKIP
    >>> rec.phase.shape == rec.object.shape                                             # doctest: +SKIP
    True
    """
    from ptycho import workflow

    dataset = as_dataset(diffraction, positions, probe, intensities=intensities, ground_truth=ground_truth,
                         pixel_size_m=pixel_size_m)
    (fields,) = _split_overrides(overrides, (InferenceConfig,), "reconstruct")
    if isinstance(refine, bool) or not isinstance(refine, (int, np.integer)) or refine < 0:
        raise ConfigError(f"refine: expected a number of passes >= 0, got {refine!r}")
    with _framework_chatter(verbose):
        handle = _model_handle(model, backend)
    fields.update(model=handle.model_config, backend=handle.backend, refine_iterations=int(refine), progress=progress)
    if output_dir is not None:
        fields["output_dir"] = Path(output_dir)
    cfg = _evolve(InferenceConfig, None, fields, "reconstruct")
    if handle.model_config.N != dataset.N:
        raise DataError(f"diffraction: the model takes patterns of N = {handle.model_config.N}, got N = {dataset.N}")
    with _framework_chatter(verbose):
        rec = workflow.infer(cfg, model=handle, dataset=dataset, write=output_dir is not None,
                             overwrite=overwrite, command=["ptycho.reconstruct(...)"])
    if output_dir is None:
        workflow.score(rec, dataset)  # written outputs are scored already
    return rec
