"""Configuration classes: frozen, keyword-only attrs classes with validators.

There is no global configuration: every function that needs settings takes one of
these objects. Change a value with :func:`attrs.evolve`::

    >>> from ptycho_core.config import ModelConfig, TrainingConfig
    >>> cfg = TrainingConfig(model=ModelConfig(N=64, gridsize=2), nepochs=5)
    >>> cfg.model.gridsize, cfg.nepochs
    (2, 5)

Reading and writing TOML/JSON/YAML files and PtychoPINN's legacy keys lives in
:mod:`ptycho_core.serialize`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from ptycho_core.errors import ConfigError, UnknownBackendError

ALLOWED_N = (64, 128, 256)
"""Diffraction pattern sides N the model supports (``ModelConfig.N``, the data contracts, the backends)."""
DEFAULT_GRIDSIZE = 1
"""Default ``ModelConfig.gridsize`` (one pattern per group), also the default of the grouping functions."""
AMP_ACTIVATIONS = ("sigmoid", "swish", "softplus", "relu")
STITCH_WEIGHTS = ("probe", "uniform")
DEFAULT_BACKEND = "pytorch"
DEFAULT_SEED = 42
"""Default random seed of training, inference and the neighbour grouping."""
DEFAULT_NEIGHBOR_COUNT = 8
"""Default K of the neighbour grouping (``neighbor_count``; physics.md s6): the K nearest *other*
scan positions of a seed. 8 is the 4 side and 4 diagonal neighbours on a raster, so a gridsize-2
group is the seed plus 3 of 8 ("8 choose 3" = 56 possible groups per seed) instead of always
the same 3; it still covers gridsize 3 (C - 1 = 8)."""


def _field_error(inst: Any, attribute: attrs.Attribute, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{type(inst).__name__}.{attribute.name}: expected {expected}, got {value!r}")


@attrs.frozen
class _Expect:
    """An :mod:`attrs.validators` validator whose failure is a :class:`ConfigError` saying what is ``expected``.

    The message is ``<Class>.<field>: expected <expected>, got <value>`` (what the tests and the
    CLI's users read), instead of attrs' own ``TypeError``/``ValueError``.
    ``docs/scripts/gen_config_reference.py`` reads the allowed values from ``validator``.
    """

    validator: Any
    expected: str

    def __call__(self, inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        try:
            self.validator(inst, attribute, value)
        except (TypeError, ValueError):
            raise _field_error(inst, attribute, value, self.expected) from None


_v = attrs.validators
_NOT_BOOL = _v.not_(_v.instance_of(bool), exc_types=TypeError)  # bool is an int subclass: True is no integer


def _finite(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Reject inf (NaN already fails every comparison); attrs has no validator for it."""
    if value == float("inf"):
        raise ValueError(f"{attribute.name} must be finite")


def _one_of(options: tuple) -> _Expect:
    return _Expect(_v.in_(options), "one of " + ", ".join(repr(o) for o in options))


def _int_at_least(low: int) -> _Expect:
    return _Expect(_v.and_(_v.instance_of(int), _NOT_BOOL, _v.ge(low)), f"an integer >= {low}")


def _optional_int_at_least(low: int) -> Any:
    return _v.optional(_int_at_least(low))


def _number(low: float, *, strict: bool) -> _Expect:
    bound = _v.gt(low) if strict else _v.ge(low)
    return _Expect(_v.and_(_v.instance_of((int, float)), _NOT_BOOL, bound, _finite),
                   f"a finite number {'>' if strict else '>='} {low}")


_optional = _v.optional
_boolean = _Expect(_v.instance_of(bool), "true or false")


def _optional_float(value: Any) -> Any:
    return None if value is None else _to_float(value)


def _optional_path(value: Any) -> Path | None:
    return None if value is None or value == "" else Path(value)


def _data_paths(value: Any) -> Path | tuple[Path, ...] | None:
    """``train_data_file``: not set, one path, or several (a list; a list of one is that path).

    Globs and directories of datasets are expanded when the data is loaded
    (``ptycho.workflow.data_paths``), not here: a config never touches the filesystem.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, (str, os.PathLike)) and str(v) for v in value):
            raise ConfigError(f"TrainingConfig.train_data_file: expected a path or a non-empty list of paths, "
                              f"got {value!r}")
        paths = tuple(Path(v) for v in value)
        return paths[0] if len(paths) == 1 else paths
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"TrainingConfig.train_data_file: expected a path or a list of paths, got {value!r}")
    return Path(value)


def _to_float(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


FALLBACK_NPHOTONS = 1e9
"""Photons per pattern assumed by :func:`effective_nphotons` when a training config leaves ``nphotons`` unset
and nothing measured it from the data (a backend called directly, not through :mod:`ptycho.workflow`)."""


def effective_nphotons(config: Any) -> float:
    """``config.nphotons``, or :data:`FALLBACK_NPHOTONS` (logged) when it is None or there is no config.

    :func:`ptycho.workflow.train` always sets ``nphotons`` from the data first
    (:func:`ptycho.workflow.resolve_nphotons`); this fallback is only reached by code that
    calls a backend directly with ``nphotons=None``.
    """
    value = None if config is None else config.nphotons
    if value is None:
        import logging

        logging.getLogger("ptycho_core.config").warning(
            "TrainingConfig.nphotons is None and was not measured from the data (backend called directly, not "
            "through ptycho.workflow.train); assuming %g photons per pattern", FALLBACK_NPHOTONS)
        return FALLBACK_NPHOTONS
    return float(value)


def default_backend() -> str:
    """The backend id used when none is given: ``$PTYCHO_BACKEND`` or ``'pytorch'``."""
    return os.environ.get("PTYCHO_BACKEND", "").strip() or DEFAULT_BACKEND


def _backend_id(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    from ptycho_core.registry import valid_backend_ids

    if not isinstance(value, str):
        raise _field_error(inst, attribute, value, "a backend id string")
    valid = valid_backend_ids()
    if value not in valid:
        err = UnknownBackendError(value, valid)
        raise ConfigError(f"{type(inst).__name__}.{attribute.name}: {err}") from None


@attrs.frozen(kw_only=True)
class ModelConfig:
    """Architecture and physics settings shared by training and inference (physics.md s4-5)."""

    N: int = attrs.field(default=64, validator=_one_of(ALLOWED_N))
    """Diffraction pattern side in pixels (64, 128 or 256)."""
    gridsize: int = attrs.field(default=DEFAULT_GRIDSIZE, validator=_int_at_least(1))
    """Patterns per group along one side; C = gridsize**2 channels."""
    n_filters_scale: int = attrs.field(default=2, validator=_int_at_least(1))
    """Multiplier of the convolution filter counts."""
    amp_activation: str = attrs.field(default="sigmoid", validator=_one_of(AMP_ACTIVATIONS))
    """Activation of the amplitude output."""
    object_big: bool = attrs.field(default=True, validator=_boolean)
    """Merge the C patches of a group into one object canvas (gridsize > 1)."""
    probe_big: bool = attrs.field(default=True, validator=_boolean)
    """Predict the object outside the central N/2 square with an extra branch; off at gridsize > 1 with
    object_big and the default object_window, where the masked merge zeroes it (see uses_probe_big)."""
    probe_mask: bool = attrs.field(default=False, validator=_boolean)
    """Apply a hard disk mask (radius N/4) to the probe."""
    pad_object: bool = attrs.field(default=True, validator=_boolean)
    """Zero-pad the central N/2 prediction to N (see physics.md s4)."""
    object_window: float = attrs.field(
        default=0.5, converter=_to_float,
        validator=_Expect(_v.and_(_v.instance_of(float), _v.ge(0.5), _v.le(1.0)), "a number from 0.5 to 1.0"),
    )
    """Side of the central window that the merge keeps of each patch, as a fraction of N (physics.md s5
    step 1): 0.5, the upstream N/2 window, to 1.0, the whole patch; N * object_window must be an even
    integer. Wider than 0.5 lets a gridsize > 1 model represent the object under a probe that reaches
    outside the N/2 window (physics.md s5, "Object support and the probe")."""
    probe_scale: float = attrs.field(default=4.0, converter=_to_float, validator=_number(0.0, strict=True))
    """Probe normalisation: mean(|M*P|) = 1/probe_scale."""
    gaussian_smoothing_sigma: float = attrs.field(
        default=0.0, converter=_to_float, validator=_number(0.0, strict=False)
    )
    """Gaussian smoothing of the probe amplitude (0 = off)."""

    @property
    def channels(self) -> int:
        """Number of patterns per group, ``gridsize**2``."""
        return self.gridsize * self.gridsize

    def __attrs_post_init__(self) -> None:
        side = self.object_window * self.N
        if side != int(side) or int(side) % 2:
            raise ConfigError(f"ModelConfig.object_window: expected N * object_window to be an even integer "
                              f"(the window is centred on the N x N patch), got {self.object_window!r} "
                              f"with N = {self.N} ({side:g} pixels)")
        if self.stitches_group_object and self.window_side > self.N // 2 and self.pad_object and not self.probe_big:
            raise ConfigError(f"ModelConfig.object_window: {self.object_window!r} is wider than the N/2 window, but "
                              f"with pad_object = true and probe_big = false the network predicts nothing outside "
                              f"N/2; set probe_big = true (the outer branch fills the wider window) or "
                              f"pad_object = false (one head predicts the whole patch)")

    @property
    def window_side(self) -> int:
        """Side in pixels of the central window the merge keeps of each patch: ``N * object_window``."""
        return int(self.object_window * self.N)

    @property
    def uses_probe_big(self) -> bool:
        """Whether the network builds the ``probe_big`` outer branch: ``probe_big`` and not a merged group.

        At gridsize > 1 with ``object_big`` the physics layer merges the C patches of a group
        with the numerator masked by the central N/2 window (physics.md s5 step 1), so everything
        the outer branch predicts outside that window is multiplied by zero: its parameters get
        no gradient and never train. The branch is therefore not built there (physics.md s4),
        unless ``object_window`` widens the window beyond N/2 (the branch then fills the ring
        between the N/2 square and the window). At gridsize 1, or without ``object_big`` (patches
        not merged), the outer prediction reaches the diffraction model and the branch is built
        when ``probe_big`` is true.
        Both backends and their weight export/import decide with this property.
        """
        return self.probe_big and (not self.stitches_group_object or self.window_side > self.N // 2)

    @property
    def stitches_group_object(self) -> bool:
        """Whether inference stitches one merged object per group (at its centroid) instead of C patches.

        True at gridsize > 1 with ``object_big``: the loss constrains only the merged group
        object (physics.md s5 steps 1-3), not the network's raw per-channel patches, so that
        is what inference reassembles (physics.md s6). Both backends decide with this property.
        """
        return self.channels > 1 and self.object_big


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """Everything a training run needs (physics.md s5-6)."""

    model: ModelConfig = attrs.field(factory=ModelConfig, validator=attrs.validators.instance_of(ModelConfig))
    train_data_file: Path | tuple[Path, ...] | None = attrs.field(default=None, converter=_data_paths)
    """Training data: a DATA-001 NPZ, HDF5 file or lazy dataset directory, a directory of such datasets, a glob
    pattern, or a list of these; several datasets are grouped each on its own and trained on together."""
    test_data_file: Path | None = attrs.field(default=None, converter=_optional_path)
    """DATA-001 NPZ reconstructed after training (defaults to the (first) training file)."""
    batch_size: int = attrs.field(default=16, validator=_int_at_least(1))
    """Groups per optimisation step."""
    nepochs: int = attrs.field(default=40, validator=_int_at_least(1))
    """Number of training epochs (in total, also when resuming); the most, with early_stop_patience."""
    early_stop_patience: int = attrs.field(default=0, validator=_int_at_least(0))
    """Stop after this many epochs in a row without a lower loss (Poisson deviance); 0 = run all nepochs."""
    max_train_seconds: float | None = attrs.field(
        default=None, converter=_optional_float, validator=_optional(_number(0.0, strict=True)))
    """Training time budget: stop after the first epoch that ends this many seconds or more after training started
    (a resumed run counts from its restart); None (default) = no limit."""
    learning_rate: float = attrs.field(default=1e-3, converter=_to_float, validator=_number(0.0, strict=True))
    """Adam learning rate (halved after 2 epochs without a lower loss, floor 1e-4; ptycho_core.schedule)."""
    nll_weight: float = attrs.field(default=1.0, converter=_to_float, validator=_number(0.0, strict=False))
    """Weight of the Poisson negative log-likelihood (reported as its deviance, >= 0)."""
    mae_weight: float = attrs.field(default=0.0, converter=_to_float, validator=_number(0.0, strict=False))
    """Weight of the amplitude mean absolute error."""
    realspace_weight: float = attrs.field(
        default=0.0, converter=_to_float, validator=_number(0.0, strict=False)
    )
    """Weight of the real-space loss against ground-truth patches (needs objectGuess)."""
    nphotons: float | None = attrs.field(
        default=None, converter=_optional_float, validator=_optional(_number(0.0, strict=True)),
        metadata={"help": "mean photons per pattern, setting the physics scale sqrt(nphotons)/(N/2) (default: "
                          "measured from the training data, the mean total count per pattern; a value overrides "
                          "it, with a warning when it is more than 2x off the data)"})
    """Mean photons per pattern, setting the physics scale sqrt(nphotons)/(N/2); None (default) = measured from the
    training data (mean over patterns of sum(amplitude^2)); a value overrides it, with a warning when it is more than
    2x off the data."""
    n_groups: int | None = attrs.field(default=None, validator=_optional_int_at_least(1))
    """Number of groups to train on (None = one per scan position)."""
    neighbor_count: int = attrs.field(default=DEFAULT_NEIGHBOR_COUNT, validator=_int_at_least(1))
    """K: a group is its seed plus C - 1 of the seed's K nearest other positions (K >= C - 1; gridsize > 1)."""
    seed: int = attrs.field(default=DEFAULT_SEED, validator=_int_at_least(0))
    """Seed of grouping, shuffling and weight initialisation."""
    intensity_scale_trainable: bool = attrs.field(default=True, validator=_boolean)
    """Train the physics intensity scale s (starts at sqrt(nphotons)/(N/2))."""
    probe_trainable: bool = attrs.field(default=False, validator=_boolean)
    """Train the probe (starts from the data file's probeGuess)."""
    positions_provided: bool = attrs.field(default=True, validator=_boolean)
    """Scan positions are given in the data file (PtychoPINN's positions.provided)."""
    output_dir: Path = attrs.field(default=Path("ptycho_output"), converter=Path)
    """Folder for the model bundle, checkpoints, logs, images and metrics."""
    backend: str = attrs.field(factory=default_backend, validator=_backend_id)
    """Backend id: 'pytorch' or 'tensorflow' (or an installed third-party id)."""
    accelerator: str = attrs.field(default="auto", validator=_one_of(("auto", "cpu", "gpu")))
    """Where to train: 'auto' (a GPU when the backend sees one), 'cpu' or 'gpu'."""
    devices: int = attrs.field(default=1, validator=_int_at_least(1))
    """Number of devices (or CPU processes with strategy 'ddp')."""
    strategy: str = attrs.field(default="auto", validator=_one_of(("auto", "ddp", "mirrored")))
    """Data parallelism: 'auto', 'ddp' (PyTorch Lightning) or 'mirrored' (TensorFlow)."""
    num_nodes: int = attrs.field(default=1, validator=_int_at_least(1))
    """Number of machines for multi-node DDP (PyTorch, strategy 'ddp'); devices is per node."""
    checkpoint_every: int = attrs.field(default=1, validator=_int_at_least(1))
    """Write a checkpoint every this many epochs."""
    compile: bool = attrs.field(default=False, validator=_boolean)
    """Compile the training step: torch.compile (PyTorch) or XLA jit_compile (TensorFlow); see docs/gpu.md."""
    progress: bool = attrs.field(default=True, validator=_boolean)
    """Show progress bars, on stderr and only when stderr is a terminal (off in batch logs)."""

    def __attrs_post_init__(self) -> None:
        c = self.model.channels
        if c > 1 and self.neighbor_count < c - 1:
            raise ConfigError(
                f"TrainingConfig.neighbor_count: expected an integer >= gridsize**2 - 1 = {c - 1} "
                f"(the nearest other positions the group members besides the seed are drawn from), "
                f"got {self.neighbor_count}"
            )
        if self.num_nodes > 1 and self.strategy != "ddp":
            raise ConfigError(
                f"TrainingConfig.num_nodes: {self.num_nodes} nodes need strategy 'ddp' "
                f"(Lightning multi-node data parallelism), got strategy {self.strategy!r}"
            )


@attrs.frozen(kw_only=True)
class InferenceConfig:
    """Settings to reconstruct a dataset with a trained model bundle."""

    model: ModelConfig = attrs.field(factory=ModelConfig, validator=attrs.validators.instance_of(ModelConfig))
    model_path: Path | None = attrs.field(default=None, converter=_optional_path)
    """Model bundle directory or .zip written by training, or `pretrained:NAME`: a model shipped with the ptycho
    package (`ptycho models` lists them), which every backend loads."""
    test_data_file: Path | None = attrs.field(default=None, converter=_optional_path)
    """DATA-001 NPZ to reconstruct."""
    batch_size: int = attrs.field(default=64, validator=_int_at_least(1))
    """Groups per prediction batch."""
    n_groups: int | None = attrs.field(default=None, validator=_optional_int_at_least(1))
    """Number of groups to reconstruct (None = one per scan position)."""
    groups_per_position: int = attrs.field(default=1, validator=_int_at_least(1))
    """k: predict every scan position in about k groups of different neighbours and average them in the stitch
    (gridsize > 1; k times the prediction time). 1 = one group per position."""
    neighbor_count: int = attrs.field(default=DEFAULT_NEIGHBOR_COUNT, validator=_int_at_least(1))
    """K: a group is its seed plus C - 1 of the seed's K nearest other positions (K >= C - 1; gridsize > 1)."""
    seed: int = attrs.field(default=DEFAULT_SEED, validator=_int_at_least(0))
    """Seed of the grouping."""
    stitch_crop: int = attrs.field(default=20, validator=_int_at_least(1))
    """M: side of the central square of each patch used for stitching."""
    stitch_weight: str = attrs.field(default="probe", validator=_one_of(STITCH_WEIGHTS))
    """How overlapping crops are averaged: 'probe' weights each pixel by the probe intensity |P|^2 there (floored at
    1e-3 of the peak), trusting each patch most where its patterns light it; 'uniform', equal weights (before
    2026-12-05 the only way). The stitched region is the same (physics.md s6)."""
    flip_x: bool = attrs.field(default=False, validator=_boolean)
    """Reverse the columns of every patch before stitching."""
    flip_y: bool = attrs.field(default=False, validator=_boolean)
    """Reverse the rows of every patch before stitching."""
    transpose: bool = attrs.field(default=False, validator=_boolean)
    """Swap rows and columns of every patch before stitching."""
    output_dir: Path = attrs.field(default=Path("ptycho_output"), converter=Path)
    """Folder for reconstruction.npz, images and metrics."""
    backend: str = attrs.field(factory=default_backend, validator=_backend_id)
    """Backend id; must be the backend of the model bundle."""
    accelerator: str = attrs.field(default="auto", validator=_one_of(("auto", "cpu", "gpu")))
    """Where to predict: 'auto', 'cpu' or 'gpu'."""
    refine_iterations: int = attrs.field(default=0, validator=_int_at_least(0))
    """Passes of iterative refinement after stitching (NumPy, probe fixed; physics.md s8); 0 = the network's output."""
    progress: bool = attrs.field(default=True, validator=_boolean)
    """Show progress bars, on stderr and only when stderr is a terminal (off in batch logs)."""

    def __attrs_post_init__(self) -> None:
        if self.groups_per_position > 1 and self.n_groups is not None:
            raise ConfigError(f"InferenceConfig.groups_per_position: {self.groups_per_position} predicts every scan "
                              f"position in several groups, n_groups = {self.n_groups} a subset of them; set one of "
                              f"the two")
        if self.stitch_crop > self.model.N:
            raise ConfigError(
                f"InferenceConfig.stitch_crop: expected an integer <= N = {self.model.N}, got {self.stitch_crop}"
            )


POSITION_UNITS = ("px", "m")


@attrs.frozen(kw_only=True)
class ReadOptions:
    """How to read a data file that does not say everything itself (docs/data-format.md, "Bring your own data").

    Used by every command that reads data (``train``, ``infer``, ``run``, ``import``; flags of the same
    names) and by :func:`ptycho.workflow.load_dataset`. A value given here wins over the file's own
    (an explicit unit or pixel size that contradicts the file is an error, not a silent choice).
    """

    intensities: bool | None = attrs.field(default=None, validator=_optional(_boolean))
    """The patterns are intensities (counts; their square root is taken) or, False, amplitudes; None = detected
    (integer photon counts are read as intensities, logged)."""
    position_unit: str | None = attrs.field(default=None, validator=_optional(_one_of(POSITION_UNITS)))
    """Unit of the scan positions: 'px' (object pixels) or 'm' (metres, converted with pixel_size_m); None = the
    file's own (NPZ key position_unit, HDF5 attribute units), else pixels."""
    pixel_size_m: float | None = attrs.field(default=None, converter=_optional_float,
                                             validator=_optional(_number(0.0, strict=True)))
    """Object pixel size in metres, to convert positions given in metres; None = the file's own (NPZ key
    pixel_size_m, Ptychodus object attributes)."""
    diffraction_file: Path | None = attrs.field(default=None, converter=_optional_path)
    """The patterns file (NPZ or HDF5) that goes with a Ptychodus product file."""
    patterns: str | None = attrs.field(default=None)
    """HDF5 path of the pattern stack (n, N, N) in a generic detector file, e.g. /entry/data/data."""
    x: str | None = attrs.field(default=None)
    """HDF5 path of the x (column) scan positions in a generic detector file."""
    y: str | None = attrs.field(default=None)
    """HDF5 path of the y (row) scan positions in a generic detector file."""
    probe: str | None = attrs.field(default=None)
    """The probe of a file that has none: an HDF5 path in the input, or an .npy/.npz file (key probeGuess)."""

    def __attrs_post_init__(self) -> None:
        detector = {"patterns": self.patterns, "x": self.x, "y": self.y}
        given = [k for k, v in detector.items() if v is not None]
        if given and len(given) != 3:
            missing = [f"--{k}" for k, v in detector.items() if v is None]
            raise ConfigError(f"ReadOptions: a generic detector HDF5 file needs --patterns, --x and --y together; "
                              f"got {', '.join('--' + k for k in given)} without {', '.join(missing)}")
        if self.diffraction_file is not None and given:
            raise ConfigError("ReadOptions: --diffraction-file (the patterns of a Ptychodus product) and --patterns/"
                              "--x/--y (a generic detector file) describe different inputs; give one or the other")
        if self.position_unit == "px" and self.pixel_size_m is not None:
            log_unused = "--pixel-size converts metres, but --position-unit px says the positions are pixels"
            raise ConfigError(f"ReadOptions: {log_unused}; drop one of them")

    @property
    def is_default(self) -> bool:
        """True when no option is set (the file says everything itself)."""
        return self == ReadOptions()
