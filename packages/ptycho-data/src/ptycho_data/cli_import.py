"""``ptycho import INPUT -o OUT``: any supported input -> a validated canonical dataset, with a summary.

The input format is chosen by content (:mod:`ptycho_data.readers`): canonical or legacy NPZ,
lazy directory or HDF5, a Ptychodus product (``--diffraction-file``) or a generic detector HDF5
file (``--patterns``, ``--x``, ``--y``, ``--probe``). The output is a canonical NPZ file, or with
``--lazy`` a lazy dataset directory (patterns written chunk by chunk, for inputs larger than
memory). Nothing half-written is ever left: the NPZ is written under a temporary name and moved
into place, a lazy directory appears only once complete. The summary gives the patterns, N,
photons per pattern, the scan extent in pixels and metres, the probe's energy inside the
model's support disk and the overlap, then warnings for what will hurt the reconstruction.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_core.errors import ConfigError, DataError

LAZY_THRESHOLD_BYTES = 4 * 2**30
"""Inputs whose float32 amplitudes need more than this must be imported with ``--lazy``."""
CHUNK = 256


def _pattern_bytes(path: Path, options: Any) -> int | None:
    """Bytes of the input's patterns as float32 amplitudes, from headers only; None when unknown cheaply."""
    from ptycho_data import readers
    from ptycho_data.hdf5_patterns import open_h5

    if options.patterns is None or readers.detect_format(path) == "npz":
        return None
    with open_h5(path) as f:
        ds = f.get(options.patterns)
        return None if ds is None or not hasattr(ds, "shape") else int(np.prod(ds.shape, dtype=np.int64)) * 4


def _write_lazy(source: Any, out: Path, overwrite: bool) -> None:
    """Write ``source`` (a Dataset, LazyDataset or readers.DetectorSource) as a lazy directory, chunk by chunk."""
    from ptycho_data.lazy import LazyDatasetWriter

    with LazyDatasetWriter(out, probe=source.probe, object=getattr(source, "object", None),
                           overwrite=overwrite) as writer:
        if hasattr(source, "chunks"):  # a detector file: read and converted a chunk at a time
            for rows, amps in source.chunks(CHUNK):
                writer.append(amps, source.xcoords[rows], source.ycoords[rows])
            return
        n = source.n
        for start in range(0, n, CHUNK):
            idx = np.arange(start, min(start + CHUNK, n))
            block = source.read(idx) if hasattr(source, "read") else source.diffraction[idx]
            writer.append(block, source.xcoords[idx], source.ycoords[idx], scan_index=source.scan_index[idx],
                          xcoords_start=source.xcoords_start[idx], ycoords_start=source.ycoords_start[idx])


def _write_npz(dataset: Any, out: Path) -> None:
    from ptycho_core.atomic import atomic_write
    from ptycho_data.npz import dataset_arrays
    from ptycho_data.npzformat import write_npz

    atomic_write(out, lambda tmp: write_npz(tmp, dataset_arrays(dataset)))


def import_dataset(input_path: Path, output: Path, options: Any, *, lazy: bool = False,
                   overwrite: bool = False) -> dict[str, Any]:
    """Convert ``input_path`` to a canonical NPZ (or lazy directory) at ``output``; return the summary.

    Raises
    ------
    ptycho_core.errors.DataError
        Any problem with the input (nothing is written) or an existing output without ``overwrite``.
    """
    from ptycho_data import geometry, readers
    from ptycho_data.lazy import open_lazy_dataset
    from ptycho_data.npz import load_dataset

    input_path, output = Path(input_path), Path(output)
    if output.exists() and not overwrite:
        raise DataError(f"{output}: already exists (pass --overwrite to replace it)")
    if output.resolve() == input_path.resolve():
        raise DataError(f"{output}: is the input itself; write the canonical dataset to another path")
    if not output.parent.is_dir():
        raise DataError(f"{output}: parent directory {output.parent} does not exist")
    if lazy and output.suffix.lower() == ".npz":
        raise ConfigError(f"-o {output}: --lazy writes a directory, not an .npz file; name the output without .npz")
    if not lazy:
        size = _pattern_bytes(input_path, options)
        if size is not None and size > LAZY_THRESHOLD_BYTES:
            raise DataError(f"{input_path}: {size / 2**30:.1f} GiB of patterns is too large for one in-memory NPZ; "
                            "import it with --lazy -o DIRECTORY (written chunk by chunk)")
    if options.patterns is not None and lazy:  # a detector file: streamed without holding the patterns
        with readers.detector_source(input_path, options) as src:
            meta = src.metadata
            _replace_lazy(src, output, overwrite)
        written = open_lazy_dataset(output)
        written.metadata = dict(meta)
        return geometry.summarize(written)
    dataset = readers.open_dataset(input_path, options)
    try:
        summary = geometry.summarize(dataset)
        if lazy:
            _replace_lazy(dataset, output, overwrite)
            open_lazy_dataset(output)  # validates what was written
        else:
            if hasattr(dataset, "to_dataset"):
                meta = dict(dataset.metadata)
                dataset = dataset.to_dataset()
                dataset.metadata.update(meta)
            if output.is_dir():
                raise DataError(f"{output}: is a directory; an NPZ output must be a file (or pass --lazy)")
            _write_npz(dataset, output)
            load_dataset(output, intensities=False)  # validates what was written
    finally:
        close = getattr(dataset, "close", None)
        if callable(close):
            close()
    return summary


def _replace_lazy(source: Any, output: Path, overwrite: bool) -> None:
    """Write the lazy directory; an existing file at ``output`` is replaced only after the write succeeded."""
    if output.exists() and not output.is_dir():
        tmp = output.with_name(f".{output.name}.import-tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        _write_lazy(source, tmp, False)
        output.unlink()
        tmp.rename(output)
        return
    _write_lazy(source, output, overwrite)


def _cmd_import(args: argparse.Namespace) -> int:
    from ptycho_data.cli_read import read_options_from_args
    from ptycho_data.geometry import format_summary

    options = read_options_from_args(args)
    summary = import_dataset(args.input, args.output, options, lazy=args.lazy, overwrite=args.overwrite)
    kind = "lazy dataset directory" if args.lazy else "canonical NPZ"
    print(f"wrote {args.output} ({kind}) from {args.input}:")
    for line in format_summary(summary):
        print(line)
    for text in summary["warnings"]:
        print(f"warning: {text}")
    if not summary["warnings"]:
        print("no warnings")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``ptycho import``."""
    from ptycho_data.cli_read import add_read_flags

    p = subparsers.add_parser(
        "import", help="convert any supported data file into a validated canonical dataset, with a summary",
        description="Read INPUT (canonical or legacy NPZ, lazy directory or HDF5, Ptychodus product with "
                    "--diffraction-file, or a generic detector HDF5 file with --patterns/--x/--y/--probe; the "
                    "format is recognised by content) and write a validated canonical NPZ (or, with --lazy, a "
                    "lazy dataset directory). Prints the patterns, N, photons per pattern, scan extent in pixels "
                    "and metres, the probe's energy inside the model's support disk (radius N/4) and the overlap, "
                    "then warnings (probe energy outside the support, low overlap, hot pixels, saturated or "
                    "negative values). Nothing half-written is left on any error.")
    p.add_argument("input", type=Path, metavar="INPUT", help="the data file or lazy dataset directory to convert")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                   help="output: an .npz file, or with --lazy a directory")
    p.add_argument("--lazy", action="store_true",
                   help="write a lazy dataset directory chunk by chunk (inputs larger than memory; required above "
                        f"{LAZY_THRESHOLD_BYTES // 2**30} GiB of patterns)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_read_flags(p)
    p.set_defaults(func=_cmd_import)
    return p
