"""The simulated training corpus of ``ptycho pretrain``, written object by object to disk.

    >>> from ptycho_core.corpus import CorpusConfig
    >>> from ptycho_data.corpus import write_corpus
    >>> paths = write_corpus(CorpusConfig(n_objects=2, n_positions=16), 64, "corpus")  # doctest: +SKIP

Every object of the recipe (:class:`ptycho_core.corpus.CorpusConfig`) is one simulated scan,
written as its own lazy dataset directory (``object_00000``, ... :mod:`ptycho_data.lazy_write`),
so the corpus never has to fit in memory (one object's patterns are held at a time) and training
groups each object on its own. Per object, drawn from its own random stream (object ``i`` uses
``SeedSequence(seed).spawn(n_objects)[i]``, so the same recipe gives the same bytes):

- the kind (``object_kinds`` with ``object_weights``): 'images' takes two scikit-image pictures
  (amplitude and phase) from ``images``, each rotated by a random angle (``rotate``) and cut to
  1/zoom of its side at a random place (``zoom_range``); 'lines' and 'grf' as in
  :mod:`ptycho_data.simulate_objects` with a feature size from ``feature_size_range``; 'mixed'
  blends, for amplitude and for phase separately, the maps of two different kinds with a random
  weight;
- the photon level (one of ``photon_levels``), the scan (``scan``, ``step``, ``jitter``) as in
  :func:`ptycho_data.simulate.simulate_dataset`, and Poisson noise (``noise``).

The probe is the default simulated one (:func:`ptycho_data.simulate.make_probe`) or the
``probeGuess`` of ``probe_from``; as in the simulator it is scaled per object so that a pattern
holds the object's photon level on average (and stored so scaled).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_core import reference
from ptycho_core.atomic import commit_directory, stage_directory, write_text
from ptycho_core.errors import ConfigError, DataError
from ptycho_data.lazy_write import LazyDatasetWriter
from ptycho_data.simulate import CHUNK, SimulationConfig, make_probe, place_scan
from ptycho_data.simulate_objects import IMAGES, _unit, gaussian_random_field, random_lines

log = logging.getLogger("ptycho_data.corpus")

RECIPE_FILE = "corpus.json"
"""File in the corpus directory recording the recipe and what each object drew."""
BASE_KINDS = ("images", "lines", "grf")


def _picture_raw(name: str) -> np.ndarray:
    from skimage import data
    from skimage.color import rgb2gray

    img = np.asarray(getattr(data, name)(), dtype=np.float64)
    return rgb2gray(img[..., :3]) if img.ndim == 3 else img


def picture(name: str, shape: tuple[int, int], rng: np.random.Generator, *, rotate: bool,
            zoom_range: tuple[float, float]) -> np.ndarray:
    """A scikit-image picture on [0, 1]: rotated by a random angle, a random crop of 1/zoom of its side, resized."""
    from skimage.transform import resize
    from skimage.transform import rotate as rotate_image

    img = _picture_raw(name)
    angle = float(rng.uniform(0.0, 360.0)) if rotate else 0.0
    zoom = float(rng.uniform(*zoom_range))
    u = rng.uniform(size=2)
    if rotate:
        img = rotate_image(img, angle, resize=False, mode="reflect", order=1)
    h, w = img.shape
    aspect = shape[1] / shape[0]
    ch, cw = (h, h * aspect) if w / h > aspect else (w / aspect, w)
    ch, cw = max(2, int(round(ch / zoom))), max(2, int(round(cw / zoom)))
    r0, c0 = int(u[0] * (h - ch)), int(u[1] * (w - cw))
    crop = img[r0:r0 + ch, c0:c0 + cw]
    return _unit(resize(crop, shape, order=1, anti_aliasing=True, preserve_range=True), clip=0.5)


def _maps(kind: str, shape: tuple[int, int], rng: np.random.Generator, recipe: Any, images: tuple[str, ...],
          feature: float, drawn: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude and phase maps on [0, 1] of one object of ``kind``; what was drawn goes into ``drawn``."""
    if kind == "images":
        names = [str(n) for n in rng.choice(images, size=2)]
        drawn.setdefault("images", []).extend(names)
        return tuple(picture(n, shape, rng, rotate=recipe.rotate, zoom_range=recipe.zoom_range) for n in names)
    if kind == "lines":
        t = random_lines(shape, feature, rng)
        return 1.0 - t, t
    if kind == "grf":
        return gaussian_random_field(shape, feature, rng), gaussian_random_field(shape, feature, rng)
    # mixed: amplitude and phase each a blend of two different base kinds
    first, second = (str(k) for k in rng.choice(BASE_KINDS, size=2, replace=False))
    weight = float(rng.uniform(0.2, 0.8))
    drawn["mixed"] = {"kinds": [first, second], "weight": weight}
    a1, p1 = _maps(first, shape, rng, recipe, images, feature, drawn)
    a2, p2 = _maps(second, shape, rng, recipe, images, feature, drawn)
    return _unit(weight * a1 + (1 - weight) * a2), _unit(weight * p1 + (1 - weight) * p2)


def corpus_probe(recipe: Any, N: int, load_dataset: Any = None) -> np.ndarray:
    """The unscaled probe of the corpus: ``probe_from``'s probeGuess, or the default simulated one of side N.

    ``load_dataset(path, what)`` reads ``probe_from`` (:func:`ptycho_data.readers.load_dataset`).

    Raises
    ------
    ConfigError
        The probe of ``probe_from`` is not N x N.
    """
    if recipe.probe_from is None:
        return make_probe(SimulationConfig(N=N))
    if load_dataset is None:
        from ptycho_data.readers import load_dataset
    ds = load_dataset(recipe.probe_from, "probe_from")
    try:
        probe = np.asarray(ds.probe, dtype=np.complex64)
    finally:
        close = getattr(ds, "close", None)
        if callable(close):
            close()
    if probe.shape != (N, N):
        raise ConfigError(f"CorpusConfig.probe_from: {recipe.probe_from}: probeGuess is {probe.shape[0]} x "
                          f"{probe.shape[1]}, but the model's N is {N}; use data of the model's N or set "
                          f"ModelConfig.N = {probe.shape[0]}")
    if not np.any(np.abs(probe) > 0):
        raise DataError(f"{recipe.probe_from}: probeGuess is all zeros")
    return probe


def simulate_object(recipe: Any, index: int, N: int, probe0: np.ndarray, writer_dir: Path,
                    overwrite: bool = False) -> dict[str, Any]:
    """Simulate object ``index`` of ``recipe`` and write it as a lazy dataset at ``writer_dir``; return what it drew."""
    seq = np.random.SeedSequence(recipe.seed).spawn(recipe.n_objects)[index]
    draw_rng, scan_rng, object_rng, noise_rng = (np.random.default_rng(s) for s in seq.spawn(4))
    kind = str(draw_rng.choice(recipe.object_kinds, p=recipe.kind_probabilities))
    photons = float(draw_rng.choice(recipe.photon_levels))
    feature = float(draw_rng.uniform(*recipe.feature_size_range))
    sim = SimulationConfig(N=N, n_positions=recipe.n_positions, scan=recipe.scan, step=recipe.step,
                           jitter=recipe.jitter, nphotons=photons, seed=0)
    positions, nominal, shape = place_scan(sim, scan_rng)
    images = tuple(recipe.images) or IMAGES
    drawn: dict[str, Any] = {"kind": kind, "nphotons": photons, "feature_size": feature}
    amp_t, phase_t = _maps(kind, shape, object_rng, recipe, images, feature, drawn)
    (a_lo, a_hi), (p_lo, p_hi) = recipe.amplitude_range, recipe.phase_range
    obj = ((a_lo + (a_hi - a_lo) * amp_t) * np.exp(1j * (p_lo + (p_hi - p_lo) * phase_t))).astype(np.complex64)
    n = recipe.n_positions
    amp = np.empty((n, N, N), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        amp[start:stop] = reference.diffract(np.asarray(reference.extract_patches(obj, positions[start:stop], N))
                                             * probe0)
    power = float(np.mean(np.sum(amp.astype(np.float64) ** 2, axis=(1, 2))))
    if not power > 0:
        raise DataError(f"corpus object {index}: the simulated patterns hold no intensity")
    factor = np.sqrt(photons / power)
    intensity = (amp.astype(np.float64) * factor) ** 2
    amp = np.sqrt(noise_rng.poisson(intensity) if recipe.noise else intensity).astype(np.float32)
    with LazyDatasetWriter(writer_dir, (probe0 * factor).astype(np.complex64), object=obj,
                           overwrite=overwrite) as writer:
        writer.append(amp, positions[:, 0], positions[:, 1], xcoords_start=nominal[:, 0],
                      ycoords_start=nominal[:, 1])
    drawn["shape"] = list(shape)
    return drawn


def object_name(index: int) -> str:
    """Directory name of object ``index`` in a corpus."""
    return f"object_{index:05d}"


def write_corpus(recipe: Any, N: int, directory: str | Path, *, overwrite: bool = False,
                 progress: bool | None = None, load_dataset: Any = None) -> list[Path]:
    """Write the corpus of ``recipe`` (a :class:`ptycho_core.corpus.CorpusConfig`) for patterns of side ``N``.

    The directory is staged and appears only when every object is written (nothing half-written
    on error); it holds one lazy dataset directory per object and :data:`RECIPE_FILE`.

    Returns
    -------
    list of Path
        The object directories, in order.
    """
    from tqdm.auto import tqdm

    from ptycho_core.serialize import to_dict
    from ptycho_data.simulate import _progress

    directory = Path(directory)
    unknown = [name for name in recipe.images if name not in IMAGES]
    if unknown:
        raise ConfigError(f"CorpusConfig.images: unknown picture(s) {unknown}; expected names from {', '.join(IMAGES)}")
    probe0 = corpus_probe(recipe, N, load_dataset)
    if directory.exists() and not overwrite:
        raise DataError(f"{directory}: already exists (pass overwrite=True / --overwrite to replace it)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    stage = stage_directory(directory, overwrite=overwrite)
    try:
        objects = []
        bar = tqdm(total=recipe.n_objects, desc="corpus", unit="object", disable=not _progress(progress), leave=False)
        with bar:
            for i in range(recipe.n_objects):
                objects.append({"name": object_name(i),
                                **simulate_object(recipe, i, N, probe0, stage / object_name(i))})
                bar.update(1)
        record = {"format": "ptycho-corpus", "version": 1, "N": N, "recipe": to_dict(recipe), "objects": objects}
        write_text(stage / RECIPE_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
        commit_directory(stage, directory, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("%s: wrote a corpus of %d objects x %d patterns", directory, recipe.n_objects, recipe.n_positions)
    return [directory / object_name(i) for i in range(recipe.n_objects)]
