"""The data-reading flags shared by ``ptycho train | infer | run | import`` (:class:`ptycho_core.config.ReadOptions`).

    --intensities / --no-intensities   the patterns are counts (square root taken) / amplitudes
    --position-unit {px,m}             unit of the scan positions
    --pixel-size METRES                object pixel size, converts positions in metres
    --diffraction-file FILE            the patterns file of a Ptychodus product
    --patterns / --x / --y H5PATH      datasets of a generic detector HDF5 file
    --probe H5PATH|FILE                the probe of a file that has none
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ptycho_core.config import POSITION_UNITS, ReadOptions

FLAGS = {
    "intensities": ("--intensities", "the patterns are intensities (counts): take their square root; "
                    "--no-intensities: they are amplitudes sqrt(counts) (default: detected, logged: integer photon "
                    "counts are read as intensities; detector HDF5 frames as intensities)"),
    "position_unit": ("--position-unit", "unit of the scan positions when the file does not say: px (object "
                      "pixels) or m (metres, needs a pixel size)"),
    "pixel_size_m": ("--pixel-size", "object pixel size in metres, to convert positions in metres to pixels "
                     "(default: the file's pixel_size_m / Ptychodus object pixel size)"),
    "diffraction_file": ("--diffraction-file", "the diffraction patterns (NPZ or HDF5) of a Ptychodus product file"),
    "patterns": ("--patterns", "HDF5 path of the (n, N, N) pattern stack of a generic detector file, e.g. "
                 "/entry/data/data (with --x, --y)"),
    "x": ("--x", "HDF5 path of the x (column) positions of a generic detector file; a 'units' attribute (m, um, "
          "nm, px) is honoured"),
    "y": ("--y", "HDF5 path of the y (row) positions of a generic detector file"),
    "probe": ("--probe", "probe of a detector file: an HDF5 path in the input, or an .npy/.npz file (probeGuess)"),
}


def add_read_flags(parser: argparse.ArgumentParser) -> None:
    """Add the :class:`ReadOptions` flags to ``parser`` (dest = field name; unset flags are absent)."""
    group = parser.add_argument_group("data reading options (docs/data-format.md, 'Bring your own data')")
    for name, (flag, text) in FLAGS.items():
        if name == "intensities":
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=text)
        elif name == "position_unit":
            group.add_argument(flag, dest=name, choices=POSITION_UNITS, default=argparse.SUPPRESS, help=text)
        elif name == "pixel_size_m":
            group.add_argument(flag, dest=name, type=float, metavar="METRES", default=argparse.SUPPRESS, help=text)
        elif name == "diffraction_file":
            group.add_argument(flag, dest=name, type=Path, metavar="FILE", default=argparse.SUPPRESS, help=text)
        else:
            group.add_argument(flag, dest=name, metavar="H5PATH" if name != "probe" else "H5PATH|FILE",
                               default=argparse.SUPPRESS, help=text)


def read_options_from_args(args: argparse.Namespace) -> ReadOptions:
    """The :class:`ReadOptions` of the flags given (validated: contradictions are a ConfigError)."""
    given = vars(args)
    return ReadOptions(**{name: given[name] for name in FLAGS if name in given})
