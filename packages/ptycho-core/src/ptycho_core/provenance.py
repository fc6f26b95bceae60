"""Provenance of a result: what produced it, from what, with which software, where and when.

The workflow stores one provenance record in every result: ``summary.json`` (key
``"provenance"``), ``reconstruction.npz`` (key ``provenance``, a JSON string) and a model
bundle's ``manifest.json`` (key ``"provenance"``). ``ptycho info RESULT`` prints it.

A record is plain JSON::

    {"format": "ptycho-provenance", "version": 1,
     "command": ["ptycho", "run", "--train-data", "scan.npz", ...],
     "started": "2026-12-02T11:20:03Z", "finished": "2026-12-02T11:21:40Z", "seconds": 97.1,
     "host": {"hostname": ..., "platform": ..., "python": ...},
     "device": "cpu" | "cuda:0 (NVIDIA H200)", "accelerator": "auto", "backend": "pytorch",
     "versions": {"ptycho-core": ..., "ptycho-data": ..., "ptycho-torch": ..., "torch": ..., "numpy": ...},
     "inputs": {"train_data_file": {"path": "/abs/scan.npz", "sha256": ..., "bytes": ...}},
     "config": {"training": {...}, "inference": {...}}}

Times are ISO 8601 in UTC. The sha256 of a directory input (a lazy dataset, a bundle) is the
sha256 of the lines ``<sha256>  <relative path>`` of its files in sorted order.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "finish", "format_text", "input_record", "now", "read", "sha256_path", "start"]

FORMAT = "ptycho-provenance"
VERSION = 1

#: Distributions whose versions are recorded when installed (metadata only: nothing is imported).
DISTRIBUTIONS = ("ptycho-core", "ptycho-data", "ptycho-torch", "ptycho-tf", "torch", "lightning", "tensorflow",
                 "tensorflow-cpu", "keras", "numpy", "scipy", "h5py")


def now() -> str:
    """The current time, ISO 8601 in UTC with a ``Z`` (second resolution)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256_path(path: Path) -> str:
    """Hex sha256 of a file, or of a directory's file list with their hashes (see the module docstring)."""
    from ptycho_core.bundle import sha256_file

    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    lines = [f"{sha256_file(p)}  {p.relative_to(path).as_posix()}\n"
             for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def input_record(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` of an input file or directory (absolute path)."""
    p = Path(path)
    size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return {"path": str(p.resolve()), "sha256": sha256_path(p), "bytes": int(size)}


def installed_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the distributions ``names`` (from metadata; missing ones are left out)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def versions() -> dict[str, str]:
    """Installed versions of :data:`DISTRIBUTIONS` (and Python)."""
    return {"python": platform.python_version(), **installed_versions(DISTRIBUTIONS)}


def _device(backend: str | None, accelerator: str) -> tuple[str, list[str]]:
    """The device a run with ``accelerator`` uses ('cpu' or the first accelerator the backend lists)."""
    if backend is None:
        return "cpu", []
    from ptycho_core import backends

    try:
        devices = list(backends.get(backend).info.devices)
    except Exception:  # an unreadable device list must not fail the run it describes
        return "unknown", []
    others = [d for d in devices if not d.lower().startswith("cpu")]
    if accelerator == "cpu" or not others:
        return "cpu", devices
    return others[0], devices


def _config_dict(config: Any) -> Any:
    from ptycho_core.serialize import to_dict

    return json.loads(json.dumps(to_dict(config), default=str))


def start(*, command: Sequence[str] | None = None, backend: str | None = None, accelerator: str = "auto",
          configs: Mapping[str, Any] | None = None, inputs: Mapping[str, str | os.PathLike | None] | None = None,
          ) -> dict[str, Any]:
    """A provenance record of a run starting now.

    Parameters
    ----------
    command : sequence of str, optional
        The command line (default ``sys.argv``).
    backend, accelerator : str
        Backend id and requested accelerator (the device is looked up in the backend's device list).
    configs : mapping
        ``{"training": TrainingConfig, "inference": InferenceConfig}`` (attrs configs or dicts).
    inputs : mapping
        Role -> path of every input file or directory (``None`` values are skipped); hashed here.
    """
    device, devices = _device(backend, accelerator)
    return {
        "format": FORMAT,
        "version": VERSION,
        "command": [str(a) for a in (sys.argv if command is None else command)],
        "started": now(),
        "finished": None,
        "seconds": None,
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                 "python": sys.version.split()[0], "cwd": os.getcwd()},
        "backend": backend,
        "accelerator": accelerator,
        "device": device,
        "devices_available": devices,
        "versions": versions(),
        "inputs": {role: input_record(p) for role, p in (inputs or {}).items() if p is not None},
        "config": {name: _config_dict(cfg) for name, cfg in (configs or {}).items() if cfg is not None},
    }


def finish(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` with ``finished`` (now) and ``seconds`` since ``started``."""
    out = dict(record)
    out["finished"] = now()
    t0 = datetime.fromisoformat(out["started"].replace("Z", "+00:00"))
    t1 = datetime.fromisoformat(out["finished"].replace("Z", "+00:00"))
    out["seconds"] = (t1 - t0).total_seconds()
    return out


def read(path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The provenance record of a result and the file it was read from.

    ``path`` is a result directory (``summary.json``, else ``reconstruction.npz``), a model
    bundle (directory or ``.zip``: its ``manifest.json``), a ``summary.json`` / ``manifest.json``
    or a ``reconstruction.npz``.

    Raises
    ------
    ptycho_core.errors.DataError
        Nothing readable there, or the result holds no provenance (names the file).
    """
    from ptycho_core import bundle
    from ptycho_core.errors import DataError

    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.is_dir():
        for name in ("summary.json", bundle.MANIFEST, "reconstruction.npz"):
            if (p / name).is_file():
                return read(p / name)
        raise DataError(f"{p}: not a ptycho result (no summary.json, manifest.json or reconstruction.npz in it)")
    if p.suffix == ".zip":
        source, data = p, bundle.read_manifest(p)
    elif p.suffix == ".npz":
        source, data = p, _npz_record(p)
    elif p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{p}: not valid JSON ({exc})") from None
        source = p
    else:
        raise DataError(f"{p}: not a ptycho result (expected a directory, summary.json, manifest.json, "
                        "reconstruction.npz or a bundle .zip)")
    record = data.get("provenance") if isinstance(data, dict) else None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(f"{source}: no provenance recorded (written by an older ptycho, or not a ptycho result)")
    return record, source


def _npz_record(path: Path) -> dict[str, Any]:
    import zipfile

    import numpy as np

    from ptycho_core.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as npz:
            if "provenance" not in npz.files:
                return {}
            text = str(npz["provenance"][()])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable NPZ file ({exc})") from None
    try:
        return {"provenance": json.loads(text)}
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: key 'provenance' is not valid JSON ({exc})") from None


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict) and value:
        for key in value:
            _flatten(f"{prefix}.{key}" if prefix else str(key), value[key], out)
    else:
        out.append((prefix, json.dumps(value) if not isinstance(value, str) else value))


def format_text(record: Mapping[str, Any], source: Path | None = None) -> str:
    """A human-readable rendering of a provenance record (what ``ptycho info`` prints)."""
    import shlex

    lines = []
    if source is not None:
        lines.append(f"result:    {source}")
    lines.append(f"command:   {shlex.join(record.get('command') or [])}")
    seconds = record.get("seconds")
    took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
    lines.append(f"started:   {record.get('started')}")
    lines.append(f"finished:  {record.get('finished')}{took}")
    host = record.get("host") or {}
    lines.append(f"host:      {host.get('hostname')} ({host.get('platform')}, python {host.get('python')})")
    lines.append(f"directory: {host.get('cwd')}")
    lines.append(f"device:    {record.get('device')} (backend {record.get('backend')}, "
                 f"accelerator {record.get('accelerator')})")
    vers = record.get("versions") or {}
    lines.append("versions:  " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    inputs = record.get("inputs") or {}
    lines.append("inputs:" + ("" if inputs else "    none"))
    for role, rec in inputs.items():
        lines.append(f"  {role}: {rec.get('path')}")
        lines.append(f"    sha256 {rec.get('sha256')}, {rec.get('bytes')} bytes")
    configs = record.get("config") or {}
    for name, cfg in configs.items():
        lines.append(f"config ({name}):")
        flat: list[tuple[str, str]] = []
        _flatten("", cfg, flat)
        width = max((len(k) for k, _ in flat), default=0)
        lines.extend(f"  {k:<{width}} = {v}" for k, v in flat)
    return "\n".join(lines)
