"""Make the figures of the user documentation from a simulated dataset.

``docs/img/concepts.png``: object amplitude and phase, probe amplitude and phase, the scan
positions over the object, and three far-field diffraction patterns (log scale), all from
one :func:`ptycho_data.simulate.simulate_dataset` run with a fixed seed. Needs ptycho-data and
matplotlib only (no backend).

``docs/img/result-{amplitude,phase,comparison,loss}.png`` (``--results``): the figures
``ptycho demo`` writes, from a shorter run on the demo's simulated scan (the demo's CPU preset,
:data:`RESULT_EPOCHS` epochs, 20 refinement passes; the pytorch backend; it took 16 minutes on
two cores shared with other jobs, load 4-6, when the committed images were made). They are
written by the workflow itself (:func:`ptycho.workflow.write_outputs`
through :func:`ptycho.reconstruct`) at a lower resolution and saved as palette PNGs.

Usage (from the repository root)::

    python docs/scripts/make_figures.py                      # rewrite docs/img/concepts.png
    python docs/scripts/make_figures.py --output /tmp/c.png  # write elsewhere
    python docs/scripts/make_figures.py --results            # also rewrite docs/img/result-*.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ptycho_data.simulate import SimulationConfig, simulate_dataset

IMG = Path(__file__).resolve().parents[1] / "img"
OUTPUT = IMG / "concepts.png"
RESULT_EPOCHS = 20
"""Epochs of the run whose figures are shown (the demo trains 60; the figures' content is the same)."""
RESULT_PIXEL_SIZE_M = 1e-8
"""A pixel size given to the run so that the figures show their metre axis (the simulation has none)."""
RESULT_FIGURES = ("amplitude", "phase", "comparison", "loss")
QUANTIZE = {"amplitude": "MEDIANCUT", "phase": "MEDIANCUT", "loss": "MEDIANCUT", "comparison": "FASTOCTREE"}
"""PIL palette method per figure: MEDIANCUT keeps smooth grey ramps; FASTOCTREE keeps the 12-panel comparison small."""
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
    _show(fig, axes[0, 1], np.angle(obj), "object phase arg O (rad)", "viridis")  # not wrapped: sequential
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
    _palette_png(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]), output)


def _palette_png(image, output: Path, method: str = "MEDIANCUT") -> None:
    """Save a PIL image as a 256-colour palette PNG (``method``: a PIL ``Image.Quantize`` name)."""
    from PIL import Image

    tmp = output.with_name(f".{output.name}.part")
    method = getattr(Image.Quantize, method)
    image.convert("RGB").quantize(colors=256, method=method).save(tmp, format="PNG", optimize=True)
    tmp.replace(output)


def _demo_scan():
    """The scan ``ptycho demo`` simulates and its positions as an (n, 2) array."""
    from ptycho_core.config import TrainingConfig

    data = simulate_dataset(SimulationConfig(seed=TrainingConfig().seed), progress=False)  # as `ptycho demo`
    positions = np.stack([data.xcoords, data.ycoords], axis=1)
    return data, positions


def train_demo_model(nepochs: int = RESULT_EPOCHS, output_dir: Path | None = None):
    """Train on the demo's scan with the demo's CPU preset (pytorch); returns the ``TrainResult``."""
    import ptycho
    from ptycho.cli_workflow import CPU_PRESET

    data, positions = _demo_scan()
    preset = {k: v for k, v in CPU_PRESET.items() if k != "refine_iterations"}
    return ptycho.train(data.diffraction, positions, data.probe, backend="pytorch", nepochs=nepochs, progress=False,
                        output_dir=output_dir, **preset)


def make_result_figures(directory: Path = IMG, nepochs: int = RESULT_EPOCHS, dpi: int = 66, single_dpi: int = 90, *,
                        model=None, history: dict | None = None) -> list[Path]:
    """Train and reconstruct the demo's scan; save its four figures as ``directory/result-NAME.png``.

    Parameters
    ----------
    directory : pathlib.Path
        Folder of the PNGs (created).
    nepochs : int
        Training epochs (when ``model`` is not given).
    dpi, single_dpi : int
        Resolution the workflow renders comparison.png (``dpi``) and the other figures at.
    model : path or model, optional
        A model trained by :func:`train_demo_model` (then ``history`` is its training history).

    Returns
    -------
    list of pathlib.Path
        The PNGs written.
    """
    import tempfile

    from PIL import Image

    import ptycho
    from ptycho import api, plots, workflow
    from ptycho.cli_workflow import CPU_PRESET

    data, positions = _demo_scan()
    if model is None:
        trained = train_demo_model(nepochs)
        model, history = trained, trained.history
    dataset = api.as_dataset(data.diffraction, positions, data.probe, ground_truth=data.object,
                             pixel_size_m=RESULT_PIXEL_SIZE_M)
    directory.mkdir(parents=True, exist_ok=True)
    rec = ptycho.reconstruct(data.diffraction, positions, data.probe, model=model, ground_truth=data.object,
                             refine=CPU_PRESET["refine_iterations"], progress=False)
    rec.metadata.history = history  # as workflow.run: loss.png too
    written = []
    old_dpi = plots.DPI
    try:
        for names, resolution in (({"amplitude", "phase", "loss"}, single_dpi), ({"comparison"}, dpi)):
            plots.DPI = resolution  # the single figures larger, the comparison (12 panels) small
            with tempfile.TemporaryDirectory() as tmp:
                workflow.write_outputs(rec, dataset, Path(tmp))
                for name in sorted(names):
                    target = directory / f"result-{name}.png"
                    with Image.open(Path(tmp) / f"{name}.png") as image:
                        _palette_png(image, target, QUANTIZE[name])
                    written.append(target)
    finally:
        plots.DPI = old_dpi
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the documentation figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="PNG to write (default: docs/img/concepts.png)")
    parser.add_argument("--results", action="store_true",
                        help="also train and reconstruct the demo's scan and rewrite docs/img/result-*.png "
                             "(needs the pytorch backend; minutes on a CPU)")
    args = parser.parse_args(argv)
    paths = [make_concepts_figure(args.output)]
    if args.results:
        paths += make_result_figures()
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
