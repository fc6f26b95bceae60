"""Builders of good and broken output directories (PNGs, torch-like checkpoints, bundles)."""

from __future__ import annotations

import hashlib
import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path


def real_png(path: Path) -> Path:
    """A genuine Matplotlib PNG (several KB)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3), dpi=80)
    FigureCanvasAgg(fig)
    fig.add_subplot(1, 1, 1).plot([0, 1, 2], [2, 0, 1])
    fig.savefig(path, format="png")
    return path


def tiny_png(path: Path, width: int = 1, height: int = 1) -> Path:
    """A valid but minimal grey PNG (about 70 bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def torch_like_ckpt(path: Path, hparams: bool = True) -> Path:
    """A zip archive laid out like ``torch.save`` output, holding a Lightning-style dict."""
    ckpt = {"epoch": 1, "global_step": 4, "state_dict": {"w": [1.0, 2.0]}}
    if hparams:
        ckpt["hyper_parameters"] = {"model_config": {"N": 64, "gridsize": 1}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(ckpt, protocol=2))
        zf.writestr("archive/version", "3\n")
    return path


def write_bundle(directory: Path, hparams: bool = True) -> Path:
    directory.mkdir(parents=True)
    torch_like_ckpt(directory / "model.ckpt", hparams)
    (directory / "config.json").write_text(json.dumps({"model": {"N": 64}, "training": {"nepochs": 2}}))
    files = {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in ("model.ckpt", "config.json")}
    manifest = {"format": "ptycho-bundle", "format_version": 1, "backend": "pytorch", "weights": ["model.ckpt"],
                "files": files}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def zip_bundle(directory: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted(directory.iterdir()):
            zf.write(p, arcname=p.name)
    return path


def good_output(root: Path) -> Path:
    run = root / "run"
    run.mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    real_png(run / "amplitude.png")
    real_png(run / "phase.png")
    write_bundle(run / "model")
    zip_bundle(run / "model", root / "model.zip")
    torch_like_ckpt(root / "checkpoints.ckpt")
    tiny_png(run / ".amplitude.part.png")  # atomic-write leftovers are hidden and ignored
    return root
