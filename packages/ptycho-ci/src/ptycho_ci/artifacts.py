"""Artifact checks on an output directory: bundles, checkpoints and PNG images.

Nothing is unpickled and no framework is imported: a Lightning ``.ckpt`` (a torch zip
archive) is inspected by walking the opcodes of its ``data.pkl`` with
:func:`pickletools.genops`, which only decodes and never executes. Findings carry the
check name used by ``kind = "artifact"`` triggers (:data:`ptycho_ci.conditions.ARTIFACT_CHECKS`):

- ``checkpoint_hyper_parameters``: a ``.ckpt`` whose top-level dict has no ``hyper_parameters``;
- ``checkpoint_unreadable``: a ``.ckpt`` that is neither a torch zip archive nor a pickle;
- ``bundle_manifest`` / ``bundle_integrity``: a bundle (directory or ``.zip`` with
  ``manifest.json``) whose manifest or ``config.json`` is malformed / whose sha256 do not match;
- ``png_invalid`` / ``png_too_small``: a PNG without a valid signature, header and end chunk,
  or below the size floor;
- ``png_missing``: a run output directory (one holding ``summary.json`` or
  ``reconstruction.npz``) without an expected PNG such as ``amplitude.png``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickletools
import struct
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ptycho_ci.errors import ArtifactError
from ptycho_ci.records import ArtifactFinding

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_MIN_PNG_BYTES = 1024
DEFAULT_EXPECT_PNG = ("amplitude.png", "phase.png")
RUN_OUTPUT_MARKERS = ("summary.json", "reconstruction.npz")
HPARAMS_KEY = "hyper_parameters"


def check_png(path: str | os.PathLike, min_bytes: int = DEFAULT_MIN_PNG_BYTES) -> list[ArtifactFinding]:
    """Findings for one PNG: signature, a non-empty IHDR, an IEND chunk and at least ``min_bytes``."""
    path = Path(path)
    data = path.read_bytes()
    where = str(path)
    if data[:8] != PNG_SIGNATURE or len(data) < 33 or data[12:16] != b"IHDR":
        return [ArtifactFinding(where, "png_invalid", f"not a PNG image (signature or IHDR header missing, "
                                                      f"{len(data)} bytes)")]
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        return [ArtifactFinding(where, "png_invalid", f"PNG header declares an empty image ({width} x {height})")]
    if data[-12:-8] != b"\x00\x00\x00\x00" or data[-8:-4] != b"IEND":
        return [ArtifactFinding(where, "png_invalid", "PNG is truncated (no IEND chunk at the end)")]
    if len(data) < min_bytes:
        return [ArtifactFinding(where, "png_too_small",
                                f"PNG is {len(data)} bytes, below the {min_bytes} byte floor ({width} x {height})")]
    return []


def _pickle_top_keys(data: bytes) -> tuple[bool, set[str]] | None:
    """(some pickle holds a dict at top level, the string arguments of those pickles); None if unreadable.

    Walks up to six consecutive pickles: the legacy (non-zip) torch format writes a magic
    number, a protocol version and a ``sys_info`` dict before the object, then raw bytes.
    """
    stream = io.BytesIO(data)
    parsed, is_dict, strings = 0, False, set()
    while parsed < 6 and stream.tell() < len(data):
        found: set[str] = set()
        first = None
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if first is None and opcode.name not in ("PROTO", "FRAME"):
                    first = opcode.name
                if isinstance(arg, str):
                    found.add(arg)
        except (ValueError, EOFError, UnicodeDecodeError, struct.error):
            break  # raw tensor bytes after the pickles, or not a pickle at all
        parsed += 1
        if first == "EMPTY_DICT":
            is_dict, strings = True, strings | found
    return (is_dict, strings) if parsed else None


def check_checkpoint_bytes(data: bytes, where: str) -> list[ArtifactFinding]:
    """Findings for the bytes of a ``.ckpt`` (named ``where`` in messages)."""
    pickled = data
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            if not names:
                return [ArtifactFinding(where, "checkpoint_unreadable", "zip checkpoint without a data.pkl member")]
            pickled = zf.read(sorted(names, key=len)[0])
    parsed = _pickle_top_keys(pickled)
    if parsed is None:
        return [ArtifactFinding(where, "checkpoint_unreadable", "neither a torch zip archive nor a readable pickle")]
    is_dict, strings = parsed
    if not is_dict:
        return [ArtifactFinding(where, "checkpoint_hyper_parameters", "checkpoint does not hold a dict at top level")]
    if HPARAMS_KEY not in strings:
        return [ArtifactFinding(where, "checkpoint_hyper_parameters",
                                f"checkpoint has no '{HPARAMS_KEY}' (load_from_checkpoint cannot rebuild the model)")]
    return []


def check_checkpoint(path: str | os.PathLike) -> list[ArtifactFinding]:
    """Findings for a Lightning ``.ckpt`` file."""
    return check_checkpoint_bytes(Path(path).read_bytes(), str(path))


def _bundle_findings(where: str, names: Iterable[str], read: Callable[[str], bytes]) -> list[ArtifactFinding]:
    try:
        manifest = json.loads(read("manifest.json"))
        files = manifest["files"]
        if manifest.get("format") != "ptycho-bundle" or not isinstance(files, dict) or "config.json" not in files:
            raise ValueError("'format' must be 'ptycho-bundle' and 'files' must list config.json")
    except (KeyError, ValueError, TypeError) as exc:
        return [ArtifactFinding(where, "bundle_manifest", f"manifest.json is malformed ({exc})")]
    out = []
    present = set(names) - {"manifest.json"}
    for name in sorted(set(files) - present):
        out.append(ArtifactFinding(where, "bundle_integrity", f"{name} is listed in manifest.json but missing"))
    for name in sorted(present - set(files)):
        out.append(ArtifactFinding(where, "bundle_integrity", f"{name} is not listed in manifest.json"))
    for name in sorted(set(files) & present):
        data = read(name)
        if hashlib.sha256(data).hexdigest() != files[name]:
            out.append(ArtifactFinding(where, "bundle_integrity", f"sha256 of {name} does not match manifest.json"))
        if name.endswith(".ckpt"):
            out.extend(check_checkpoint_bytes(data, f"{where}/{name}"))
    if "config.json" in present:
        try:
            config = json.loads(read("config.json"))
            if not isinstance(config.get("model"), dict):
                raise ValueError("no 'model' table")
        except (ValueError, AttributeError) as exc:
            out.append(ArtifactFinding(where, "bundle_manifest", f"config.json holds no model configuration ({exc})"))
    return out


def check_bundle(path: str | os.PathLike) -> list[ArtifactFinding]:
    """Findings for a bundle directory or ``.zip``: manifest, sha256 of every file, checkpoints, config."""
    path = Path(path)
    if path.is_dir():
        names = [p.name for p in path.iterdir() if p.is_file()]
        return _bundle_findings(str(path), names, lambda n: (path / n).read_bytes())
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            return _bundle_findings(str(path), names, zf.read)
    except (zipfile.BadZipFile, OSError) as exc:
        return [ArtifactFinding(str(path), "bundle_manifest", f"not a readable zip bundle ({exc})")]


def _is_zip_bundle(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return "manifest.json" in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def check_directory(
    root: str | os.PathLike,
    *,
    min_png_bytes: int = DEFAULT_MIN_PNG_BYTES,
    expect_png: Iterable[str] = DEFAULT_EXPECT_PNG,
) -> list[ArtifactFinding]:
    """Check every bundle, checkpoint and PNG under ``root``.

    Parameters
    ----------
    root : path
        Output directory, walked recursively; hidden files and directories (a leading ``.``,
        e.g. atomic-write leftovers) are skipped; a bundle directory is checked as a whole.
    min_png_bytes : int
        Size floor of a PNG.
    expect_png : iterable of str
        PNG names a run output directory (holding ``summary.json`` or ``reconstruction.npz``) must have.

    Returns
    -------
    list of ArtifactFinding
        Empty when everything is fine.

    Raises
    ------
    ArtifactError
        If ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a directory (expected an output directory to check)")
    expect = tuple(expect_png)
    out: list[ArtifactFinding] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        files = sorted(f for f in filenames if not f.startswith("."))
        if "manifest.json" in files:
            out.extend(check_bundle(here))
            dirnames[:] = []
            continue
        if any(m in files for m in RUN_OUTPUT_MARKERS):
            for name in expect:
                if name not in files:
                    out.append(ArtifactFinding(str(here / name), "png_missing",
                                               f"run output directory {here} has no {name}"))
        for name in files:
            path = here / name
            if name.endswith(".png"):
                out.extend(check_png(path, min_png_bytes))
            elif name.endswith(".ckpt"):
                out.extend(check_checkpoint(path))
            elif name.endswith(".zip") and _is_zip_bundle(path):
                out.extend(check_bundle(path))
    return out
