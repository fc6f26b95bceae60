"""Simulate a ptychography scan with the NumPy reference forward model of ptycho-core.

    >>> from ptycho_data.simulate import SimulationConfig, simulate_dataset
    >>> ds = simulate_dataset(SimulationConfig(n_positions=16, nphotons=1e6, seed=3), progress=False)
    >>> ds.diffraction.shape, ds.object.dtype
    ((16, 64, 64), dtype('complex64'))

Pipeline (physics.md s1, docs/conventions.md s2): nominal scan positions (+ optional
Gaussian jitter: ``xcoords``/``ycoords`` hold the true jittered positions used for the
simulation, ``xcoords_start``/``ycoords_start`` the nominal ones) -> an object just large
enough that every N x N patch lies inside it (scan extent + N + a border of
``max(2, N // 16)`` pixels on each side, unless ``object_size`` is given) -> patches by
:func:`ptycho_core.reference.extract_patches` -> times the probe ->
:func:`ptycho_core.reference.diffract`. The probe is then scaled (and stored scaled) so
that the mean over patterns of the total intensity is ``nphotons``; the stored noiseless
amplitudes equal ``diffract(extract_patches(object) * probeGuess)`` to float32 precision.
With ``noise`` the counts are Poisson draws and the amplitude is ``sqrt(counts)``.

Randomness: one :class:`numpy.random.SeedSequence` of ``seed`` is split into independent
streams for the scan, the object and the noise, so e.g. switching the noise off leaves
the object and positions unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ptycho_core import reference
from ptycho_core.contracts import Dataset
from ptycho_core.errors import ConfigError, did_you_mean
from ptycho_data.simulate_objects import (
    IMAGES,
    OBJECT_KINDS,
    PROBE_KINDS,
    SCAN_KINDS,
    disk_probe,
    gaussian_probe,
    make_object,
    scan_pattern,
)

CHUNK = 64
"""Patterns simulated per step (one progress-bar update)."""


def _err(inst: Any, attribute: attrs.Attribute, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{type(inst).__name__}.{attribute.name}: expected {expected}, got {value!r}")


def _choice(options: tuple) -> Any:
    def check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in options:
            raise _err(inst, attribute, value, "one of " + ", ".join(repr(o) for o in options))
    return check


def _integer(low: int, optional: bool = False) -> Any:
    def check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _err(inst, attribute, value, f"an integer >= {low}")
    return check


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _positive(optional: bool = False, strict: bool = True) -> Any:
    def check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if optional and value is None:
            return
        if not (_finite(value) and (value > 0 if strict else value >= 0)):
            raise _err(inst, attribute, value, f"a finite number {'>' if strict else '>='} 0")
    return check


def _range(low: float | None) -> Any:
    def check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        ok = isinstance(value, tuple) and len(value) == 2 and all(_finite(v) for v in value)
        ok = ok and value[0] <= value[1] and (low is None or (value[0] >= low and value[1] > low))
        if not ok:
            bound = f", low >= {low} and high > {low}" if low is not None else ""
            raise _err(inst, attribute, value, f"a pair (low, high) of finite numbers with low <= high{bound}")
    return check


def _pair(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(float(v) if _finite(v) else v for v in value)
    return value


def _boolean(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise _err(inst, attribute, value, "true or false")


def _field(default: Any, validator: Any, help: str, converter: Any = None) -> Any:
    return attrs.field(default=default, validator=validator, converter=converter, metadata={"help": help})


@attrs.frozen(kw_only=True)
class SimulationConfig:
    """Settings of :func:`simulate_dataset`; ``None`` means "derived from N" (see each help)."""

    N: int = _field(64, _choice((64, 128, 256)), "pattern side in pixels (64, 128 or 256)")
    n_positions: int = _field(256, _integer(1), "number of scan positions")
    scan: str = _field("raster", _choice(SCAN_KINDS), "scan pattern: raster, fermat (spiral) or random")
    step: float | None = _field(None, _positive(optional=True), "mean scan step in pixels (default N // 8)")
    jitter: float = _field(0.0, _positive(strict=False), "std of Gaussian position jitter in pixels")
    object_kind: str = _field("images", _choice(OBJECT_KINDS), "object: images, lines or grf")
    object_size: int | None = _field(None, _integer(8, optional=True),
                                     "side of the square object (default: just fits the scan)")
    amplitude_image: str = _field("camera", _choice(IMAGES), "scikit-image picture used as amplitude (images)")
    phase_image: str = _field("coins", _choice(IMAGES), "scikit-image picture used as phase (images)")
    feature_size: float = _field(2.0, _positive(), "feature length in pixels (grf correlation, lines blur)")
    amplitude_range: tuple[float, float] = _field((0.5, 1.0), _range(0.0), "object amplitude LOW HIGH", _pair)
    phase_range: tuple[float, float] = _field((-np.pi / 3, np.pi / 3), _range(None),
                                              "object phase LOW HIGH in radians", _pair)
    probe_kind: str = _field("disk", _choice(PROBE_KINDS), "probe: disk (defocused aperture) or gaussian")
    probe_pupil_radius: float | None = _field(None, _positive(optional=True),
                                              "disk probe: pupil radius in Fourier pixels (default 3N/16)")
    probe_defocus: float = _field(6.0, _positive(strict=False), "disk probe: defocus phase at the pupil edge (rad)")
    probe_sigma: float | None = _field(None, _positive(optional=True),
                                       "gaussian probe: std in pixels (default N/10)")
    probe_window: bool = _field(False, _boolean, "zero the probe outside the central N/2 x N/2 square, the object "
                                "support of a gridsize > 1 model (physics.md s5)")
    nphotons: float = _field(1e9, _positive(), "mean photons per pattern", lambda v: float(v) if _finite(v) else v)
    noise: bool = _field(True, _boolean, "Poisson noise on the counts (off: exact intensities)")
    seed: int = _field(42, _integer(0), "seed of the random generator")

    @property
    def scan_step(self) -> float:
        """The scan step in pixels: ``step``, or ``N // 8`` (an integer, so a raster without jitter
        lands on whole pixels and stitching the true patches gives the object back exactly).

        ``N // 8`` with the default probe (half its energy within ~N/10 of the centre) overlaps
        neighbouring illuminated areas by well over half, as ptychography needs."""
        return float(self.step) if self.step is not None else float(self.N // 8)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly dict (tuples as lists, ``None`` kept)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> SimulationConfig:
        """Build a config from a mapping; a ``simulation`` table is used when present.

        Raises
        ------
        ConfigError
            Naming the unknown key (with a close match) or the field whose value is invalid.
        """
        where = f"{source}: " if source else ""
        if isinstance(data, dict) and isinstance(data.get("simulation"), dict):
            data = data["simulation"]
        if not isinstance(data, dict):
            raise ConfigError(f"{where}expected a table of SimulationConfig settings, got {type(data).__name__}")
        names = [f.name for f in attrs.fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(f"{where}unknown SimulationConfig key {key!r}{did_you_mean(str(key), names)}")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None


def _progress(progress: bool | None) -> bool:
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def make_probe(config: SimulationConfig) -> np.ndarray:
    """The unscaled probe (peak amplitude 1) of ``config``, zeroed outside the central window with ``probe_window``."""
    probe = _probe_of_kind(config)
    if config.probe_window:
        # the window by which the physics layer masks every patch before the merge (physics.md s5 step 1), so a
        # model at gridsize > 1 can represent the exit wave exactly
        probe = probe * reference.merge_window(config.N).astype(np.float32)
    return probe


def _probe_of_kind(config: SimulationConfig) -> np.ndarray:
    N = config.N
    if config.probe_kind == "disk":
        # 3N/16 keeps ~99 % of the default defocused probe's energy inside the disk of radius N/4
        # (physics.md s5, the model's object support); N/8 left 9 % outside, which the model
        # cannot represent and which blurred every reconstruction.
        radius = config.probe_pupil_radius if config.probe_pupil_radius is not None else 3.0 * N / 16.0
        return disk_probe(N, radius, config.probe_defocus)
    return gaussian_probe(N, config.probe_sigma if config.probe_sigma is not None else N / 10.0)


def place_scan(config: SimulationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """True and nominal positions (n, 2) in object pixels and the object shape (H, W).

    Raises
    ------
    ConfigError
        If ``object_size`` is too small to hold every N x N patch of the scan.
    """
    nominal = scan_pattern(config.scan, config.n_positions, config.scan_step, rng)
    true = nominal + rng.normal(0.0, config.jitter, size=nominal.shape) if config.jitter > 0 else nominal.copy()
    border = max(2, config.N // 16)
    lo, hi = true.min(axis=0), true.max(axis=0)
    need = np.ceil(hi - lo).astype(int) + config.N + 2 * border  # (W, H)
    if config.object_size is None:
        size = need
    else:
        if config.object_size < need.max():
            raise ConfigError(
                f"SimulationConfig.object_size: expected at least {int(need.max())} pixels to hold the scan "
                f"(extent {float((hi - lo).max()):.1f} + N + borders), got {config.object_size}; "
                "leave it unset, or lower n_positions or step"
            )
        size = np.array([config.object_size, config.object_size])
    shift = (size - (hi - lo)) / 2.0 - lo
    return true + shift, nominal + shift, (int(size[1]), int(size[0]))


def simulate_dataset(config: SimulationConfig | None = None, progress: bool | None = None) -> Dataset:
    """Simulate a DATA-001 dataset with ground-truth ``objectGuess``.

    Parameters
    ----------
    config : SimulationConfig, optional
        Settings (the defaults when None).
    progress : bool or None
        Show a tqdm progress bar; None shows it only when stderr is a terminal.

    Returns
    -------
    Dataset
        Amplitudes (n, N, N) float32, true positions, the photon-scaled probe, the object,
        nominal positions as ``xcoords_start``/``ycoords_start`` and ``metadata['simulation']``.
    """
    from tqdm.auto import tqdm

    config = SimulationConfig() if config is None else config
    if not isinstance(config, SimulationConfig):
        raise ConfigError(f"config: expected a SimulationConfig, got {type(config).__name__}")
    scan_rng, object_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(3))
    positions, nominal, shape = place_scan(config, scan_rng)
    obj = make_object(config.object_kind, shape, object_rng, amplitude_range=config.amplitude_range,
                      phase_range=config.phase_range, amplitude_image=config.amplitude_image,
                      phase_image=config.phase_image, feature_size=config.feature_size)
    probe0 = make_probe(config)
    n, N = config.n_positions, config.N
    amp = np.empty((n, N, N), dtype=np.float32)
    with tqdm(total=n, desc="simulate", unit="pattern", disable=not _progress(progress), leave=False) as bar:
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            patches = reference.extract_patches(obj, positions[start:stop], N)
            amp[start:stop] = reference.diffract(np.asarray(patches) * probe0)
            bar.update(stop - start)
    power = np.mean(np.sum(amp.astype(np.float64) ** 2, axis=(1, 2)))
    if not power > 0:
        raise ConfigError("SimulationConfig: the simulated patterns hold no intensity (object or probe is zero)")
    factor = np.sqrt(config.nphotons / power)
    probe = (probe0 * factor).astype(np.complex64)
    intensity = (amp.astype(np.float64) * factor) ** 2
    if config.noise:
        amp = np.sqrt(noise_rng.poisson(intensity)).astype(np.float32)
    else:
        amp = np.sqrt(intensity).astype(np.float32)
    meta = {"simulation": config.to_dict(), "photon_scale": float(factor)}
    return Dataset(diffraction=amp, xcoords=positions[:, 0], ycoords=positions[:, 1], probe=probe, object=obj,
                   xcoords_start=nominal[:, 0], ycoords_start=nominal[:, 1], metadata=meta)


def simulate_to_npz(config: SimulationConfig | None, path: str | Path, progress: bool | None = None) -> Path:
    """Simulate and write a DATA-001 NPZ (atomically, with :func:`ptycho_data.npz.save_dataset`)."""
    from ptycho_data.npz import save_dataset

    path = Path(path)
    save_dataset(simulate_dataset(config, progress=progress), path)
    return path
