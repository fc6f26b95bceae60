"""Make the figures of the user documentation from a simulated dataset.

``docs/img/concepts.png``: object amplitude and phase, probe amplitude and phase, the scan
positions over the object, and three far-field diffraction patterns (log scale), all from
one :func:`ptycho_data.simulate.simulate_dataset` run with a fixed seed.

Usage (from the repository root)::

    python docs/scripts/make_figures.py                      # rewrite docs/img/concepts.png
    python docs/scripts/make_figures.py --output /tmp/c.png  # write elsewhere

Needs ptycho-data and matplotlib only (no backend).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ptycho_data.simulate import SimulationConfig, simulate_dataset

OUTPUT = Path(__file__).resolve().parents[1] / "img" / "concepts.png"
SIMULATION = SimulationConfig(N=64, n_positions=36, nphotons=1e6, seed=7)
"""The simulated scan shown in the figure (6 x 6 raster, step N // 8 = 8 pixels)."""


def _show(fig, ax, image: np.ndarray, title: str, cmap: str, **kwargs) -> None:
    im = ax.imshow(image, cmap=cmap, **kwargs)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)


def make_concepts_figure(output: Path, config: SimulationConfig = SIMULATION) -> Path:
    """Simulate ``config`` and save the concepts figure to ``output`` (PNG).

    Parameters
    ----------
    output : pathlib.Path
        PNG file to write; its folder is created.
    config : ptycho_data.simulate.SimulationConfig
        The simulation to draw.

    Returns
    -------
    pathlib.Path
        ``output``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    data = simulate_dataset(config, progress=False)
    obj, probe, N = data.object, data.probe, data.N
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4)
    _show(fig, axes[0, 0], np.abs(obj), "object amplitude |O|", "gray")
    _show(fig, axes[0, 1], np.angle(obj), "object phase arg O (rad)", "twilight")
    _show(fig, axes[0, 2], np.abs(probe), "probe amplitude |P|", "magma")
    _show(fig, axes[0, 3], np.angle(probe), "probe phase arg P (rad)", "twilight")
    ax = axes[1, 0]
    ax.imshow(np.abs(obj), cmap="gray")
    ax.plot(data.xcoords, data.ycoords, ".", color="tab:orange", markersize=4)
    j = data.n // 2
    x0, y0 = data.xcoords[j] - N / 2, data.ycoords[j] - N / 2
    ax.add_patch(Rectangle((x0, y0), N, N, fill=False, edgecolor="tab:cyan", linewidth=1.2))
    ax.set_title(f"{data.n} scan positions, patch {j} (box)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    for ax, k in zip(axes[1, 1:], (0, j, data.n - 1)):
        counts = data.diffraction[k].astype(np.float64) ** 2
        floor = max(float(counts[counts > 0].min()), 1e-3) if np.any(counts > 0) else 1e-3
        _show(fig, ax, np.maximum(counts, floor), f"pattern {k}: counts |F(P O_{k})|^2", "viridis",
              norm=LogNorm(vmin=floor, vmax=max(float(counts.max()), 10 * floor)))
    output.parent.mkdir(parents=True, exist_ok=True)
    _save_small_png(fig, output, dpi=64)
    return output


def _save_small_png(fig, output: Path, dpi: int) -> None:
    """Save ``fig`` as a 256-colour palette PNG (a few times smaller than RGBA, no visible loss)."""
    from PIL import Image

    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    tmp = output.with_name(f".{output.name}.part")
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)
    tmp.replace(output)


def main(argv: list[str] | None = None) -> int:
    """Write the documentation figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="PNG to write (default: docs/img/concepts.png)")
    args = parser.parse_args(argv)
    path = make_concepts_figure(args.output)
    print(f"wrote {path} ({path.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
