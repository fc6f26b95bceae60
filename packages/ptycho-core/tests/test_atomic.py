"""ptycho_core.atomic: atomic files and directories with the umask's modes, no leftovers on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ptycho_core import atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing(umask_027):
    assert atomic.current_umask() == 0o027
    assert atomic.current_umask() == 0o027
    assert atomic.file_mode() == 0o640
    assert atomic.dir_mode() == 0o750


def test_file_gets_umask_mode(tmp_path, umask_027):
    target = tmp_path / "out.npz"
    with atomic.atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.") and tmp.name.endswith(".tmp.npz")
        assert _mode(tmp) == 0o600  # mkstemp's mode while writing ...
        tmp.write_bytes(b"abc")
    assert target.read_bytes() == b"abc"
    assert _mode(target) == 0o640  # ... the umask's mode once in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_write_text_and_bytes_modes_under_022(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.json", "{}")
        atomic.write_bytes(tmp_path / "sub" / "b.bin", b"x", parents=True)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == 0o644
    assert _mode(tmp_path / "sub" / "b.bin") == 0o644
    assert _mode(tmp_path / "sub") == 0o755


def test_failure_keeps_previous_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic.atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_clear_errors_name_the_target_not_the_temporary(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError, match=r"adir: is a directory") as info:
        atomic.write_text(tmp_path / "adir", "x")
    assert ".tmp" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"parent directory .*missing does not exist"):
        atomic.write_text(tmp_path / "missing" / "f.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]


def test_directory_mode_and_replace(tmp_path, umask_027):
    target = tmp_path / "bundle"
    with atomic.atomic_directory(target) as stage:
        assert stage.name.startswith(".bundle.")
        (stage / "w.bin").write_bytes(b"1")
    assert _mode(target) == 0o750
    assert _mode(target / "w.bin") == 0o640
    with pytest.raises(FileExistsError, match="bundle: already exists"), atomic.atomic_directory(target):
        pass
    with atomic.atomic_directory(target, overwrite=True) as stage:
        (stage / "v.bin").write_bytes(b"2")
    assert [p.name for p in target.iterdir()] == ["v.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_directory_failure_keeps_previous(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "old").write_text("o")
    with pytest.raises(ValueError, match="nope"), atomic.atomic_directory(target, overwrite=True) as stage:
        (stage / "new").write_text("n")
        raise ValueError("nope")
    assert [p.name for p in target.iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_no_hand_written_atomic_writes_left():
    """Every package writes through ptycho_core.atomic: no mkstemp/mkdtemp/os.replace elsewhere."""
    root = Path(__file__).resolve().parents[3]
    allowed = {"packages/ptycho-core/src/ptycho_core/atomic.py",  # the helper itself
               "packages/ptycho-core/src/ptycho_core/bundle.py",  # scratch dir of a .zip bundle (mkdtemp only)
               "packages/ptycho-tf/src/ptycho_tf/callbacks.py"}  # renames last -> previous weights
    offenders = []
    for src in sorted([*root.glob("packages/*/src/**/*.py"), *root.glob("examples/*/src/**/*.py")]):
        rel = src.relative_to(root).as_posix()
        text = src.read_text()
        for needle in ("mkstemp(", "NamedTemporaryFile(", "os.replace(", "mkdtemp("):
            if needle in text and rel not in allowed:
                offenders.append(f"{rel}: {needle}")
    assert offenders == []
