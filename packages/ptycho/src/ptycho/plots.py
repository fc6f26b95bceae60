"""PNG figures written by the workflow (matplotlib with the Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ptycho_core.atomic import atomic_file


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _extent(shape: tuple[int, int], origin: tuple[float, float]) -> list[float]:
    x0, y0 = origin
    return [x0 - 0.5, x0 + shape[1] - 0.5, y0 + shape[0] - 0.5, y0 - 0.5]


def save_image(image: np.ndarray, path: Path, title: str, origin: tuple[float, float] = (0.0, 0.0),
               cmap: str = "gray") -> Path:
    """One image with a colour bar and axes in object pixels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(image, cmap=cmap, extent=_extent(image.shape, origin))
    ax.set_title(title)
    ax.set_xlabel("x (object pixels)")
    ax.set_ylabel("y (object pixels)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, Path(path))


def save_loss(history: dict[str, list[float]], path: Path) -> Path:
    """Training curves per epoch: Poisson deviance (log axis) and relative amplitude misfit, with the rate.

    ``history`` is ``TrainResult.history`` (``training_log.HISTORY_KEYS``); a history without
    ``deviance`` (an older or third-party backend) shows its ``loss`` instead. Epoch ticks are
    integers; learning-rate changes are marked on the deviance panel.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    deviance = history.get("deviance") or history.get("loss") or []
    misfit = history.get("misfit") or []
    panels = 2 if misfit else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False)
    epochs = np.arange(1, len(deviance) + 1)
    ax = axes[0, 0]
    label = "Poisson deviance" if history.get("deviance") else "loss"
    positive = np.asarray(deviance, dtype=float) > 0
    ax.plot(epochs, deviance, marker="o", ms=3, color="C0", label=label)
    if positive.all():
        ax.set_yscale("log")
    lr = history.get("lr") or []
    for epoch in range(1, min(len(lr), len(deviance))):
        if lr[epoch] < lr[epoch - 1]:
            ax.axvline(epoch + 0.5, color="0.6", lw=0.8, ls="--")
            ax.annotate(f"lr {lr[epoch]:.2g}", (epoch + 0.5, 1.0), xycoords=("data", "axes fraction"),
                        fontsize=7, color="0.4", rotation=90, ha="right", va="top")
    ax.set_ylabel(f"{label} (per pixel, photon units; 0 = perfect fit)" if history.get("deviance") else label)
    ax.set_title("Network fit to the diffraction data")
    if panels == 2:
        ax2 = axes[0, 1]
        ax2.plot(epochs[:len(misfit)], misfit, marker="o", ms=3, color="C1")
        ax2.set_ylabel("relative amplitude misfit")
        ax2.set_title(r"$\sum(\sqrt{\lambda}-\sqrt{k})^2 / \sum k$")
        if all(v > 0 for v in misfit):
            ax2.set_yscale("log")
    for a in axes[0]:
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _save(fig, Path(path))


def save_comparison(reconstruction: np.ndarray, truth: np.ndarray, path: Path, metrics: dict | None = None,
                    network: np.ndarray | None = None) -> Path:
    """Ground truth vs reconstruction, amplitude and phase, with SSIM in the titles.

    With ``network`` (the network's output before refinement) a middle column shows it, scored
    with ``metrics['network']``.
    """
    plt = _pyplot()
    columns = [("ground truth", truth, None)]
    if network is not None:
        columns.append(("network", network, (metrics or {}).get("network")))
        columns.append(("refined", reconstruction, metrics))
    else:
        columns.append(("reconstruction", reconstruction, metrics))
    fig, axes = plt.subplots(2, len(columns), figsize=(4.5 * len(columns), 8), squeeze=False)
    rows = [("amplitude", np.abs, "gray"), ("phase", np.angle, "twilight")]
    for r, (name, fn, cmap) in enumerate(rows):
        for c, (label, img, scores) in enumerate(columns):
            score = ""
            if scores and isinstance(scores.get(name), dict) and "ssim" in scores[name]:
                score = f" (SSIM {scores[name]['ssim']:.3f})"
            ax = axes[r, c]
            im = ax.imshow(fn(img), cmap=cmap)
            ax.set_title(f"{name}: {label}{score}")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, Path(path))
