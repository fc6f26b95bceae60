"""Data contracts: the only objects (besides NumPy arrays) that cross the plugin boundary.

Shapes and dtypes follow physics.md section 2 and docs/conventions.md. Arrays are
converted to the contract dtype on construction (float64 -> float32, complex128 ->
complex64); anything else that does not fit raises :class:`~ptycho_core.errors.DataError`
naming the field.
"""

from __future__ import annotations

import abc
import copy
import numbers
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np

from ptycho_core.config import ALLOWED_N, ModelConfig
from ptycho_core.errors import ConfigError, DataError

_ACCEPTED_KINDS = {"f": "fiub", "c": "cfiub", "i": "iu"}


def _as(dtype: Any, *, name: str, ndim: int | None = None) -> Any:
    """attrs converter: to an array of ``dtype`` refusing object/str arrays, lossy kinds and wrong ndim."""
    kinds = _ACCEPTED_KINDS[np.dtype(dtype).kind]

    def convert(value: Any) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{name}: cannot be read as an array ({exc})") from None
        if arr.dtype.kind not in kinds:
            raise DataError(f"{name}: expected a numeric array of dtype {np.dtype(dtype).name}, got dtype {arr.dtype}")
        if ndim is not None and arr.ndim != ndim:
            raise DataError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
        return np.ascontiguousarray(arr, dtype=dtype)

    return convert


def _optional(conv: Any) -> Any:
    return lambda v: None if v is None else conv(v)


class LazyArray(abc.ABC):
    """A read-on-demand array indexed along its first axis (groups), e.g. ``GroupedData.X`` of a large dataset.

    It has ``shape``, ``dtype`` and ``ndim`` like a NumPy array; ``lazy[key]`` with an integer,
    a slice, an integer array or a boolean mask over the first axis reads those rows and returns
    a NumPy array. :meth:`subset` selects rows without reading anything. ``max_fetch`` (None:
    no limit) caps the rows one read may return, so that code that would materialise the whole
    array fails loudly (a :class:`DataError`) instead of exhausting memory; ``np.asarray(lazy)``
    reads everything and is subject to the same cap. Subclasses implement :meth:`fetch`.

    Parameters
    ----------
    shape : tuple of int
        Shape of the full array (rows first).
    dtype : numpy dtype
        dtype of what :meth:`fetch` returns.
    name : str
        Field name used in error messages.
    max_fetch : int, optional
        Largest number of rows a single read may return.
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, *, name: str = "X", max_fetch: int | None = None):
        self._base_shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.name = name
        self.max_fetch = max_fetch
        self._rows: np.ndarray | None = None  # selection into the underlying rows (None: all, in order)

    @abc.abstractmethod
    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """Read the underlying rows ``rows`` (int64, any order, repeats allowed): shape ``(len(rows), *shape[1:])``."""

    @property
    def shape(self) -> tuple[int, ...]:
        n = self._base_shape[0] if self._rows is None else len(self._rows)
        return (n, *self._base_shape[1:])

    @property
    def ndim(self) -> int:
        return len(self._base_shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} shape={self.shape} dtype={self.dtype} max_fetch={self.max_fetch}>"

    def _positions(self, key: Any) -> tuple[np.ndarray, bool]:
        """Row positions (int64) selected by ``key`` and whether ``key`` was a single integer."""
        n = len(self)
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            k = int(key)
            if not -n <= k < n:
                raise DataError(f"{self.name}: index {k} is out of range for {n} rows")
            return np.array([k % n], dtype=np.int64), True
        if isinstance(key, slice):
            return np.arange(n, dtype=np.int64)[key], False
        if isinstance(key, tuple):
            raise DataError(f"{self.name}: got the multi-axis key {key!r}; a lazy array is indexed along its "
                            "first axis only (read the rows, then index the NumPy array)")
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise DataError(f"{self.name}: boolean mask of shape {idx.shape} does not fit {n} rows")
            return np.flatnonzero(idx).astype(np.int64), False
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DataError(f"{self.name}: expected an integer, a slice, or a 1-D integer/boolean array of rows, "
                            f"got {idx.dtype} {idx.shape} (a lazy array is indexed along its first axis only)")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise DataError(f"{self.name}: row indices {idx.min()}..{idx.max()} are out of range for {n} rows")
        return idx % n if n else idx, False

    def _underlying(self, positions: np.ndarray) -> np.ndarray:
        return positions if self._rows is None else self._rows[positions]

    def __getitem__(self, key: Any) -> np.ndarray:
        positions, scalar = self._positions(key)
        if self.max_fetch is not None and len(positions) > self.max_fetch:
            raise DataError(
                f"{self.name}: asked for {len(positions)} rows at once, but this lazy array reads at most "
                f"{self.max_fetch} rows per read (max_fetch); read it in batches (iter_batches)"
            )
        rows = self._underlying(positions)
        out = np.asarray(self.fetch(rows))
        expected = (len(rows), *self._base_shape[1:])
        if out.shape != expected or out.dtype != self.dtype:
            raise DataError(f"{self.name}: the lazy source returned {out.dtype} {out.shape}, "
                            f"expected {self.dtype} {expected}")
        return out[0] if scalar else out

    def subset(self, key: Any) -> LazyArray:
        """The rows selected by ``key`` as a new lazy array (nothing is read)."""
        positions, _ = self._positions(key)
        view = copy.copy(self)
        view._rows = self._underlying(positions)
        return view

    def iter_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Consecutive batches of at most ``batch_size`` rows, in order."""
        if int(batch_size) < 1:
            raise DataError(f"batch_size: expected a positive integer, got {batch_size}")
        for start in range(0, len(self), int(batch_size)):
            yield self[start:start + int(batch_size)]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError(f"{self.name}: a lazy array cannot be viewed without a copy")
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


def _array_or_lazy(dtype: Any, *, name: str, ndim: int) -> Any:
    """attrs converter: a :class:`LazyArray` of the right dtype and ndim passes as is, anything else via ``_as``."""
    conv = _as(dtype, name=name, ndim=ndim)

    def convert(value: Any) -> Any:
        if isinstance(value, LazyArray):
            if value.ndim != ndim or value.dtype != np.dtype(dtype):
                raise DataError(f"{name}: expected a lazy array of {ndim} dimensions and dtype {np.dtype(dtype).name}, "
                                f"got {value.dtype} with shape {value.shape}")
            return value
        return conv(value)

    return convert


def _check_finite(name: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{name}: contains {bad} NaN or infinite values")


@attrs.frozen(kw_only=True, eq=False)
class Dataset:
    """A ptychography scan: amplitudes, scan positions and a probe (DATA-001).

    ``diffraction`` holds measured *amplitudes* (sqrt of counts), zero frequency centred,
    shape (n, N, N) float32; ``xcoords``/``ycoords`` are scan centres in object pixels.
    """

    diffraction: np.ndarray = attrs.field(converter=_as(np.float32, name="diffraction", ndim=3))
    xcoords: np.ndarray = attrs.field(converter=_as(np.float64, name="xcoords", ndim=1))
    ycoords: np.ndarray = attrs.field(converter=_as(np.float64, name="ycoords", ndim=1))
    probe: np.ndarray = attrs.field(converter=_as(np.complex64, name="probeGuess", ndim=2))
    object: np.ndarray | None = attrs.field(
        default=None, converter=_optional(_as(np.complex64, name="objectGuess", ndim=2))
    )
    scan_index: np.ndarray | None = attrs.field(
        default=None, converter=_optional(_as(np.int64, name="scan_index", ndim=1))
    )
    xcoords_start: np.ndarray | None = attrs.field(
        default=None, converter=_optional(_as(np.float64, name="xcoords_start", ndim=1))
    )
    ycoords_start: np.ndarray | None = attrs.field(
        default=None, converter=_optional(_as(np.float64, name="ycoords_start", ndim=1))
    )
    metadata: dict = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        n, h, w = self.diffraction.shape
        if n == 0:
            raise DataError("diffraction: expected at least one pattern, got shape (0, ...)")
        if h != w:
            raise DataError(f"diffraction: patterns must be square, got {h} x {w}")
        if h not in ALLOWED_N:
            raise DataError(f"diffraction: pattern side N must be one of {ALLOWED_N}, got {h}")
        _check_finite("diffraction", self.diffraction)
        if np.any(self.diffraction < 0):
            raise DataError("diffraction: amplitudes must be >= 0 (negative values found)")
        for key in ("xcoords", "ycoords", "scan_index", "xcoords_start", "ycoords_start"):
            arr = getattr(self, key)
            if arr is not None and arr.shape[0] != n:
                raise DataError(f"{key}: expected length {n} (number of patterns), got {arr.shape[0]}")
        _check_finite("xcoords", self.xcoords)
        _check_finite("ycoords", self.ycoords)
        if self.probe.shape != (h, h):
            raise DataError(f"probeGuess: expected shape ({h}, {h}) to match the patterns, got {self.probe.shape}")
        _check_finite("probeGuess", self.probe)
        if self.object is not None:
            _check_finite("objectGuess", self.object)
            if self.object.size == 0:
                raise DataError("objectGuess: expected a non-empty 2-D array")
        if self.scan_index is None:
            object.__setattr__(self, "scan_index", np.zeros(n, dtype=np.int64))
        if self.xcoords_start is None:
            object.__setattr__(self, "xcoords_start", self.xcoords.copy())
        if self.ycoords_start is None:
            object.__setattr__(self, "ycoords_start", self.ycoords.copy())

    @property
    def n(self) -> int:
        """Number of patterns."""
        return int(self.diffraction.shape[0])

    @property
    def N(self) -> int:
        """Pattern side in pixels."""
        return int(self.diffraction.shape[1])

    @property
    def positions(self) -> np.ndarray:
        """Scan centres as an (n, 2) array of (x, y)."""
        return np.stack([self.xcoords, self.ycoords], axis=1)

    def subset(self, indices: Any) -> Dataset:
        """A new dataset holding only the patterns at ``indices``."""
        idx = np.asarray(indices)
        return attrs.evolve(
            self,
            diffraction=self.diffraction[idx],
            xcoords=self.xcoords[idx],
            ycoords=self.ycoords[idx],
            scan_index=self.scan_index[idx],
            xcoords_start=self.xcoords_start[idx],
            ycoords_start=self.ycoords_start[idx],
        )


@attrs.frozen(kw_only=True, eq=False)
class GroupedData:
    """Network-ready groups of C = gridsize**2 neighbouring patterns.

    - ``X``: (B, N, N, C) float32 amplitudes already multiplied by ``norm_factor``
      (dataset normalisation, physics.md s3).
    - ``offsets``: (B, C, 2) float64 relative offsets (x, y) = position - group centroid.
    - ``centroids``: (B, 2) float64 group centroids (x, y) in object pixels.
    - ``indices``: (B, C) int64 pattern indices into the source dataset.
    - ``probe``: (N, N) complex64 probe (not yet normalised by probe_scale).
    - ``Y``: optional (B, N, N, C) complex64 ground-truth object patches.
    - ``dataset_index``: optional (B,) int64, the dataset of each group when several datasets
      were grouped (each on its own) and concatenated; ``indices`` then count patterns through
      the datasets one after the other, and ``norm_factors`` holds each dataset's factor
      (``norm_factor`` is that of the first; :attr:`group_norm_factors` gives each group's).

    For data larger than memory ``X`` (and ``Y``) may be a :class:`LazyArray` that reads the
    groups batch by batch (``is_lazy``); everything else stays in memory. Backends then fetch
    ``X[rows]`` per batch and never ``np.asarray(X)`` as a whole.
    """

    X: np.ndarray | LazyArray = attrs.field(converter=_array_or_lazy(np.float32, name="X", ndim=4))
    offsets: np.ndarray = attrs.field(converter=_as(np.float64, name="offsets", ndim=3))
    centroids: np.ndarray = attrs.field(converter=_as(np.float64, name="centroids", ndim=2))
    indices: np.ndarray = attrs.field(converter=_as(np.int64, name="indices", ndim=2))
    probe: np.ndarray = attrs.field(converter=_as(np.complex64, name="probe", ndim=2))
    norm_factor: float = attrs.field(default=1.0, converter=float)
    Y: np.ndarray | LazyArray | None = attrs.field(
        default=None, converter=_optional(_array_or_lazy(np.complex64, name="Y", ndim=4))
    )
    object_shape: tuple[int, int] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else (int(v[0]), int(v[1]))
    )
    dataset_index: np.ndarray | None = attrs.field(
        default=None, converter=_optional(_as(np.int64, name="dataset_index", ndim=1))
    )
    norm_factors: tuple[float, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(float(f) for f in v)
    )

    def __attrs_post_init__(self) -> None:
        b, n1, n2, c = self.X.shape
        if self.dataset_index is not None:
            if self.dataset_index.shape != (b,):
                raise DataError(f"dataset_index: expected shape {(b,)}, got {self.dataset_index.shape}")
            n_sets = 1 if self.norm_factors is None else len(self.norm_factors)
            if b and (self.dataset_index.min() < 0 or self.dataset_index.max() >= n_sets):
                raise DataError(f"dataset_index: expected values in 0..{n_sets - 1} (one per entry of norm_factors)")
        if self.norm_factors is not None and not all(np.isfinite(f) and f > 0 for f in self.norm_factors):
            raise DataError(f"norm_factors: expected finite positive numbers, got {self.norm_factors}")
        if n1 != n2:
            raise DataError(f"X: patterns must be square, got {n1} x {n2}")
        if not isinstance(self.X, LazyArray):  # a lazy source checks every batch it reads
            _check_finite("X", self.X)
        if self.offsets.shape != (b, c, 2):
            raise DataError(f"offsets: expected shape {(b, c, 2)}, got {self.offsets.shape}")
        if self.centroids.shape != (b, 2):
            raise DataError(f"centroids: expected shape {(b, 2)}, got {self.centroids.shape}")
        if self.indices.shape != (b, c):
            raise DataError(f"indices: expected shape {(b, c)}, got {self.indices.shape}")
        if self.probe.shape != (n1, n1):
            raise DataError(f"probe: expected shape {(n1, n1)}, got {self.probe.shape}")
        if self.Y is not None and self.Y.shape != self.X.shape:
            raise DataError(f"Y: expected shape {self.X.shape} like X, got {self.Y.shape}")
        if not (np.isfinite(self.norm_factor) and self.norm_factor > 0):
            raise DataError(f"norm_factor: expected a finite positive number, got {self.norm_factor}")

    @property
    def is_lazy(self) -> bool:
        """True when ``X`` is a :class:`LazyArray` (read batch by batch)."""
        return isinstance(self.X, LazyArray)

    @property
    def n_groups(self) -> int:
        return int(self.X.shape[0])

    @property
    def N(self) -> int:
        return int(self.X.shape[1])

    @property
    def channels(self) -> int:
        return int(self.X.shape[3])

    def check_fits(self, model_config: ModelConfig) -> None:
        """Raise :class:`~ptycho_core.errors.ConfigError` if the groups do not fit the model of ``model_config``:
        pattern size ``N`` and ``gridsize**2`` channels.

        Every backend calls it before training, inference and the forward pass.
        """
        if self.N != model_config.N or self.channels != model_config.channels:
            raise ConfigError(
                f"data: groups of {self.channels} patterns of {self.N} x {self.N} do not fit the model "
                f"(ModelConfig.N = {model_config.N}, gridsize = {model_config.gridsize} -> "
                f"{model_config.channels} channels); regroup the data or change the model config"
            )

    @property
    def positions(self) -> np.ndarray:
        """Global (x, y) position of every pattern of every group, shape (B, C, 2)."""
        return self.centroids[:, None, :] + self.offsets

    @property
    def group_norm_factors(self) -> np.ndarray:
        """(B,) float64: the normalisation factor each group's amplitudes were multiplied by."""
        if self.dataset_index is None or self.norm_factors is None:
            return np.full(self.n_groups, self.norm_factor)
        return np.asarray(self.norm_factors, dtype=np.float64)[self.dataset_index]

    def batch(self, sl: slice | np.ndarray) -> GroupedData:
        """The groups selected by ``sl`` (a slice or index array); lazy arrays stay lazy (nothing is read)."""

        def pick(arr: Any) -> Any:
            if arr is None:
                return None
            return arr.subset(sl) if isinstance(arr, LazyArray) else arr[sl]

        return attrs.evolve(
            self,
            X=pick(self.X),
            offsets=self.offsets[sl],
            centroids=self.centroids[sl],
            indices=self.indices[sl],
            Y=pick(self.Y),
            dataset_index=None if self.dataset_index is None else self.dataset_index[sl],
        )


@attrs.frozen(kw_only=True, eq=False)
class ModelHandle:
    """A model owned by a backend. ``native`` is the framework object; only its backend touches it."""

    backend: str
    model_config: Any
    training_config: Any = None
    native: Any = attrs.field(default=None, repr=False)
    metadata: dict = attrs.field(factory=dict)


@attrs.frozen(kw_only=True, eq=False)
class TrainResult:
    """Result of training: the trained model and per-epoch history (``history['loss']`` at least)."""

    model: ModelHandle
    history: dict[str, list[float]]
    epochs: int
    timings: dict[str, float] = attrs.field(factory=dict)
    checkpoint_dir: Any = None

    def __attrs_post_init__(self) -> None:
        if "loss" not in self.history:
            raise DataError("TrainResult.history: expected a 'loss' entry with one value per epoch")


@attrs.frozen(kw_only=True, eq=False)
class InferenceResult:
    """Predicted object patches, flattened over groups and channels.

    ``patches``: (P, N, N) complex64; ``positions``: (P, 2) float64 global (x, y) centre of each
    patch in object pixels (centroid + relative offset); ``grouped``: optional (B, N, N, C)
    complex64 with the same values in group layout.
    """

    patches: np.ndarray = attrs.field(converter=_as(np.complex64, name="patches", ndim=3))
    positions: np.ndarray = attrs.field(converter=_as(np.float64, name="positions", ndim=2))
    metadata: dict = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.positions.shape != (self.patches.shape[0], 2):
            raise DataError(
                f"positions: expected shape {(self.patches.shape[0], 2)} (one (x, y) per patch), "
                f"got {self.positions.shape}"
            )


@attrs.frozen(kw_only=True, eq=False)
class ForwardOutput:
    """One forward pass through model + physics for a batch (used by parity tests).

    ``patches``: (B, N, N, C) complex64 object patches; ``amplitude``: (B, N, N, C) float32
    predicted diffraction amplitude in photon units (already multiplied by the scale s);
    ``loss``: total loss value as float.
    """

    patches: np.ndarray = attrs.field(converter=_as(np.complex64, name="patches", ndim=4))
    amplitude: np.ndarray = attrs.field(converter=_as(np.float32, name="amplitude", ndim=4))
    loss: float = attrs.field(converter=float)


def _float_dict(value: Any) -> dict[str, float]:
    return {str(k): float(v) for k, v in dict(value).items()}


def _history(value: Any) -> dict[str, list[float]] | None:
    return None if value is None else {str(k): [float(v) for v in vals] for k, vals in dict(value).items()}


@attrs.frozen(kw_only=True, eq=False)
class Refinement:
    """What the refinement after the network did (``ptycho.workflow.refine``).

    ``misfit`` is the relative amplitude misfit before the first pass and after each pass;
    ``scale`` the real factor fitted to the network's object before the passes;
    ``network_object`` the stitched network output that the refinement started from.
    """

    iterations: int = attrs.field(converter=int, validator=attrs.validators.ge(1))
    misfit: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(x) for x in v))
    scale: float = attrs.field(converter=float)
    seconds: float = attrs.field(converter=float, validator=attrs.validators.ge(0.0))
    network_object: np.ndarray = attrs.field(converter=_as(np.complex64, name="network_object", ndim=2))

    def summary(self) -> dict[str, Any]:
        """The JSON-able part (``summary.json``'s ``refine``): all but ``network_object``."""
        return {"iterations": self.iterations, "misfit": list(self.misfit), "scale": self.scale,
                "seconds": self.seconds}


@attrs.define(kw_only=True, eq=False)
class ReconstructionRecord:
    """How a reconstruction was made, filled in by the workflow as it goes (``Reconstruction.metadata``).

    ``backend``: the backend id (always set). ``timings``: seconds per step (``train_s``,
    ``infer_s``, ``stitch_s``, ``refine_s``, ``misfit_s``). ``history``: the training history per epoch
    (``ptycho_core.training_log.HISTORY_KEYS``) when the model was trained in this run;
    ``epochs``: the epochs trained. ``n_patches``: the patches predicted; ``streamed``: the data
    was read and stitched chunk by chunk. ``paths``: the files written (``bundle``,
    ``reconstruction``, ``amplitude_png``, ...). ``refine``: the :class:`Refinement`, if any.
    ``metrics``: the metrics against a ground truth (``ptycho_data.metrics``), if there was one.
    ``network_misfit``: how well the network's stitched object explains the measured patterns (the
    relative amplitude misfit of physics.md s8, no ground truth needed), and ``flat_misfit`` the same
    for a flat object on the same canvas (the reference that explains no structure), when computed.
    """

    backend: str = attrs.field(validator=[attrs.validators.instance_of(str), attrs.validators.min_len(1)])
    timings: dict[str, float] = attrs.field(factory=dict, converter=_float_dict)
    history: dict[str, list[float]] | None = attrs.field(default=None, converter=_history)
    epochs: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    n_patches: int | None = attrs.field(default=None, converter=attrs.converters.optional(int))
    streamed: bool = False
    paths: dict[str, str] = attrs.field(factory=dict, converter=lambda v: {str(k): str(p) for k, p in dict(v).items()})
    refine: Refinement | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(Refinement)))
    metrics: dict[str, Any] | None = None
    network_misfit: float | None = attrs.field(default=None, converter=attrs.converters.optional(float))
    flat_misfit: float | None = attrs.field(default=None, converter=attrs.converters.optional(float))

    def summary(self) -> dict[str, Any]:
        """The JSON-able fields ``summary.json`` holds at its top level."""
        out: dict[str, Any] = {"backend": self.backend, "timings": dict(self.timings), "paths": dict(self.paths)}
        if self.epochs is not None:
            out["epochs"] = self.epochs
        if self.n_patches is not None:
            out["n_patches"] = self.n_patches
        for key in ("network_misfit", "flat_misfit"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def _record(value: Any) -> ReconstructionRecord:
    """``Reconstruction.metadata``: a :class:`ReconstructionRecord`, or a dict of its fields."""
    if isinstance(value, ReconstructionRecord):
        return value
    if not isinstance(value, dict):
        raise DataError(f"Reconstruction.metadata: expected a ReconstructionRecord or a dict of its fields, "
                        f"got {type(value).__name__}")
    names = [f.name for f in attrs.fields(ReconstructionRecord)]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise DataError(f"Reconstruction.metadata: unknown entries {unknown}; expected some of {names}")
    if "backend" not in value:
        raise DataError("Reconstruction.metadata: expected a 'backend' entry")
    try:
        return ReconstructionRecord(**value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"Reconstruction.metadata: {exc}") from exc


@attrs.frozen(kw_only=True, eq=False)
class Reconstruction:
    """A stitched object and the :class:`ReconstructionRecord` of how it was made (``metadata``).

    ``origin`` is the (x, y) object-pixel coordinate of canvas pixel [0, 0]. ``metadata`` may be
    given as a dict of the record's fields; ``backend`` is required.
    """

    object: np.ndarray = attrs.field(converter=_as(np.complex64, name="object", ndim=2))
    origin: tuple[float, float] = attrs.field(default=(0.0, 0.0), converter=lambda v: (float(v[0]), float(v[1])))
    metadata: ReconstructionRecord = attrs.field(converter=_record)

    @property
    def amplitude(self) -> np.ndarray:
        return np.abs(self.object).astype(np.float32)

    @property
    def phase(self) -> np.ndarray:
        return np.angle(self.object).astype(np.float32)


@attrs.frozen(kw_only=True)
class BackendInfo:
    """What a backend says about itself from ``ptycho_register_backend``."""

    id: str
    distribution: str
    version: str
    framework: str
    framework_versions: dict[str, str] = attrs.field(factory=dict)
    devices: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    weight_format: str = ""
    description: str = ""
