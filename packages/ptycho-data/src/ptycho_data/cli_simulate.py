"""``ptycho simulate``: write a simulated DATA-001 NPZ and a PNG preview next to it.

Every :class:`~ptycho_data.simulate.SimulationConfig` field has a flag of the same name
(``--n-positions``, ``--nphotons``, ``--noise/--no-noise``, ``--amplitude-range LOW HIGH``,
...). ``--config FILE`` (TOML/JSON/YAML, fields at top level or in a ``[simulation]`` table)
is read first and flags override it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ptycho_core.atomic import atomic_file
from ptycho_core.console import add_output_flags
from ptycho_data.simulate import SimulationConfig
from ptycho_data.simulate_objects import IMAGES, OBJECT_KINDS, PROBE_KINDS, SCAN_KINDS

ALIASES = {"object_kind": ["--object"], "probe_kind": ["--probe"]}
CHOICES = {
    "N": (64, 128, 256), "scan": SCAN_KINDS, "object_kind": OBJECT_KINDS, "probe_kind": PROBE_KINDS,
    "amplitude_image": IMAGES, "phase_image": IMAGES,
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulation settings (SimulationConfig fields)")
    for field in attrs.fields(SimulationConfig):
        flags = [f"--{field.name.replace('_', '-')}", *ALIASES.get(field.name, [])]
        default = field.default if not isinstance(field.default, tuple) else " ".join(f"{v:.4g}" for v in field.default)
        text = field.metadata["help"] + ("" if default is None else f" (default: {default})")
        kind = str(field.type)
        common: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS, "help": text}
        if kind == "bool":
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        elif kind.startswith("tuple"):
            group.add_argument(*flags, nargs=2, type=float, metavar=("LOW", "HIGH"), **common)
        else:
            conv = int if kind.startswith("int") else float if kind.startswith("float") else str
            if field.name in CHOICES:
                common["choices"] = CHOICES[field.name]
                names = ",".join(str(c) for c in CHOICES[field.name])
                if field.name.endswith("_image"):
                    common["help"] += "; one of " + names.replace(",", ", ")
                    common["metavar"] = "NAME"
                else:
                    common["metavar"] = "{" + names + "}"
            else:
                common["metavar"] = field.name.upper()
            group.add_argument(*flags, type=conv, **common)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """The :class:`SimulationConfig` of ``--config FILE`` (if any) overridden by the given flags."""
    data: dict[str, Any] = {}
    source = "command line"
    if getattr(args, "config", None):
        from ptycho_core.serialize import read_config_file

        data = read_config_file(args.config)
        if isinstance(data.get("simulation"), dict):
            data = dict(data["simulation"])
        source = f"{args.config} + command line"
    names = {f.name for f in attrs.fields(SimulationConfig)}
    data.update({k: v for k, v in vars(args).items() if k in names})
    return SimulationConfig.from_dict(data, source=source)


def _panel(fig: Any, ax: Any, image: np.ndarray, title: str, cmap: str = "gray", **kw: Any) -> None:
    im = ax.imshow(image, cmap=cmap, **kw)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def save_preview(dataset: Any, path: str | Path) -> Path:
    """PNG overview of a simulated dataset (matplotlib Agg, no pyplot state).

    Panels: object amplitude and phase, probe amplitude and phase, scan positions over the
    object amplitude, and three diffraction patterns on a log scale, each with a colour bar.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(14, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4)
    obj = dataset.object
    _panel(fig, axes[0, 0], np.abs(obj), "object amplitude")
    _panel(fig, axes[0, 1], np.angle(obj), "object phase (rad)", cmap="twilight")
    _panel(fig, axes[0, 2], np.abs(dataset.probe), "probe amplitude", cmap="magma")
    _panel(fig, axes[0, 3], np.angle(dataset.probe), "probe phase (rad)", cmap="twilight")
    ax = axes[1, 0]
    ax.imshow(np.abs(obj), cmap="gray")
    ax.plot(dataset.xcoords, dataset.ycoords, ".", color="tab:orange", markersize=3)
    ax.set_title(f"{dataset.n} scan positions (x, y)", fontsize=9)
    n = dataset.n
    for ax, j in zip(axes[1, 1:], sorted({0, n // 2, n - 1})):
        pattern = dataset.diffraction[j].astype(np.float64) ** 2
        positive = pattern[pattern > 0]
        vmin = float(positive.min()) if positive.size else 1e-3
        _panel(fig, ax, np.maximum(pattern, vmin), f"pattern {j} counts (log)", cmap="viridis",
               norm=LogNorm(vmin=vmin, vmax=max(float(pattern.max()), vmin * 10)))
    for ax in axes[1, 1 + len({0, n // 2, n - 1}):]:
        ax.set_axis_off()
    with atomic_file(path, parents=True) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return path


def handler(args: argparse.Namespace) -> int:
    """Run ``ptycho simulate``: simulate, write the NPZ and (unless ``--no-preview``) the PNG."""
    from ptycho_core.errors import OutputExistsError
    from ptycho_data.npz import save_dataset
    from ptycho_data.simulate import simulate_dataset

    config = config_from_args(args)
    output = Path(args.output)
    preview = (Path(args.preview) if args.preview else output.with_suffix(".png")) if args.preview_enabled else None
    for path in (output, preview):
        if path is not None and path.exists() and not args.overwrite:
            raise OutputExistsError(f"{path}: already exists; pass --overwrite to replace it, or choose another "
                                    "--output")
    start = time.perf_counter()
    progress = False if getattr(args, "quiet", False) else (None if args.progress is None else bool(args.progress))
    dataset = simulate_dataset(config, progress=progress)
    if output.parent != Path(""):
        output.parent.mkdir(parents=True, exist_ok=True)
    save_dataset(dataset, output)
    photons = float(np.mean(np.sum(dataset.diffraction.astype(np.float64) ** 2, axis=(1, 2))))
    print(f"wrote {output}: {dataset.n} patterns of {dataset.N}x{dataset.N}, object "
          f"{dataset.object.shape[0]}x{dataset.object.shape[1]}, {photons:.3g} photons per pattern "
          f"({time.perf_counter() - start:.1f} s)")
    if preview is not None:
        save_preview(dataset, preview)
        print(f"preview: {preview}")
    sys.stdout.flush()
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to ``ptycho``'s sub-parsers."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a ptychography scan (DATA-001 NPZ with ground truth) and a PNG preview",
        description=("Simulate a ptychography dataset with the NumPy reference forward model: object, "
                     "probe, scan, far-field amplitudes with Poisson noise. Writes a DATA-001 NPZ "
                     "(with objectGuess) and a PNG preview next to it. Flags override --config."),
    )
    parser.add_argument("--output", "-o", required=True, type=Path, metavar="F.npz", help="NPZ file to write")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML/JSON/YAML file of SimulationConfig fields (top level or [simulation])")
    parser.add_argument("--preview", type=Path, metavar="PNG",
                        help="where to write the preview image (default: the output path with .png)")
    parser.add_argument("--no-preview", dest="preview_enabled", action="store_false",
                        help="do not write the preview image")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: only when stderr is a terminal)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output NPZ and preview (without it the command stops before "
                             "simulating and names the existing file)")
    add_output_flags(parser)
    _add_config_flags(parser)
    parser.set_defaults(func=handler, preview_enabled=True)
    return parser
