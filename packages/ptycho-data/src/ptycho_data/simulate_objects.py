"""Building blocks of the simulator: objects, probes and scan patterns (NumPy only).

Every random choice draws from a :class:`numpy.random.Generator` passed in by the caller,
so a fixed seed gives the same arrays. Objects are complex64 ``A * exp(i * phi)`` with the
amplitude mapped linearly onto ``amplitude_range`` and the phase onto ``phase_range``.
"""

from __future__ import annotations

import numpy as np

from ptycho_core.errors import ConfigError

OBJECT_KINDS = ("images", "lines", "grf")
PROBE_KINDS = ("disk", "gaussian")
SCAN_KINDS = ("raster", "fermat", "random")
IMAGES = (
    "camera", "moon", "cell", "coins", "brick", "grass", "gravel", "text", "page", "clock",
    "astronaut", "chelsea", "coffee", "shepp_logan_phantom",
)
"""Images bundled with scikit-image (no download) usable as amplitude or phase maps."""

GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


def _unit(img: np.ndarray, clip: float = 0.0) -> np.ndarray:
    """Map ``img`` linearly onto [0, 1] (a constant image becomes zeros).

    With ``clip`` > 0 the ``clip`` and ``100 - clip`` percentiles map to 0 and 1 and values
    beyond them are clipped (robust to a few outlier pixels).
    """
    img = np.asarray(img, dtype=np.float64)
    lo, hi = (float(v) for v in np.percentile(img, [clip, 100.0 - clip]))
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(img)


def load_image(name: str, shape: tuple[int, int]) -> np.ndarray:
    """A scikit-image sample image as float64 in [0, 1], centre-cropped to the aspect of ``shape`` and resized.

    The 0.5 and 99.5 percentiles map to 0 and 1 (clipped beyond).

    Parameters
    ----------
    name : str
        One of :data:`IMAGES`.
    shape : tuple of int
        Output (rows, cols).
    """
    if name not in IMAGES:
        raise ConfigError(f"image: expected one of {', '.join(IMAGES)}, got {name!r}")
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.transform import resize

    img = np.asarray(getattr(data, name)(), dtype=np.float64)
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    h, w = img.shape
    aspect = shape[1] / shape[0]
    if w / h > aspect:  # too wide: crop columns
        cw = max(1, int(round(h * aspect)))
        img = img[:, (w - cw) // 2:(w - cw) // 2 + cw]
    else:
        ch = max(1, int(round(w / aspect)))
        img = img[(h - ch) // 2:(h - ch) // 2 + ch, :]
    return _unit(resize(img, shape, order=1, anti_aliasing=True, preserve_range=True), clip=0.5)


def gaussian_random_field(shape: tuple[int, int], feature_size: float, rng: np.random.Generator) -> np.ndarray:
    """White noise smoothed by a Gaussian of std ``feature_size`` pixels, mapped onto [0, 1]."""
    from scipy import ndimage  # lazy: keeps `ptycho --help` free of scipy

    noise = rng.standard_normal(shape)
    return _unit(ndimage.gaussian_filter(noise, sigma=feature_size, mode="wrap"))


def random_lines(shape: tuple[int, int], feature_size: float, rng: np.random.Generator,
                 n_lines: int | None = None) -> np.ndarray:
    """Random anti-aliased line segments, blurred by a Gaussian of std ``feature_size / 2``, on [0, 1].

    ``n_lines`` defaults to one line per 400 pixels of area (at least 10). Segment lengths
    are uniform between 1/16 and 1/2 of the shorter object side, orientations uniform.
    """
    from scipy import ndimage
    from skimage.draw import line_aa

    h, w = shape
    n_lines = max(10, (h * w) // 400) if n_lines is None else n_lines
    canvas = np.zeros(shape, dtype=np.float64)
    side = min(h, w)
    centres = rng.uniform([0, 0], [h - 1, w - 1], size=(n_lines, 2))
    lengths = rng.uniform(side / 16, side / 2, size=n_lines)
    angles = rng.uniform(0, np.pi, size=n_lines)
    for (cy, cx), length, angle in zip(centres, lengths, angles):
        dy, dx = 0.5 * length * np.sin(angle), 0.5 * length * np.cos(angle)
        r0, c0 = np.clip([cy - dy, cx - dx], 0, [h - 1, w - 1]).round().astype(int)
        r1, c1 = np.clip([cy + dy, cx + dx], 0, [h - 1, w - 1]).round().astype(int)
        rr, cc, val = line_aa(r0, c0, r1, c1)
        np.add.at(canvas, (rr, cc), val)
    return _unit(ndimage.gaussian_filter(canvas, sigma=max(feature_size / 2, 0.5)))


def make_object(kind: str, shape: tuple[int, int], rng: np.random.Generator, *,
                amplitude_range: tuple[float, float] = (0.5, 1.0),
                phase_range: tuple[float, float] = (-np.pi / 3, np.pi / 3),
                amplitude_image: str = "camera", phase_image: str = "coins",
                feature_size: float = 2.0) -> np.ndarray:
    """A complex64 object of ``shape``.

    Parameters
    ----------
    kind : {'images', 'lines', 'grf'}
        'images': ``amplitude_image`` as amplitude and ``phase_image`` as phase (scikit-image
        sample data). 'lines': one random-lines map ``t`` gives amplitude ``hi - (hi - lo) * t``
        (lines absorb) and phase ``lo + (hi - lo) * t`` (like a thickness map). 'grf': two
        independent Gaussian random fields with correlation length ``feature_size``.
    shape : tuple of int
        (rows, cols).
    rng : numpy.random.Generator
        Source of randomness ('lines' and 'grf'; 'images' draws nothing).
    """
    (a_lo, a_hi), (p_lo, p_hi) = amplitude_range, phase_range
    if kind == "images":
        amp_t = load_image(amplitude_image, shape)
        phase_t = load_image(phase_image, shape)
    elif kind == "lines":
        t = random_lines(shape, feature_size, rng)
        amp_t, phase_t = 1.0 - t, t
    elif kind == "grf":
        amp_t = gaussian_random_field(shape, feature_size, rng)
        phase_t = gaussian_random_field(shape, feature_size, rng)
    else:
        raise ConfigError(f"object_kind: expected one of {', '.join(OBJECT_KINDS)}, got {kind!r}")
    amp = a_lo + (a_hi - a_lo) * amp_t
    phase = p_lo + (p_hi - p_lo) * phase_t
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def _radius(N: int) -> np.ndarray:
    r, c = np.mgrid[0:N, 0:N].astype(np.float64) - N // 2
    return np.hypot(r, c)


def disk_probe(N: int, pupil_radius: float, defocus: float, edge_sigma: float = 1.0) -> np.ndarray:
    """Defocused disk-aperture probe on the sample plane, centred at index N/2, peak amplitude 1.

    A circular pupil of radius ``pupil_radius`` (pupil-plane pixels), its edge softened by a
    Gaussian of std ``edge_sigma`` pixels (0: hard edge; a hard edge rings across the whole
    N x N box), gets the quadratic defocus phase ``defocus * (rho / pupil_radius)^2``
    (radians at the pupil edge) and is inverse Fourier transformed to the sample plane. The
    geometric beam radius there is about ``defocus * N / (pi * pupil_radius)`` pixels.
    """
    rho = _radius(N) / pupil_radius
    aperture = (rho <= 1.0).astype(np.float64)
    if edge_sigma > 0:
        from scipy import ndimage

        aperture = ndimage.gaussian_filter(aperture, edge_sigma)
    pupil = aperture * np.exp(1j * defocus * rho**2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    return (probe / np.abs(probe).max()).astype(np.complex64)


def gaussian_probe(N: int, sigma: float) -> np.ndarray:
    """Real Gaussian probe ``exp(-r^2 / (2 sigma^2))`` centred at index N/2 (peak 1)."""
    return np.exp(-(_radius(N) ** 2) / (2.0 * sigma**2)).astype(np.complex64)


def scan_pattern(kind: str, n: int, step: float, rng: np.random.Generator) -> np.ndarray:
    """Nominal scan positions (n, 2) as (x, y), centred on zero, with mean spacing ``step`` pixels.

    'raster': row-major grid with ceil(sqrt(n)) columns (the first n points).
    'fermat': Fermat spiral ``r = step / sqrt(pi) * sqrt(k + 1/2)``, angle ``k * golden angle``
    (the same density as a raster of pitch ``step``). 'random': uniform in a square of side
    ``step * sqrt(n)``.
    """
    if kind == "raster":
        cols = int(np.ceil(np.sqrt(n)))
        k = np.arange(n)
        pos = np.stack([k % cols, k // cols], axis=1).astype(np.float64) * step
    elif kind == "fermat":
        k = np.arange(n, dtype=np.float64)
        r = step / np.sqrt(np.pi) * np.sqrt(k + 0.5)
        pos = np.stack([r * np.cos(k * GOLDEN_ANGLE), r * np.sin(k * GOLDEN_ANGLE)], axis=1)
    elif kind == "random":
        side = step * np.sqrt(n)
        pos = rng.uniform(0.0, side, size=(n, 2))
    else:
        raise ConfigError(f"scan: expected one of {', '.join(SCAN_KINDS)}, got {kind!r}")
    return pos - 0.5 * (pos.min(axis=0) + pos.max(axis=0))
