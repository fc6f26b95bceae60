"""Fuzzing :func:`ptycho_data.npz.load_dataset`: whatever the bytes, only a DataError (or a Dataset) comes out."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptycho_core.contracts import Dataset
from ptycho_core.errors import DataError
from ptycho_data.npz import load_dataset

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ["diffraction", "diff3d", "xcoords", "ycoords", "probeGuess", "objectGuess", "scan_index",
        "xcoords_start", "ycoords_start", "diffraction_layout"]


def _valid_bytes() -> bytes:
    buf = io.BytesIO()
    coords = np.linspace(10.0, 40.0, 4)
    np.savez(buf, diffraction=np.full((4, 64, 64), 0.5, np.float32), xcoords=coords, ycoords=coords[::-1].copy(),
             probeGuess=np.ones((64, 64), np.complex64), objectGuess=np.ones((64, 64), np.complex64),
             scan_index=np.zeros(4, np.int64), diffraction_layout=np.array("nNN"))
    return buf.getvalue()


VALID = _valid_bytes()


def _load(data: bytes, intensities: bool | None = None) -> Dataset | None:
    """Write ``data`` to a file and load it; a DataError is fine, any other exception fails the test."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.npz"
        path.write_bytes(data)
        try:
            dataset = load_dataset(path, intensities=intensities, max_array_bytes=64 * 2**20)
        except DataError as exc:
            assert str(path) in str(exc), f"message does not name the file: {exc}"
            return None
    assert isinstance(dataset, Dataset)
    return dataset


def test_valid_base_file_loads() -> None:
    dataset = _load(VALID)
    assert dataset is not None and dataset.n == 4 and dataset.N == 64


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _load(data)


@FUZZ
@given(st.binary(min_size=1, max_size=4096).map(lambda b: b"PK\x03\x04" + b))
def test_random_bytes_with_zip_magic(data: bytes) -> None:
    _load(data)


OPS = st.lists(st.tuples(st.sampled_from(["flip", "truncate", "insert", "delete"]), st.floats(0.0, 1.0),
                         st.integers(1, 255), st.binary(min_size=1, max_size=16)), min_size=1, max_size=8)


def mutate(data: bytes, ops: list[tuple[str, float, int, bytes]]) -> bytes:
    """Apply byte-level edits (position given as a fraction of the current length)."""
    out = bytearray(data)
    for op, where, value, insert in ops:
        pos = min(int(where * len(out)), max(len(out) - 1, 0))
        if op == "flip" and out:
            out[pos] ^= value
        elif op == "truncate":
            del out[pos:]
        elif op == "insert":
            out[pos:pos] = insert
        elif op == "delete":
            del out[pos:pos + value]
    return bytes(out)


@FUZZ
@given(OPS, st.sampled_from([None, True, False]))
def test_mutated_valid_file(ops: list, intensities: bool | None) -> None:
    _load(mutate(VALID, ops), intensities)


HEADER_CHARS = list(b"0123456789(),' <>|fciuObSUV?:{}")
HEADER_EDITS = st.lists(st.tuples(st.integers(0, 6), st.integers(8, 127), st.sampled_from(HEADER_CHARS)),
                        min_size=1, max_size=6)


def mutate_headers(edits: list[tuple[int, int, int]]) -> bytes:
    """The valid file with single characters replaced inside the .npy headers (dtype, shape, order)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(VALID)) as src, zipfile.ZipFile(out, "w") as dst:
        for index, info in enumerate(src.infolist()):
            member = bytearray(src.read(info))
            for target, pos, char in edits:
                if target == index and pos < len(member):
                    member[pos] = char
            dst.writestr(info.filename, bytes(member))
    return out.getvalue()


@FUZZ
@given(HEADER_EDITS)
def test_mutated_npy_headers(edits: list[tuple[int, int, int]]) -> None:
    _load(mutate_headers(edits))


def test_mangled_header_token_error_is_data_error() -> None:
    # found by test_mutated_npy_headers: an unclosed bracket made numpy's header parser raise tokenize.TokenError
    assert _load(mutate_headers([(0, 80, ord("("))])) is None


DTYPES = st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(max_len=4), hnp.unicode_string_dtypes(max_len=4))


@st.composite
def random_arrays(draw: st.DrawFn) -> dict[str, np.ndarray]:
    keys = draw(st.lists(st.one_of(st.sampled_from(KEYS), st.text("abcxyz_", min_size=1, max_size=6)),
                         min_size=1, max_size=8, unique=True))
    arrays = {}
    for key in keys:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
        if key in ("diffraction", "diff3d") and draw(st.booleans()):
            shape = (draw(st.integers(0, 4)), 64, 64)
        dtype = draw(DTYPES)
        arrays[key] = draw(hnp.arrays(dtype, shape))
    return arrays


@FUZZ
@given(random_arrays(), st.sampled_from([None, True, False]))
def test_random_arrays_dtypes_and_shapes(arrays: dict[str, np.ndarray], intensities: bool | None) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _load(buf.getvalue(), intensities)


@FUZZ
@given(st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats()), min_size=1, max_size=4),
       st.sampled_from(["xcoords", "probeGuess", "diffraction"]))
def test_object_arrays_never_unpickled(values: list, key: str) -> None:
    buf = io.BytesIO()
    arrays = {"diffraction": np.full((4, 64, 64), 0.5, np.float32), "xcoords": np.arange(4.0),
              "ycoords": np.arange(4.0), "probeGuess": np.ones((64, 64), np.complex64)}
    obj = np.empty(len(values), dtype=object)
    obj[:] = values
    arrays[key] = obj
    np.savez(buf, **arrays)
    assert _load(buf.getvalue()) is None
