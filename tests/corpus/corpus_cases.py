"""A corpus of malformed inputs: NPZ datasets, Ptychodus HDF5 products, config files, model bundles.

Every case is a small function registered with :func:`case`. Called with a directory, it
writes the bad input (and any good companion files the loader needs) there and returns
the paths by role. The registry entry declares:

* ``kind``: which loader / CLI command reads it (``npz``, ``hdf5``, ``config``, ``bundle``,
  ``evaluate``; see :data:`KINDS`);
* ``error``: the :mod:`ptycho_core.errors` class the loader must raise;
* ``words``: substrings the one-line message must contain (the file name plus the
  key, field or problem);
* ``requires``: importable modules needed to write or read the case (``h5py``) beyond
  numpy and ptycho-core.

Writing needs only numpy and the standard library (plus h5py for ``hdf5`` cases), so the
corpus can be generated where only ptycho-core is installed. Run
``python tests/corpus/corpus_cases.py OUTDIR`` to write every case into ``OUTDIR/<case>/``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptycho_core.errors import BundleError, BundleIntegrityError, ConfigError, DataError, PtychoInputError

N = 64
N_POS = 4
OBJECT_SIDE = 128
PIXEL_M = 1e-8

KINDS = {
    "npz": "ptycho_data.npz.load_dataset(data); CLI `ptycho fixture data out.npz`",
    "hdf5": "ptycho_data.hdf5.read_product(product, patterns); no CLI command reads products",
    "config": "ptycho_core.serialize.load_config(config); CLI `ptycho config validate config`",
    "bundle": "ptycho_core.bundle.load_bundle(bundle); CLI `ptycho infer --model-path bundle --test-data data`",
    "evaluate": "reconstruction + ground truth; CLI `ptycho evaluate reconstruction truth --output out.json`",
}


@dataclass(frozen=True)
class Case:
    """One malformed input: how to write it and what error it must give."""

    name: str
    kind: str
    error: type[PtychoInputError]
    words: tuple[str, ...]
    write: Callable[[Path], dict[str, Path]]
    requires: tuple[str, ...] = ()
    doc: str = ""

    def missing_requirements(self) -> list[str]:
        """The modules of ``requires`` that cannot be imported here."""
        return [mod for mod in self.requires if importlib.util.find_spec(mod) is None]


CASES: dict[str, Case] = {}


def case(kind: str, error: type[PtychoInputError], *words: str,
         requires: tuple[str, ...] = ()) -> Callable[[Callable[[Path], dict[str, Path]]], Callable]:
    """Register the decorated writer as a corpus case named after the function."""
    if kind not in KINDS:
        raise ValueError(f"unknown corpus kind {kind!r}")

    def register(fn: Callable[[Path], dict[str, Path]]) -> Callable[[Path], dict[str, Path]]:
        if fn.__name__ in CASES:
            raise ValueError(f"duplicate corpus case {fn.__name__!r}")
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        CASES[fn.__name__] = Case(fn.__name__, kind, error, tuple(words), fn, requires, doc)
        return fn

    return register


# ---------------------------------------------------------------- building blocks

def valid_arrays(n: int = N_POS, side: int = N) -> dict[str, np.ndarray]:
    """Arrays of a small valid DATA-001 dataset (amplitudes 0.5, positions inside the object)."""
    coords = np.linspace(50.0, 78.0, n)
    return {
        "diffraction": np.full((n, side, side), 0.5, dtype=np.float32),
        "xcoords": coords.copy(),
        "ycoords": coords[::-1].copy(),
        "probeGuess": np.ones((side, side), dtype=np.complex64),
        "objectGuess": np.ones((OBJECT_SIDE, OBJECT_SIDE), dtype=np.complex64),
    }


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` to exactly ``path`` (object arrays are pickled: that is the point of some cases)."""
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def npy_bytes(header: dict, payload: bytes = b"") -> bytes:
    """Raw ``.npy`` bytes: a version 1.0 header describing ``header`` followed by ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def save_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip with the given member names and bytes (names are written verbatim, '..' included)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return path


def npz_members(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """``{'<key>.npy': bytes}`` of numeric arrays, as an NPZ archive stores them."""
    out = {}
    for key, arr in arrays.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
        out[f"{key}.npy"] = buf.getvalue()
    return out


def valid_dataset_file(directory: Path, name: str = "good_data.npz") -> Path:
    """A valid dataset beside a case (for commands that need one besides the bad input)."""
    return save_npz(directory / name, valid_arrays())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


WEIGHTS = b"fake weights: never read, the bundle is refused before the backend loads anything\n"


def bundle_files(config: dict | None = None, weights: bytes = WEIGHTS) -> dict[str, bytes]:
    """Files of a well-formed pytorch bundle (manifest.json with correct sha256s, config.json, model.ckpt)."""
    config_bytes = json.dumps({"model": {"N": N}} if config is None else config, indent=2).encode()
    files = {"config.json": config_bytes, "model.ckpt": weights}
    manifest = {
        "format": "ptycho-bundle",
        "format_version": 1,
        "backend": "pytorch",
        "versions": {},
        "weights": ["model.ckpt"],
        "files": {name: _sha256(data) for name, data in sorted(files.items())},
    }
    return {"manifest.json": json.dumps(manifest, indent=2).encode(), **files}


def write_bundle_dir(path: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` into the bundle directory ``path``."""
    path.mkdir()
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def _manifest(files: dict[str, bytes]) -> dict:
    return json.loads(files["manifest.json"])


def write_product(path: Path, *, x_m: np.ndarray | None = None, y_m: np.ndarray | None = None,
                  drop: tuple[str, ...] = (), object_attrs: dict | None = None) -> Path:
    """A small Ptychodus product (h5py), with datasets in ``drop`` left out."""
    import h5py

    px = np.linspace(50.0, 78.0, N_POS)
    centre = (OBJECT_SIDE - 1) / 2
    x_m = (px - centre) * PIXEL_M if x_m is None else x_m
    y_m = (px[::-1] - centre) * PIXEL_M if y_m is None else y_m
    attrs = {"center_x_m": 0.0, "center_y_m": 0.0, "pixel_width_m": PIXEL_M, "pixel_height_m": PIXEL_M}
    attrs.update(object_attrs or {})
    with h5py.File(path, "w") as f:
        f.attrs["name"] = "corpus product"
        data = {
            "probe_position_indexes": np.arange(N_POS, dtype=np.int64),
            "probe_position_x_m": x_m,
            "probe_position_y_m": y_m,
            "probe": np.ones((1, N, N), dtype=np.complex64),
            "object": np.ones((1, OBJECT_SIDE, OBJECT_SIDE), dtype=np.complex64),
        }
        for name, value in data.items():
            if name not in drop:
                f.create_dataset(name, data=value)
        if "object" not in drop:
            f["object"].attrs.update({k: v for k, v in attrs.items() if v is not None})
        if "probe" not in drop:
            f["probe"].attrs.update({"pixel_width_m": PIXEL_M, "pixel_height_m": PIXEL_M})
    return path


def write_patterns_npz(path: Path, **arrays: np.ndarray) -> Path:
    """A diffraction pattern file for a product (NPZ, key ``diffraction`` by default)."""
    return save_npz(path, arrays or {"diffraction": np.full((N_POS, N, N), 0.5, dtype=np.float32)})


# ---------------------------------------------------------------- NPZ datasets

@case("npz", DataError, "npz_truncated.npz", "truncated")
def npz_truncated(d: Path) -> dict[str, Path]:
    """A valid dataset cut in half (the zip central directory is gone)."""
    path = save_npz(d / "npz_truncated.npz", valid_arrays())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return {"data": path}


@case("npz", DataError, "npz_not_a_zip.npz", "not a valid NPZ")
def npz_not_a_zip(d: Path) -> dict[str, Path]:
    """Text bytes with an .npz name."""
    path = d / "npz_not_a_zip.npz"
    path.write_bytes(b"this is not a zip archive\n" * 20)
    return {"data": path}


@case("npz", DataError, "npz_single_npy.npz", "single .npy")
def npz_single_npy(d: Path) -> dict[str, Path]:
    """One .npy array saved under an .npz name."""
    path = d / "npz_single_npy.npz"
    with open(path, "wb") as fh:
        np.save(fh, valid_arrays()["diffraction"])
    return {"data": path}


@case("npz", DataError, "npz_empty_archive.npz", "no .npy arrays")
def npz_empty_archive(d: Path) -> dict[str, Path]:
    """A valid zip holding no arrays."""
    return {"data": save_zip(d / "npz_empty_archive.npz", {"readme.txt": b"nothing here"})}


@case("npz", DataError, "npz_missing_probe.npz", "'probeGuess'", "missing")
def npz_missing_probe(d: Path) -> dict[str, Path]:
    """Required key probeGuess absent."""
    arrays = valid_arrays()
    del arrays["probeGuess"]
    return {"data": save_npz(d / "npz_missing_probe.npz", arrays)}


@case("npz", DataError, "npz_wrong_key.npz", "'diffraction'", "missing")
def npz_wrong_key(d: Path) -> dict[str, Path]:
    """Patterns stored under a misspelled key."""
    arrays = valid_arrays()
    arrays["diffractions"] = arrays.pop("diffraction")
    return {"data": save_npz(d / "npz_wrong_key.npz", arrays)}


@case("npz", DataError, "npz_string_coords.npz", "xcoords", "dtype")
def npz_string_coords(d: Path) -> dict[str, Path]:
    """xcoords stored as strings (wrong dtype)."""
    arrays = valid_arrays()
    arrays["xcoords"] = np.array(["1.0", "2.0", "3.0", "4.0"])
    return {"data": save_npz(d / "npz_string_coords.npz", arrays)}


@case("npz", DataError, "npz_complex_diffraction.npz", "'diffraction'", "complex")
def npz_complex_diffraction(d: Path) -> dict[str, Path]:
    """Complex patterns where real amplitudes are expected."""
    arrays = valid_arrays()
    arrays["diffraction"] = arrays["diffraction"].astype(np.complex64)
    return {"data": save_npz(d / "npz_complex_diffraction.npz", arrays)}


@case("npz", DataError, "npz_object_array.npz", "'xcoords'", "object array", "pickle")
def npz_object_array(d: Path) -> dict[str, Path]:
    """xcoords as a pickled object array."""
    arrays = valid_arrays()
    arrays["xcoords"] = np.array([1.0, "two", None, {"x": 4}], dtype=object)
    return {"data": save_npz(d / "npz_object_array.npz", arrays)}


@case("npz", DataError, "npz_nan_diffraction.npz", "diffraction", "NaN")
def npz_nan_diffraction(d: Path) -> dict[str, Path]:
    """NaN in the patterns."""
    arrays = valid_arrays()
    arrays["diffraction"][1, 3, 5] = np.nan
    return {"data": save_npz(d / "npz_nan_diffraction.npz", arrays)}


@case("npz", DataError, "npz_inf_coords.npz", "ycoords", "infinite")
def npz_inf_coords(d: Path) -> dict[str, Path]:
    """An infinite scan coordinate."""
    arrays = valid_arrays()
    arrays["ycoords"][2] = np.inf
    return {"data": save_npz(d / "npz_inf_coords.npz", arrays)}


@case("npz", DataError, "npz_negative_amplitude.npz", "diffraction", "negative")
def npz_negative_amplitude(d: Path) -> dict[str, Path]:
    """A negative amplitude."""
    arrays = valid_arrays()
    arrays["diffraction"][0, 0, 0] = -0.25
    return {"data": save_npz(d / "npz_negative_amplitude.npz", arrays)}


@case("npz", DataError, "npz_coords_outside_object.npz", "'xcoords'", "outside", "objectGuess")
def npz_coords_outside_object(d: Path) -> dict[str, Path]:
    """Scan positions far outside objectGuess (e.g. metres or another origin, not object pixels)."""
    arrays = valid_arrays()
    arrays["xcoords"] = arrays["xcoords"] + 5000.0
    return {"data": save_npz(d / "npz_coords_outside_object.npz", arrays)}


@case("npz", DataError, "npz_zero_patterns.npz", "diffraction", "at least one pattern")
def npz_zero_patterns(d: Path) -> dict[str, Path]:
    """Zero-size arrays: no patterns, no positions."""
    arrays = valid_arrays()
    arrays.update(diffraction=np.zeros((0, N, N), np.float32), xcoords=np.zeros(0), ycoords=np.zeros(0))
    return {"data": save_npz(d / "npz_zero_patterns.npz", arrays)}


@case("npz", DataError, "npz_empty_object.npz", "objectGuess", "non-empty")
def npz_empty_object(d: Path) -> dict[str, Path]:
    """A zero-size objectGuess."""
    arrays = valid_arrays()
    arrays["objectGuess"] = np.zeros((0, 0), dtype=np.complex64)
    return {"data": save_npz(d / "npz_empty_object.npz", arrays)}


@case("npz", DataError, "npz_coord_lengths.npz", "'ycoords'", "length")
def npz_coord_lengths(d: Path) -> dict[str, Path]:
    """xcoords and ycoords of different lengths."""
    arrays = valid_arrays()
    arrays["ycoords"] = arrays["ycoords"][:3]
    return {"data": save_npz(d / "npz_coord_lengths.npz", arrays)}


@case("npz", DataError, "npz_pattern_count.npz", "'diffraction'", "length mismatch")
def npz_pattern_count(d: Path) -> dict[str, Path]:
    """Five patterns for four positions."""
    arrays = valid_arrays()
    arrays["diffraction"] = np.full((5, N, N), 0.5, dtype=np.float32)
    return {"data": save_npz(d / "npz_pattern_count.npz", arrays)}


@case("npz", DataError, "npz_scan_index_length.npz", "scan_index", "expected length 4")
def npz_scan_index_length(d: Path) -> dict[str, Path]:
    """scan_index with one entry too many."""
    arrays = valid_arrays()
    arrays["scan_index"] = np.zeros(N_POS + 1, dtype=np.int64)
    return {"data": save_npz(d / "npz_scan_index_length.npz", arrays)}


@case("npz", DataError, "npz_wrong_n.npz", "diffraction", "N must be one of", "48")
def npz_wrong_n(d: Path) -> dict[str, Path]:
    """Patterns of side 48 (N must be 64, 128 or 256)."""
    arrays = valid_arrays(side=48)
    return {"data": save_npz(d / "npz_wrong_n.npz", arrays)}


@case("npz", DataError, "npz_probe_shape.npz", "probeGuess", "(64, 64)")
def npz_probe_shape(d: Path) -> dict[str, Path]:
    """A 32 x 32 probe for 64 x 64 patterns."""
    arrays = valid_arrays()
    arrays["probeGuess"] = np.ones((32, 32), dtype=np.complex64)
    return {"data": save_npz(d / "npz_probe_shape.npz", arrays)}


@case("npz", DataError, "npz_non_square.npz", "'diffraction'", "square")
def npz_non_square(d: Path) -> dict[str, Path]:
    """Patterns of 64 x 32 pixels."""
    arrays = valid_arrays()
    arrays["diffraction"] = np.full((N_POS, N, 32), 0.5, dtype=np.float32)
    return {"data": save_npz(d / "npz_non_square.npz", arrays)}


@case("npz", DataError, "npz_huge_header.npz", "'diffraction'", "declared shape", "max_array_bytes")
def npz_huge_header(d: Path) -> dict[str, Path]:
    """A .npy header declaring a (10^6, 4096, 4096) float32 stack (64 TiB) over 16 bytes of data."""
    members = npz_members({k: v for k, v in valid_arrays().items() if k != "diffraction"})
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**6, 4096, 4096)}
    members["diffraction.npy"] = npy_bytes(header, b"\0" * 16)
    return {"data": save_zip(d / "npz_huge_header.npz", members)}


@case("npz", DataError, "npz_short_member.npz", "'probeGuess'", "truncated")
def npz_short_member(d: Path) -> dict[str, Path]:
    """probeGuess header declares (64, 64) complex64 but only 100 bytes follow."""
    members = npz_members({k: v for k, v in valid_arrays().items() if k != "probeGuess"})
    header = {"descr": "<c8", "fortran_order": False, "shape": (N, N)}
    members["probeGuess.npy"] = npy_bytes(header, b"\0" * 100)
    return {"data": save_zip(d / "npz_short_member.npz", members)}


@case("npz", DataError, "npz_bad_npy_header.npz", "'xcoords'", "header")
def npz_bad_npy_header(d: Path) -> dict[str, Path]:
    """xcoords member whose .npy header is garbage after the magic string."""
    members = npz_members({k: v for k, v in valid_arrays().items() if k != "xcoords"})
    members["xcoords.npy"] = b"\x93NUMPY\x01\x00\x20\x00{'descr': <<garbage>> }\n" + b"\0" * 64
    return {"data": save_zip(d / "npz_bad_npy_header.npz", members)}


@case("npz", DataError, "npz_bad_layout.npz", "diffraction_layout", "'nNN' or 'NNn'")
def npz_bad_layout(d: Path) -> dict[str, Path]:
    """diffraction_layout names no known layout."""
    arrays = valid_arrays()
    arrays["diffraction_layout"] = np.array("NnN")
    return {"data": save_npz(d / "npz_bad_layout.npz", arrays)}


@case("npz", DataError, "npz_metres.npz", "all lie within", "--position-unit m --pixel-size")
def npz_metres(d: Path) -> dict[str, Path]:
    """Positions in metres in a file that does not say so (issue 18: once a silently stacked image)."""
    arrays = valid_arrays()
    arrays.pop("objectGuess")
    arrays["xcoords"] = arrays["xcoords"] * 1e-8
    arrays["ycoords"] = arrays["ycoords"] * 1e-8
    return {"data": save_npz(d / "npz_metres.npz", arrays)}


@case("npz", DataError, "npz_metres_no_pixel_size.npz", "in metres", "pixel_size_m", "--pixel-size")
def npz_metres_no_pixel_size(d: Path) -> dict[str, Path]:
    """position_unit 'm' without a pixel size to convert with."""
    arrays = valid_arrays()
    arrays["position_unit"] = np.array("m")
    return {"data": save_npz(d / "npz_metres_no_pixel_size.npz", arrays)}


# ---------------------------------------------------------------- Ptychodus HDF5 products

@case("hdf5", DataError, "h5_truncated.h5", "not a readable HDF5", requires=("h5py",))
def h5_truncated(d: Path) -> dict[str, Path]:
    """A product cut to its first 1000 bytes."""
    path = write_product(d / "h5_truncated.h5")
    path.write_bytes(path.read_bytes()[:1000])
    return {"product": path, "patterns": write_patterns_npz(d / "h5_truncated_patterns.npz")}


@case("hdf5", DataError, "h5_missing_object.h5", ":/object", "missing HDF5 dataset", requires=("h5py",))
def h5_missing_object(d: Path) -> dict[str, Path]:
    """No /object dataset."""
    return {"product": write_product(d / "h5_missing_object.h5", drop=("object",)),
            "patterns": write_patterns_npz(d / "h5_missing_object_patterns.npz")}


@case("hdf5", DataError, "h5_missing_pixel_size.h5", "/object@pixel_width_m", "missing", requires=("h5py",))
def h5_missing_pixel_size(d: Path) -> dict[str, Path]:
    """/object lacks its pixel_width_m attribute."""
    return {"product": write_product(d / "h5_missing_pixel_size.h5", object_attrs={"pixel_width_m": None}),
            "patterns": write_patterns_npz(d / "h5_missing_pixel_size_patterns.npz")}


@case("hdf5", DataError, "h5_negative_pixel.h5", "/object@pixel_height_m", "positive", requires=("h5py",))
def h5_negative_pixel(d: Path) -> dict[str, Path]:
    """A negative pixel height."""
    return {"product": write_product(d / "h5_negative_pixel.h5", object_attrs={"pixel_height_m": -PIXEL_M}),
            "patterns": write_patterns_npz(d / "h5_negative_pixel_patterns.npz")}


@case("hdf5", DataError, "h5_nan_center.h5", "/object@center_x_m", "finite", requires=("h5py",))
def h5_nan_center(d: Path) -> dict[str, Path]:
    """A NaN object centre."""
    return {"product": write_product(d / "h5_nan_center.h5", object_attrs={"center_x_m": float("nan")}),
            "patterns": write_patterns_npz(d / "h5_nan_center_patterns.npz")}


@case("hdf5", DataError, "h5_position_lengths.h5", "/probe_position_y_m", "expected shape", requires=("h5py",))
def h5_position_lengths(d: Path) -> dict[str, Path]:
    """Three y positions for four x positions."""
    y_m = np.zeros(N_POS - 1)
    return {"product": write_product(d / "h5_position_lengths.h5", y_m=y_m),
            "patterns": write_patterns_npz(d / "h5_position_lengths_patterns.npz")}


@case("hdf5", DataError, "h5_string_positions.h5", "/probe_position_x_m", "numeric", requires=("h5py",))
def h5_string_positions(d: Path) -> dict[str, Path]:
    """x positions stored as byte strings."""
    x_m = np.array([b"0.1", b"0.2", b"0.3", b"0.4"])
    return {"product": write_product(d / "h5_string_positions.h5", x_m=x_m),
            "patterns": write_patterns_npz(d / "h5_string_positions_patterns.npz")}


@case("hdf5", DataError, "h5_positions_outside.h5", "/probe_position_x_m", "outside", requires=("h5py",))
def h5_positions_outside(d: Path) -> dict[str, Path]:
    """Positions written in micrometres instead of metres: far outside the object."""
    px = np.linspace(50.0, 78.0, N_POS)
    x_m = (px - (OBJECT_SIDE - 1) / 2) * PIXEL_M * 1e6
    return {"product": write_product(d / "h5_positions_outside.h5", x_m=x_m),
            "patterns": write_patterns_npz(d / "h5_positions_outside_patterns.npz")}


@case("hdf5", DataError, "h5_no_patterns.npz", "missing diffraction patterns", requires=("h5py",))
def h5_no_patterns(d: Path) -> dict[str, Path]:
    """The pattern file holds no 'diffraction', 'patterns' or 'data' key."""
    return {"product": write_product(d / "h5_no_patterns_product.h5"),
            "patterns": write_patterns_npz(d / "h5_no_patterns.npz", frames=np.ones((N_POS, N, N), np.float32))}


@case("hdf5", DataError, "h5_negative_intensities.h5", ":/patterns", "intensities must be finite and >= 0",
      requires=("h5py",))
def h5_negative_intensities(d: Path) -> dict[str, Path]:
    """Ptychodus-style intensities with negative values."""
    import h5py

    patterns = d / "h5_negative_intensities.h5"
    with h5py.File(patterns, "w") as f:
        f.create_dataset("patterns", data=np.full((N_POS, N, N), -1.0, dtype=np.float32))
    return {"product": write_product(d / "h5_negative_intensities_product.h5"), "patterns": patterns}


@case("hdf5", DataError, "h5_unmatched_indexes.npz", "indexes", "probe_position_indexes", requires=("h5py",))
def h5_unmatched_indexes(d: Path) -> dict[str, Path]:
    """Pattern indexes that do not include the product's position indexes."""
    patterns = write_patterns_npz(d / "h5_unmatched_indexes.npz",
                                  diffraction=np.full((N_POS, N, N), 0.5, dtype=np.float32),
                                  indexes=np.arange(10, 10 + N_POS, dtype=np.int64))
    return {"product": write_product(d / "h5_unmatched_indexes_product.h5"), "patterns": patterns}


# ---------------------------------------------------------------- configuration files

def _text(d: Path, name: str, text: str | bytes) -> dict[str, Path]:
    path = d / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return {"config": path}


@case("config", ConfigError, "cfg_unknown_key.toml", "'nepoch'", "did you mean 'nepochs'")
def cfg_unknown_key(d: Path) -> dict[str, Path]:
    """A misspelled training key."""
    return _text(d, "cfg_unknown_key.toml", "nepoch = 3\nbatch_size = 4\n")


@case("config", ConfigError, "cfg_unknown_model_key.yaml", "'filters'")
def cfg_unknown_model_key(d: Path) -> dict[str, Path]:
    """An unknown key inside the model table."""
    return _text(d, "cfg_unknown_model_key.yaml", "model:\n  N: 64\n  filters: 32\nnepochs: 2\n")


@case("config", ConfigError, "cfg_wrong_type.json", "batch_size", "expected an integer", "'abc'")
def cfg_wrong_type(d: Path) -> dict[str, Path]:
    """A string where an integer is expected."""
    return _text(d, "cfg_wrong_type.json", json.dumps({"batch_size": "abc", "nepochs": 2}))


@case("config", ConfigError, "cfg_bool_type.toml", "probe_big", "true or false")
def cfg_bool_type(d: Path) -> dict[str, Path]:
    """The string "yes" for a boolean."""
    return _text(d, "cfg_bool_type.toml", '[model]\nprobe_big = "yes"\n')


@case("config", ConfigError, "cfg_bad_n.yaml", "ModelConfig.N", "100")
def cfg_bad_n(d: Path) -> dict[str, Path]:
    """N not in (64, 128, 256)."""
    return _text(d, "cfg_bad_n.yaml", "model:\n  N: 100\n")


@case("config", ConfigError, "cfg_negative_lr.toml", "learning_rate", "> 0.0")
def cfg_negative_lr(d: Path) -> dict[str, Path]:
    """A negative learning rate."""
    return _text(d, "cfg_negative_lr.toml", "learning_rate = -0.01\n")


@case("config", ConfigError, "cfg_unknown_backend.json", "backend", "'pytorh'", "did you mean 'pytorch'")
def cfg_unknown_backend(d: Path) -> dict[str, Path]:
    """A misspelled backend id."""
    return _text(d, "cfg_unknown_backend.json", json.dumps({"backend": "pytorh"}))


@case("config", ConfigError, "cfg_malformed.toml", "malformed TOML")
def cfg_malformed(d: Path) -> dict[str, Path]:
    """TOML cut off in the middle of a table header."""
    return _text(d, "cfg_malformed.toml", "nepochs = 2\n[model\nN = 64\n")


@case("config", ConfigError, "cfg_top_level_list.json", "top level", "list")
def cfg_top_level_list(d: Path) -> dict[str, Path]:
    """A JSON list instead of an object."""
    return _text(d, "cfg_top_level_list.json", "[1, 2, 3]\n")


@case("config", ConfigError, "cfg_python_tag.yaml", "malformed YAML", "python/object")
def cfg_python_tag(d: Path) -> dict[str, Path]:
    """A YAML python/object tag (code execution with an unsafe loader)."""
    return _text(d, "cfg_python_tag.yaml", "nepochs: !!python/object/apply:os.system ['echo pwned']\n")


@case("config", ConfigError, "cfg_unknown_section.toml", "'infernce'", "did you mean 'inference'")
def cfg_unknown_section(d: Path) -> dict[str, Path]:
    """A misspelled section name next to [training]."""
    return _text(d, "cfg_unknown_section.toml", "[training]\nnepochs = 2\n[infernce]\nstitch_crop = 10\n")


@case("config", ConfigError, "cfg_not_utf8.toml", "cannot read config file")
def cfg_not_utf8(d: Path) -> dict[str, Path]:
    """Latin-1 bytes that are not UTF-8."""
    return _text(d, "cfg_not_utf8.toml", b"output_dir = '/tmp/r\xe9sultats'\n")


@case("config", ConfigError, "cfg_suffix.ini", "unknown config file type", "'.ini'")
def cfg_suffix(d: Path) -> dict[str, Path]:
    """A config with an unsupported suffix."""
    return _text(d, "cfg_suffix.ini", "[training]\nnepochs = 2\n")


@case("config", ConfigError, "cfg_inf_value.json", "nphotons", "finite")
def cfg_inf_value(d: Path) -> dict[str, Path]:
    """JSON Infinity for nphotons."""
    return _text(d, "cfg_inf_value.json", '{"nphotons": Infinity}\n')


# ---------------------------------------------------------------- model bundles

@case("bundle", BundleError, "bundle_missing_weights", "model.ckpt", "missing")
def bundle_missing_weights(d: Path) -> dict[str, Path]:
    """The manifest lists model.ckpt but the file is absent."""
    files = bundle_files()
    del files["model.ckpt"]
    return {"bundle": write_bundle_dir(d / "bundle_missing_weights", files), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_extra_file", "run_me.py", "not listed")
def bundle_extra_file(d: Path) -> dict[str, Path]:
    """A file the manifest does not list."""
    files = bundle_files()
    files["run_me.py"] = b"import os\n"
    return {"bundle": write_bundle_dir(d / "bundle_extra_file", files), "data": valid_dataset_file(d)}


@case("bundle", BundleIntegrityError, "bundle_tampered_weights", "sha256 of model.ckpt")
def bundle_tampered_weights(d: Path) -> dict[str, Path]:
    """Weights changed after the manifest was written."""
    files = bundle_files()
    files["model.ckpt"] = WEIGHTS.replace(b"fake", b"evil")
    return {"bundle": write_bundle_dir(d / "bundle_tampered_weights", files), "data": valid_dataset_file(d)}


@case("bundle", BundleIntegrityError, "bundle_tampered_config", "sha256 of config.json")
def bundle_tampered_config(d: Path) -> dict[str, Path]:
    """config.json edited after the manifest was written."""
    files = bundle_files()
    files["config.json"] = json.dumps({"model": {"N": 128}}).encode()
    return {"bundle": write_bundle_dir(d / "bundle_tampered_config", files), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_no_manifest", "missing manifest")
def bundle_no_manifest(d: Path) -> dict[str, Path]:
    """A directory with weights and config but no manifest.json."""
    files = bundle_files()
    del files["manifest.json"]
    return {"bundle": write_bundle_dir(d / "bundle_no_manifest", files), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_bad_manifest", "manifest.json", "not valid JSON")
def bundle_bad_manifest(d: Path) -> dict[str, Path]:
    """manifest.json that is not JSON."""
    files = bundle_files()
    files["manifest.json"] = b'{"format": "ptycho-bundle", '
    return {"bundle": write_bundle_dir(d / "bundle_bad_manifest", files), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_future_version", "format_version", "99")
def bundle_future_version(d: Path) -> dict[str, Path]:
    """A manifest format version this ptycho-core does not know."""
    files = bundle_files()
    manifest = _manifest(files)
    manifest["format_version"] = 99
    files["manifest.json"] = json.dumps(manifest).encode()
    return {"bundle": write_bundle_dir(d / "bundle_future_version", files), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_traversal.zip", "'../evil.txt'", "escapes the bundle")
def bundle_traversal(d: Path) -> dict[str, Path]:
    """A zip bundle with a member '../evil.txt' (path traversal)."""
    members = {**bundle_files(), "../evil.txt": b"written outside the extraction directory\n"}
    return {"bundle": save_zip(d / "bundle_traversal.zip", members), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_absolute.zip", "'/tmp/ptycho_corpus_evil.txt'", "absolute path")
def bundle_absolute(d: Path) -> dict[str, Path]:
    """A zip bundle with an absolute member name."""
    members = {**bundle_files(), "/tmp/ptycho_corpus_evil.txt": b"absolute\n"}
    return {"bundle": save_zip(d / "bundle_absolute.zip", members), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_drive.zip", "'C:/evil.txt'", "absolute path")
def bundle_drive(d: Path) -> dict[str, Path]:
    """A zip bundle with a Windows drive member name."""
    members = {**bundle_files(), "C:/evil.txt": b"drive\n"}
    return {"bundle": save_zip(d / "bundle_drive.zip", members), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_nested.zip", "'weights/model.ckpt'", "nested")
def bundle_nested(d: Path) -> dict[str, Path]:
    """A zip bundle with a member in a sub-folder."""
    files = bundle_files()
    members = {"manifest.json": files["manifest.json"], "config.json": files["config.json"],
               "weights/model.ckpt": files["model.ckpt"]}
    return {"bundle": save_zip(d / "bundle_nested.zip", members), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_truncated.zip", "not a readable zip bundle")
def bundle_truncated(d: Path) -> dict[str, Path]:
    """A zip bundle cut in half."""
    path = save_zip(d / "bundle_truncated.zip", bundle_files())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return {"bundle": path, "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_corrupt_member.zip", "'model.ckpt'", "corrupt")
def bundle_corrupt_member(d: Path) -> dict[str, Path]:
    """A deflated zip bundle whose model.ckpt member holds an invalid deflate stream."""
    path = d / "bundle_corrupt_member.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in bundle_files().items():
            zf.writestr(name, data)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("model.ckpt")
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start:start + info.compress_size] = b"\xff" * info.compress_size  # deflate block type 3: invalid
    path.write_bytes(bytes(raw))
    return {"bundle": path, "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_manifest_list.zip", "manifest.json", "JSON object")
def bundle_manifest_list(d: Path) -> dict[str, Path]:
    """A zip bundle whose manifest.json is a JSON list."""
    members = {**bundle_files(), "manifest.json": b"[1, 2, 3]"}
    return {"bundle": save_zip(d / "bundle_manifest_list.zip", members), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "bundle_manifest_traversal", "../outside.bin")
def bundle_manifest_traversal(d: Path) -> dict[str, Path]:
    """manifest.json lists '../outside.bin' (a file outside the bundle) with its real sha256."""
    outside = b"a file next to the bundle\n"
    (d / "outside.bin").write_bytes(outside)
    files = bundle_files()
    manifest = _manifest(files)
    manifest["files"]["../outside.bin"] = _sha256(outside)
    files["manifest.json"] = json.dumps(manifest).encode()
    return {"bundle": write_bundle_dir(d / "bundle_manifest_traversal", files), "data": valid_dataset_file(d)}


@case("bundle", BundleError, "no_such_bundle", "no such bundle")
def no_such_bundle(d: Path) -> dict[str, Path]:
    """A model path that does not exist."""
    return {"bundle": d / "no_such_bundle", "data": valid_dataset_file(d)}


# ---------------------------------------------------------------- reconstructions for `ptycho evaluate`

def _truth(d: Path) -> Path:
    return valid_dataset_file(d, "truth.npz")


@case("evaluate", DataError, "rec_truncated.npz", "truncated")
def rec_truncated(d: Path) -> dict[str, Path]:
    """A reconstruction.npz cut in half."""
    path = save_npz(d / "rec_truncated.npz", {"object": np.ones((OBJECT_SIDE, OBJECT_SIDE), np.complex64)})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return {"reconstruction": path, "truth": _truth(d)}


@case("evaluate", DataError, "rec_missing_object.npz", "'object'", "missing")
def rec_missing_object(d: Path) -> dict[str, Path]:
    """A reconstruction without the 'object' key."""
    path = save_npz(d / "rec_missing_object.npz", {"amplitude": np.ones((OBJECT_SIDE, OBJECT_SIDE), np.float32)})
    return {"reconstruction": path, "truth": _truth(d)}


@case("evaluate", DataError, "rec_pickled_object.npz", "'object'", "pickle")
def rec_pickled_object(d: Path) -> dict[str, Path]:
    """The reconstruction's 'object' is a pickled object array."""
    path = save_npz(d / "rec_pickled_object.npz", {"object": np.array([{"a": 1}, None], dtype=object)})
    return {"reconstruction": path, "truth": _truth(d)}


@case("evaluate", DataError, "rec_huge_header.npz", "'object'", "declared shape")
def rec_huge_header(d: Path) -> dict[str, Path]:
    """The 'object' header declares a (10^7, 10^7) complex64 image over 16 bytes."""
    header = {"descr": "<c8", "fortran_order": False, "shape": (10**7, 10**7)}
    path = save_zip(d / "rec_huge_header.npz", {"object.npy": npy_bytes(header, b"\0" * 16)})
    return {"reconstruction": path, "truth": _truth(d)}


@case("evaluate", DataError, "rec_shape.npz", "differs from ground truth")
def rec_shape(d: Path) -> dict[str, Path]:
    """A reconstruction of another shape than the ground truth."""
    path = save_npz(d / "rec_shape.npz", {"object": np.ones((OBJECT_SIDE, 100), np.complex64)})
    return {"reconstruction": path, "truth": _truth(d)}


@case("evaluate", DataError, "rec_nan.npz", "reconstruction", "NaN")
def rec_nan(d: Path) -> dict[str, Path]:
    """NaN pixels in the reconstruction."""
    obj = np.ones((OBJECT_SIDE, OBJECT_SIDE), np.complex64)
    obj[60:70, 60:70] = np.nan
    return {"reconstruction": save_npz(d / "rec_nan.npz", {"object": obj}), "truth": _truth(d)}


@case("evaluate", DataError, "rec_string_object.npz", "'object'", "dtype")
def rec_string_object(d: Path) -> dict[str, Path]:
    """The reconstruction's 'object' holds strings."""
    path = save_npz(d / "rec_string_object.npz", {"object": np.full((OBJECT_SIDE, OBJECT_SIDE), "x")})
    return {"reconstruction": path, "truth": _truth(d)}


@case("evaluate", DataError, "truth_no_object.npz", "no objectGuess")
def truth_no_object(d: Path) -> dict[str, Path]:
    """Ground truth without objectGuess."""
    arrays = valid_arrays()
    del arrays["objectGuess"]
    rec = save_npz(d / "rec_ok.npz", {"object": np.ones((OBJECT_SIDE, OBJECT_SIDE), np.complex64)})
    return {"reconstruction": rec, "truth": save_npz(d / "truth_no_object.npz", arrays)}


# ---------------------------------------------------------------- writing the corpus

def write_case(name: str, directory: Path) -> dict[str, Path]:
    """Write case ``name`` into ``directory`` (created if needed); return its paths by role."""
    directory.mkdir(parents=True, exist_ok=True)
    return CASES[name].write(directory)


def write_corpus(out: Path, names: list[str] | None = None) -> dict[str, dict[str, Path] | str]:
    """Write every case (or ``names``) into ``out/<case>/``; skipped cases map to the reason."""
    written: dict[str, dict[str, Path] | str] = {}
    for name in names or list(CASES):
        missing = CASES[name].missing_requirements()
        if missing:
            written[name] = f"skipped: needs {', '.join(missing)}"
            continue
        written[name] = write_case(name, out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python tests/corpus/corpus_cases.py OUTDIR [--case NAME ...]``: write the corpus."""
    parser = argparse.ArgumentParser(description="Write the malformed-input corpus of ptycho's loaders.")
    parser.add_argument("outdir", type=Path, help="directory to write OUTDIR/<case>/ into")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="write only this case (repeatable)")
    args = parser.parse_args(argv)
    if args.outdir.exists() and any(args.outdir.iterdir()):
        parser.error(f"{args.outdir}: exists and is not empty")
    for name, result in write_corpus(args.outdir, args.case).items():
        c = CASES[name]
        if isinstance(result, str):
            print(f"{name:<28} {result}")
            continue
        files = ", ".join(f"{role}={path.relative_to(args.outdir)}" for role, path in result.items())
        print(f"{name:<28} {c.kind:<8} {c.error.__name__:<21} {files}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
