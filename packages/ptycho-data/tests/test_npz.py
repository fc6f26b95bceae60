"""NPZ I/O: round trips, legacy conversions and one test per malformed-input case."""

from __future__ import annotations

import io
import logging
import zipfile

import numpy as np
import pytest

from ptycho_core.contracts import Dataset
from ptycho_core.errors import DataError
from ptycho_data import npz
from ptycho_data.npz import load_dataset, looks_like_intensities, save_dataset

N = 64


def make_dataset(n: int = 16, seed: int = 0, with_object: bool = True) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        diffraction=rng.random((n, N, N), dtype=np.float32) * 3,
        xcoords=rng.uniform(40, 90, n),
        ycoords=rng.uniform(40, 90, n),
        probe=(rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))).astype(np.complex64),
        object=np.exp(1j * rng.random((140, 150))).astype(np.complex64) if with_object else None,
        scan_index=np.arange(n) % 2,
        xcoords_start=np.arange(n, dtype=np.float64),
        ycoords_start=np.arange(n, dtype=np.float64) * 2,
    )


def raw_arrays(ds: Dataset, **changes) -> dict:
    arrays = dict(npz.dataset_arrays(ds))
    arrays.pop(npz.LAYOUT_KEY)  # files from elsewhere do not name their layout
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def expect_error(path, *words):
    """Load ``path`` expecting a DataError naming the file and every word."""
    with pytest.raises(DataError) as info:
        load_dataset(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def test_round_trip_identical_arrays_and_dtypes(tmp_path):
    ds = make_dataset()
    path = save_dataset(ds, tmp_path / "data.npz")
    back = load_dataset(path)
    for key, arr in npz.dataset_arrays(ds).items():
        loaded = npz.dataset_arrays(back)[key]
        assert loaded.dtype == arr.dtype, key
        np.testing.assert_array_equal(loaded, arr)
    assert back.metadata["source"] == str(path)
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(npz.dataset_arrays(ds))


def test_optional_keys_default(tmp_path):
    ds = make_dataset(with_object=False)
    np.savez(tmp_path / "min.npz", diffraction=ds.diffraction, xcoords=ds.xcoords, ycoords=ds.ycoords,
             probeGuess=ds.probe)
    back = load_dataset(tmp_path / "min.npz")
    assert back.object is None
    np.testing.assert_array_equal(back.scan_index, np.zeros(ds.n, dtype=np.int64))
    np.testing.assert_array_equal(back.xcoords_start, ds.xcoords)
    np.testing.assert_array_equal(back.ycoords_start, ds.ycoords)


def test_save_is_deterministic(tmp_path):
    ds = make_dataset()
    a = save_dataset(ds, tmp_path / "a.npz").read_bytes()
    b = save_dataset(ds, tmp_path / "b.npz").read_bytes()
    assert a == b


def test_legacy_diff3d_is_logged(tmp_path, caplog):
    ds = make_dataset()
    np.savez(tmp_path / "legacy.npz", **raw_arrays(ds, diffraction=None, diff3d=ds.diffraction))
    with caplog.at_level(logging.INFO, logger="ptycho_data.npz"):
        back = load_dataset(tmp_path / "legacy.npz")
    np.testing.assert_array_equal(back.diffraction, ds.diffraction)
    assert any("diff3d" in r.getMessage() and r.name == "ptycho_data.npz" for r in caplog.records)


def test_legacy_nn_n_layout_is_transposed_and_logged(tmp_path, caplog):
    ds = make_dataset(n=20)
    np.savez(tmp_path / "t.npz", **raw_arrays(ds, diffraction=np.transpose(ds.diffraction, (1, 2, 0))))
    with caplog.at_level(logging.INFO, logger="ptycho_data.npz"):
        back = load_dataset(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.diffraction, ds.diffraction)
    assert any("transposed" in r.getMessage() for r in caplog.records)


def test_float64_and_complex128_downcast_logged(tmp_path, caplog):
    ds = make_dataset()
    np.savez(tmp_path / "f64.npz", **raw_arrays(ds, diffraction=ds.diffraction.astype(np.float64),
                                                probeGuess=ds.probe.astype(np.complex128)))
    with caplog.at_level(logging.INFO, logger="ptycho_data.npz"):
        back = load_dataset(tmp_path / "f64.npz")
    assert back.diffraction.dtype == np.float32 and back.probe.dtype == np.complex64
    np.testing.assert_array_equal(back.diffraction, ds.diffraction)
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "'diffraction' cast float64 -> float32" in messages
    assert "'probeGuess' cast complex128 -> complex64" in messages


def test_real_probe_converted_with_log(tmp_path, caplog):
    ds = make_dataset()
    np.savez(tmp_path / "p.npz", **raw_arrays(ds, probeGuess=np.abs(ds.probe)))
    with caplog.at_level(logging.INFO, logger="ptycho_data.npz"):
        back = load_dataset(tmp_path / "p.npz")
    assert back.probe.dtype == np.complex64
    assert any("converted to complex64" in r.getMessage() for r in caplog.records)


def test_ambiguous_layout_is_an_error(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "amb.npz", diffraction=rng.random((64, 64, 64), dtype=np.float32),
             xcoords=np.arange(64.0), ycoords=np.arange(64.0), probeGuess=np.ones((64, 64), np.complex64))
    expect_error(tmp_path / "amb.npz", "'diffraction'", "ambiguous", "diffraction_layout")


@pytest.mark.parametrize("layout", ["nNN", "NNn"])
def test_declared_layout_resolves_ambiguity(tmp_path, layout):
    rng = np.random.default_rng(2)
    stack = rng.random((64, 64, 64), dtype=np.float32)
    np.savez(tmp_path / "d.npz", diffraction=stack, xcoords=np.arange(64.0), ycoords=np.arange(64.0),
             probeGuess=np.ones((64, 64), np.complex64), diffraction_layout=np.array(layout))
    back = load_dataset(tmp_path / "d.npz", intensities=False)
    expected = stack if layout == "nNN" else np.transpose(stack, (2, 0, 1))
    np.testing.assert_array_equal(back.diffraction, expected)


def test_saved_square_stack_reloads(tmp_path):
    """ptycho's writer names the layout, so n == N round-trips."""
    rng = np.random.default_rng(3)
    n = 64
    ds = Dataset(diffraction=rng.random((n, n, n), dtype=np.float32), xcoords=np.arange(n, dtype=float),
                 ycoords=np.zeros(n), probe=np.ones((n, n), np.complex64))
    save_dataset(ds, tmp_path / "sq.npz")
    np.testing.assert_array_equal(load_dataset(tmp_path / "sq.npz", intensities=False).diffraction, ds.diffraction)


@pytest.mark.parametrize("value, message", [(np.array("xyz"), "expected a string scalar"),
                                            (np.array("NNn"), "does not fit the declared")])
def test_bad_declared_layout(tmp_path, value, message):
    ds = make_dataset()
    np.savez(tmp_path / "b.npz", **raw_arrays(ds, diffraction_layout=value))
    expect_error(tmp_path / "b.npz", "diffraction_layout", message)


@pytest.mark.parametrize("key", ["xcoords", "ycoords", "probeGuess"])
def test_missing_required_key(tmp_path, key):
    np.savez(tmp_path / "m.npz", **raw_arrays(make_dataset(), **{key: None}))
    expect_error(tmp_path / "m.npz", f"missing required key '{key}'")


def test_missing_diffraction(tmp_path):
    np.savez(tmp_path / "m.npz", **raw_arrays(make_dataset(), diffraction=None))
    expect_error(tmp_path / "m.npz", "'diffraction'", "diff3d", "missing")


def test_length_mismatch_patterns_vs_coordinates(tmp_path):
    ds = make_dataset(n=16)
    np.savez(tmp_path / "l.npz", **raw_arrays(ds, xcoords=np.arange(10.0), ycoords=np.arange(10.0)))
    expect_error(tmp_path / "l.npz", "'diffraction'", "length mismatch", "n=10")


def test_ycoords_length_differs(tmp_path):
    ds = make_dataset(n=16)
    np.savez(tmp_path / "y.npz", **raw_arrays(ds, ycoords=np.arange(15.0)))
    expect_error(tmp_path / "y.npz", "'ycoords'", "16")


def test_optional_key_length_mismatch(tmp_path):
    np.savez(tmp_path / "s.npz", **raw_arrays(make_dataset(n=16), scan_index=np.zeros(3, np.int64)))
    expect_error(tmp_path / "s.npz", "scan_index", "expected length 16")


def test_non_square_patterns(tmp_path):
    ds = make_dataset(n=16)
    np.savez(tmp_path / "ns.npz", **raw_arrays(ds, diffraction=ds.diffraction[:, :, :32]))
    expect_error(tmp_path / "ns.npz", "'diffraction'", "square")


def test_wrong_pattern_side(tmp_path):
    ds = make_dataset(n=16)
    np.savez(tmp_path / "n.npz", **raw_arrays(ds, diffraction=ds.diffraction[:, :32, :32],
                                              probeGuess=ds.probe[:32, :32]))
    expect_error(tmp_path / "n.npz", "diffraction", "(64, 128, 256)")


def test_probe_wrong_shape(tmp_path):
    ds = make_dataset()
    np.savez(tmp_path / "pr.npz", **raw_arrays(ds, probeGuess=np.ones((32, 32), np.complex64)))
    expect_error(tmp_path / "pr.npz", "probeGuess", "(64, 64)")


@pytest.mark.parametrize("key", ["diffraction", "xcoords", "probeGuess", "objectGuess"])
def test_non_finite_values(tmp_path, key):
    arrays = raw_arrays(make_dataset())
    bad = arrays[key].copy()
    bad.flat[3] = np.nan if key != "xcoords" else np.inf
    arrays[key] = bad
    np.savez(tmp_path / "nan.npz", **arrays)
    expect_error(tmp_path / "nan.npz", key, "NaN or infinite")


def test_negative_amplitudes(tmp_path):
    ds = make_dataset()
    diff = ds.diffraction.copy()
    diff[2, 5, 5] = -0.5
    np.savez(tmp_path / "neg.npz", **raw_arrays(ds, diffraction=diff))
    expect_error(tmp_path / "neg.npz", "diffraction", ">= 0")


def test_non_integer_scan_index(tmp_path):
    np.savez(tmp_path / "si.npz", **raw_arrays(make_dataset(), scan_index=np.full(16, 0.5)))
    expect_error(tmp_path / "si.npz", "'scan_index'", "integer")


def test_complex_diffraction(tmp_path):
    ds = make_dataset()
    np.savez(tmp_path / "c.npz", **raw_arrays(ds, diffraction=ds.diffraction.astype(np.complex64)))
    expect_error(tmp_path / "c.npz", "'diffraction'", "complex")


def _counts(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r2 = np.sum((np.indices((N, N)) - N / 2) ** 2, axis=0)
    return rng.poisson(5e4 * np.exp(-r2 / 20.0) + 0.5, size=(16, N, N)).astype(np.float32)


def test_intensities_detected(tmp_path, caplog):
    ds, counts = make_dataset(), _counts()
    np.savez(tmp_path / "i.npz", **raw_arrays(ds, diffraction=counts))
    with caplog.at_level(logging.INFO, logger="ptycho_data.npz"):
        back = load_dataset(tmp_path / "i.npz")
    np.testing.assert_allclose(back.diffraction, np.sqrt(counts), rtol=1e-6)
    assert back.metadata["intensities"] is True and back.metadata["max_count"] == int(counts.max())
    said = [r for r in caplog.records
            if r.levelno == logging.WARNING and "assumed to hold intensities" in r.getMessage()]
    assert said and "--no-intensities" in said[0].getMessage() and "i.npz" in said[0].getMessage()


def test_amplitudes_logged_as_assumed(tmp_path, caplog):
    np.savez(tmp_path / "a.npz", **raw_arrays(make_dataset()))
    with caplog.at_level(logging.INFO, logger="ptycho_data.npz"):
        assert load_dataset(tmp_path / "a.npz").metadata["intensities"] is False
    assert any("read as amplitudes" in r.getMessage() and "--intensities" in r.getMessage() for r in caplog.records)


def test_negative_intensities_clipped_with_warning(tmp_path):
    counts = _counts()
    counts[0, 0, :3] = -2.0
    np.savez(tmp_path / "neg.npz", **raw_arrays(make_dataset(), diffraction=counts))
    back = load_dataset(tmp_path / "neg.npz", intensities=True)
    assert back.diffraction[0, 0, :3].tolist() == [0.0, 0.0, 0.0]
    assert any("3 negative intensities" in w for w in back.metadata["warnings"])


def test_intensities_true_takes_square_root(tmp_path, caplog):
    ds, counts = make_dataset(), _counts()
    np.savez(tmp_path / "i.npz", **raw_arrays(ds, diffraction=counts.astype(np.int32)))
    with caplog.at_level(logging.INFO, logger="ptycho_data.npz"):
        back = load_dataset(tmp_path / "i.npz", intensities=True)
    np.testing.assert_allclose(back.diffraction, np.sqrt(counts), rtol=1e-6)
    assert any("square root" in r.getMessage() for r in caplog.records)
    assert load_dataset(tmp_path / "i.npz", intensities=False).diffraction.max() == counts.max()


def test_intensity_heuristic_is_conservative():
    counts = _counts()
    assert looks_like_intensities(counts) is not None
    assert looks_like_intensities(np.sqrt(counts)) is None  # real amplitudes
    assert looks_like_intensities(np.rint(np.sqrt(counts))) is None  # rounded amplitudes: small range
    assert looks_like_intensities(np.rint(counts / 100)) is None  # integer, but range < 1000
    assert looks_like_intensities(np.square(np.rint(np.sqrt(counts)))) is None  # perfect squares


@pytest.mark.parametrize("key", ["objectGuess", "xcoords"])
def test_object_array_refused(tmp_path, key):
    arrays = raw_arrays(make_dataset())
    arrays[key] = np.array([None, "x"] * 8, dtype=object)
    np.savez(tmp_path / "obj.npz", **arrays)
    expect_error(tmp_path / "obj.npz", f"'{key}'", "object array")


def test_unused_object_array_is_ignored(tmp_path):
    np.savez(tmp_path / "extra.npz", **raw_arrays(make_dataset()), notes=np.array([{"a": 1}], dtype=object))
    assert load_dataset(tmp_path / "extra.npz").n == 16


def test_truncated_file(tmp_path):
    path = save_dataset(make_dataset(), tmp_path / "full.npz")
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expect_error(tmp_path / "cut.npz", "truncated")


def test_corrupt_member_data(tmp_path):
    path = save_dataset(make_dataset(), tmp_path / "full.npz")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("diffraction.npy")
    data[info.header_offset + 200 + info.file_size // 2] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    expect_error(tmp_path / "bad.npz", "'diffraction'", "corrupt")


def test_not_a_zip(tmp_path):
    (tmp_path / "text.npz").write_text("diffraction,xcoords\n1,2\n")
    expect_error(tmp_path / "text.npz", "not a valid NPZ")


def test_single_npy_file(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    expect_error(tmp_path / "one.npy", ".npy array")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "absent.npz", "no such file")


def _huge_member_npz(path, shape):
    """An NPZ whose diffraction header declares ``shape`` but whose member holds 16 bytes of data."""
    ds = make_dataset()
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("diffraction.npy", buf.getvalue() + b"\0" * 16)
        for key in ("xcoords", "ycoords", "probeGuess"):
            member = io.BytesIO()
            np.lib.format.write_array(member, npz.dataset_arrays(ds)[key])
            zf.writestr(f"{key}.npy", member.getvalue())


def test_huge_declared_shape_checked_from_header(tmp_path):
    _huge_member_npz(tmp_path / "huge.npz", (16, 64, 64))
    expect_error(tmp_path / "huge.npz", "'diffraction'", "declared shape", "truncated")
    _huge_member_npz(tmp_path / "giant.npz", (16, 10**9, 10**9))
    expect_error(tmp_path / "giant.npz", "'diffraction'", "max_array_bytes")


def test_max_array_bytes_limit(tmp_path):
    path = save_dataset(make_dataset(), tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"'diffraction'.*max_array_bytes"):
        load_dataset(path, max_array_bytes=10_000)


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    ds = make_dataset()
    target = tmp_path / "out.npz"
    calls = {"n": 0}
    real_write = np.lib.format.write_array

    def failing_write(fp, arr, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        real_write(fp, arr, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(ds, target)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(np.lib.format, "write_array", real_write)
    save_dataset(ds, target)
    before = target.read_bytes()
    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    calls["n"] = 0
    with pytest.raises(OSError):
        save_dataset(make_dataset(seed=5), target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        save_dataset(make_dataset(), tmp_path / "nope" / "d.npz")


def test_save_rejects_non_dataset(tmp_path):
    with pytest.raises(DataError, match="Dataset"):
        save_dataset({"diffraction": np.zeros((1, 64, 64))}, tmp_path / "d.npz")


def test_encrypted_member(tmp_path):
    path = save_dataset(make_dataset(), tmp_path / "full.npz")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("diffraction.npy")
    data[info.header_offset + 6] |= 0x01  # local header: general purpose flag "encrypted"
    central = data.find(b"PK\x01\x02")  # central directory entries follow the member data
    while central != -1:
        name_len = int.from_bytes(data[central + 28 : central + 30], "little")
        if data[central + 46 : central + 46 + name_len] == b"diffraction.npy":
            data[central + 8] |= 0x01
        central = data.find(b"PK\x01\x02", central + 4)
    (tmp_path / "enc.npz").write_bytes(bytes(data))
    expect_error(tmp_path / "enc.npz", "'diffraction'", "corrupt", "encrypted")
