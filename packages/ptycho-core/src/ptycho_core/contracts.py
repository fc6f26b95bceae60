"""Data contracts: the only objects (besides NumPy arrays) that cross the plugin boundary.

Shapes and dtypes follow physics.md section 2 and docs/conventions.md. Arrays are
converted to the contract dtype on construction (float64 -> float32, complex128 ->
complex64); anything else that does not fit raises :class:`~ptycho_core.errors.DataError`
naming the field.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from ptycho_core.errors import DataError

ALLOWED_N = (64, 128, 256)


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
    """

    X: np.ndarray = attrs.field(converter=_as(np.float32, name="X", ndim=4))
    offsets: np.ndarray = attrs.field(converter=_as(np.float64, name="offsets", ndim=3))
    centroids: np.ndarray = attrs.field(converter=_as(np.float64, name="centroids", ndim=2))
    indices: np.ndarray = attrs.field(converter=_as(np.int64, name="indices", ndim=2))
    probe: np.ndarray = attrs.field(converter=_as(np.complex64, name="probe", ndim=2))
    norm_factor: float = attrs.field(default=1.0, converter=float)
    Y: np.ndarray | None = attrs.field(default=None, converter=_optional(_as(np.complex64, name="Y", ndim=4)))
    object_shape: tuple[int, int] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else (int(v[0]), int(v[1]))
    )

    def __attrs_post_init__(self) -> None:
        b, n1, n2, c = self.X.shape
        if n1 != n2:
            raise DataError(f"X: patterns must be square, got {n1} x {n2}")
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
    def n_groups(self) -> int:
        return int(self.X.shape[0])

    @property
    def N(self) -> int:
        return int(self.X.shape[1])

    @property
    def channels(self) -> int:
        return int(self.X.shape[3])

    @property
    def positions(self) -> np.ndarray:
        """Global (x, y) position of every pattern of every group, shape (B, C, 2)."""
        return self.centroids[:, None, :] + self.offsets

    def batch(self, sl: slice | np.ndarray) -> GroupedData:
        """The groups selected by ``sl`` (a slice or index array)."""
        return attrs.evolve(
            self,
            X=self.X[sl],
            offsets=self.offsets[sl],
            centroids=self.centroids[sl],
            indices=self.indices[sl],
            Y=None if self.Y is None else self.Y[sl],
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


@attrs.frozen(kw_only=True, eq=False)
class Reconstruction:
    """A stitched object. ``metadata`` always contains ``'backend'``.

    ``origin`` is the (x, y) object-pixel coordinate of canvas pixel [0, 0].
    """

    object: np.ndarray = attrs.field(converter=_as(np.complex64, name="object", ndim=2))
    origin: tuple[float, float] = attrs.field(default=(0.0, 0.0), converter=lambda v: (float(v[0]), float(v[1])))
    metadata: dict = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if "backend" not in self.metadata:
            raise DataError("Reconstruction.metadata: expected a 'backend' entry")

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
