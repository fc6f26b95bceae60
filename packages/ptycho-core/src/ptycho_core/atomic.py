"""Atomic writing of files and directories, with the permissions ``open()`` and ``mkdir`` would give.

Every file or directory ptycho writes goes through this module: the content is written to a
hidden temporary next to the target (same file system), flushed to disk, given its final
mode and only then moved onto the target with :func:`os.replace`. A failure at any point
leaves the previous target untouched and removes the temporary, so no half-written result
is ever visible under the target's name.

``tempfile.mkstemp``/``mkdtemp`` create 0600 files and 0700 directories whatever the umask;
this module sets the usual modes instead, ``0o666 & ~umask`` for files and
``0o777 & ~umask`` for directories (with umask 022: 0644 and 0755), so collaborators on a
shared file system can read the results.

    >>> import pathlib, tempfile
    >>> from ptycho_core.atomic import atomic_file, write_text
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_text(folder / "note.txt", "hello").read_text()
    'hello'
    >>> with atomic_file(folder / "data.bin") as tmp:
    ...     _ = tmp.write_bytes(b"\\x00\\x01")
    >>> (folder / "data.bin").stat().st_size
    2
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_directory", "atomic_file", "atomic_write", "commit_directory", "current_umask", "dir_mode",
           "file_mode", "stage_directory", "write_bytes", "write_text"]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read by setting it and putting it back at once
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a new directory under the current umask (``0o777 & ~umask``)."""
    return 0o777 & ~current_umask()


def _check_target(target: Path, kind: str) -> None:
    parent = target.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise FileNotFoundError(f"{target}: cannot write the {kind}: parent directory {parent} {what}")
    if kind == "file" and target.is_dir():
        raise IsADirectoryError(f"{target}: is a directory; cannot write a file there")
    if kind == "directory" and target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a directory; cannot write a directory there")


def _replace(tmp: Path, target: Path) -> None:
    try:
        os.replace(tmp, target)
    except OSError as exc:  # name the target, not the temporary
        raise type(exc)(f"{target}: cannot move the finished file into place: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it becomes ``path`` (mode ``0o666 & ~umask``).

    The temporary name is hidden (``.<stem>.<random>.tmp<suffixes>``) and keeps all suffixes
    of ``path`` (``np.savez`` appends ``.npz`` otherwise, Keras wants ``.weights.h5``). The
    temporary exists and is empty when the block starts. After the block its data is fsync'ed
    and it replaces ``path``; if the block raises, it is removed and ``path`` is untouched.

    Parameters
    ----------
    path : path-like
        The file to write.
    parents : bool
        Create missing parent directories (with the umask's mode) first.

    Raises
    ------
    FileNotFoundError
        The parent directory does not exist (and ``parents`` is false).
    IsADirectoryError
        ``path`` is a directory.
    """
    target = Path(path)
    if parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    _check_target(target, "file")
    suffix = "".join(target.suffixes)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        _replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, parents: bool = True) -> Path:
    """Call ``write(tmp_path)`` for a temporary file next to ``path``, then move it onto ``path``.

    :func:`atomic_file` in function form (parents are created by default). Returns ``Path(path)``.
    """
    with atomic_file(path, parents=parents) as tmp:
        write(str(tmp))
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, parents: bool = False, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, parents=parents) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes, *, parents: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, parents=parents) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def stage_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Create the hidden, empty staging directory of ``path`` (mode ``0o777 & ~umask``) and return it.

    Finish with :func:`commit_directory` or discard with :func:`shutil.rmtree`; :func:`atomic_directory`
    does both. Raises :class:`FileExistsError` if ``path`` exists and ``overwrite`` is false.
    """
    target = Path(path)
    _check_target(target, "directory")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target}: already exists (pass overwrite=True to replace it)")
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(stage, dir_mode())
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return stage


def commit_directory(stage: Path, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Move the finished staging directory ``stage`` onto ``path``; on failure remove ``stage``.

    An existing ``path`` (only with ``overwrite=True``) is renamed aside first, then deleted
    once the new directory is in place; if the move fails it is put back.
    """
    target = Path(path)
    old: Path | None = None
    try:
        if target.exists() or target.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{target}: appeared while it was being written (pass overwrite=True)")
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "previous")
        _replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not target.exists():
            os.replace(old / "previous", target)  # put the previous result back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory next to ``path``; on success it becomes ``path``.

    The staging directory gets mode ``0o777 & ~umask``; what the block writes into it keeps
    the modes it was written with. If the block raises, the staging directory is removed and
    ``path`` is untouched. An existing ``path`` is replaced only with ``overwrite=True``: it is
    first renamed aside, the new directory moved in, then the old one deleted.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false (checked before and after the block).
    FileNotFoundError
        The parent directory does not exist.
    """
    stage = stage_directory(path, overwrite=overwrite)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    commit_directory(stage, path, overwrite=overwrite)
