"""PNG figures written by the workflow (matplotlib's Agg canvas, imported lazily; pyplot is never used).

What every image figure does, so that a scientist need not redo it:

- **Unscanned pixels are masked**: :func:`scanned_mask` is the stitcher's own coverage (the
  central ``stitch_crop`` x ``stitch_crop`` crop around each scan position); pixels outside it
  are NaN in the image, drawn hatched, and never set the colour range.
- **Colour limits mean something**: a single image spans its scanned pixels (0.5 and 99.5
  percentiles, arrows on the colour bar when values are clipped); in ``comparison.png`` the truth
  and every reconstruction of a row share one colour bar, the truth's range over the scanned region.
- **Phase in radians, aligned as the metrics are**: in ``comparison.png`` each reconstruction
  has the registration shift, phase plane and offset, and amplitude scale that
  :func:`ptycho_data.metrics.evaluate_reconstruction` found applied to the whole image
  (:func:`ptycho_data.metrics.align_to_truth`), so the picture agrees with the numbers. A phase
  image alone (``phase.png``) has its amplitude-weighted mean over the scanned region removed.
  Phase uses a sequential map (``viridis``), or the cyclic ``twilight`` over -pi..pi only when
  it spans nearly 2 pi (wrapped).
- **Differences against the truth**: ``comparison.png`` has difference rows (``|O| - |O_true|``
  and the wrapped phase difference) on a diverging map with symmetric limits, each panel its
  own (from the evaluated region), so both the network's and the refined object's errors show.
- **The evaluated region** (the pixels the metrics scored, :func:`ptycho_data.metrics.evaluated_box`)
  is outlined by a dashed box.
- **Axes in object pixels**, with a second x axis in metres (nm, um or mm) when the pixel size
  is known (``Dataset.metadata['pixel_size_m']``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ptycho_core.atomic import atomic_file

AMPLITUDE_CMAP = "gray"
PHASE_CMAP = "viridis"
WRAPPED_PHASE_CMAP = "twilight"
DIFFERENCE_CMAP = "RdBu_r"
OUTLINE_COLOUR = "tab:orange"
ROBUST_PERCENTILES = (0.5, 99.5)
"""Colour limits of a single image: these percentiles of its scanned pixels."""
WRAPPED_SPAN = 1.8 * np.pi
"""A phase image whose scanned values span more than this is shown as wrapped (cyclic map, -pi..pi)."""
DPI = 110
"""Resolution of the written PNGs (the documentation's figure script lowers it)."""
MASK_NOTE = "hatched: not scanned"
OUTLINE_NOTE = "dashed box: the region the metrics score"


def _figure(**kwargs: Any) -> Any:
    """A matplotlib Figure on its own Agg canvas (no pyplot: a notebook's backend is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    return path


def _extent(shape: tuple[int, int], origin: tuple[float, float]) -> list[float]:
    x0, y0 = origin
    return [x0 - 0.5, x0 + shape[1] - 0.5, y0 + shape[0] - 0.5, y0 - 0.5]


def scanned_mask(shape: tuple[int, int], origin: tuple[float, float], positions: Any, crop: int) -> np.ndarray:
    """True where the stitcher puts a value: within the ``crop`` x ``crop`` crop of a scan position.

    The pixels :func:`ptycho_core.reference.reassemble` gives a non-zero coverage on the canvas
    ``shape`` at ``origin`` (x, y): crop pixel ``j`` of a patch at ``x`` lies at canvas column
    ``x - x0 - crop//2 + j`` and is splatted bilinearly onto its floor and, for a fractional
    position, the next column (rows alike). Computed with 2-D difference sums, O(positions + pixels)
    (no patch-sized arrays, so it stays cheap for scans of any size); positions are (x, y) in object pixels.
    """
    H, W = int(shape[0]), int(shape[1])
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    c = pos[:, 0] - round(origin[0]) - crop // 2
    r = pos[:, 1] - round(origin[1]) - crop // 2
    cs, rs = np.floor(c), np.floor(r)
    ce = cs + crop + (c > cs)  # exclusive ends; one more where the splat reaches the next pixel
    re_ = rs + crop + (r > rs)
    cs, ce = np.clip(cs, 0, W).astype(np.int64), np.clip(ce, 0, W).astype(np.int64)
    rs, re_ = np.clip(rs, 0, H).astype(np.int64), np.clip(re_, 0, H).astype(np.int64)
    keep = (ce > cs) & (re_ > rs)
    diff = np.zeros((H + 1, W + 1), dtype=np.int64)
    for rows, cols, sign in ((rs, cs, 1), (rs, ce, -1), (re_, cs, -1), (re_, ce, 1)):
        np.add.at(diff, (rows[keep], cols[keep]), sign)
    return np.cumsum(np.cumsum(diff, axis=0), axis=1)[:H, :W] > 0


def _masked(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    out = np.asarray(image, dtype=np.float64).copy()
    if mask is not None:
        out[~mask] = np.nan
    return out


def _robust_limits(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, ROBUST_PERCENTILES))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _full_limits(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _symmetric_limit(*arrays: np.ndarray) -> float:
    finite = np.concatenate([np.abs(a[np.isfinite(a)]).ravel() for a in arrays])
    if finite.size == 0:
        return 1.0
    lim = float(np.percentile(finite, ROBUST_PERCENTILES[1]))
    return lim if lim > 0 else 1.0


def _extend(values: np.ndarray, lo: float, hi: float) -> str:
    finite = values[np.isfinite(values)]
    below, above = bool(np.any(finite < lo)), bool(np.any(finite > hi))
    return {(False, False): "neither", (True, False): "min", (False, True): "max"}.get((below, above), "both")


def remove_phase_offset(obj: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Phase (rad) of ``obj`` less its amplitude-weighted circular mean over ``mask`` (all pixels if None)."""
    z = np.asarray(obj, dtype=np.complex128)
    total = np.sum(z[mask]) if mask is not None else np.sum(z)
    offset = float(np.angle(total)) if abs(total) > 0 else 0.0
    return np.angle(z * np.exp(-1j * offset))


def _metres_unit(span_m: float) -> tuple[str, float]:
    for name, size in (("nm", 1e-9), ("µm", 1e-6), ("mm", 1e-3)):
        if span_m < 1000 * size:
            return name, size
    return "m", 1.0


def _label_axes(ax: Any, shape: tuple[int, int], pixel_size_m: float | None, *, xlabel: bool = True,
                ylabel: bool = True, metres: bool = True) -> None:
    """Axis labels in object pixels; a top x axis in metres when the pixel size is known."""
    if xlabel:
        ax.set_xlabel("x (object pixels)")
    if ylabel:
        ax.set_ylabel("y (object pixels)")
    if pixel_size_m and metres:
        name, size = _metres_unit(shape[1] * pixel_size_m)
        scale = pixel_size_m / size
        top = ax.secondary_xaxis("top", functions=(lambda p: p * scale, lambda m: m / scale))
        pname, psize = _metres_unit(pixel_size_m)
        top.set_xlabel(f"x ({name}; pixel size {pixel_size_m / psize:.3g} {pname})", fontsize=8)
        top.tick_params(labelsize=7)


VIEW_MARGIN = 4
"""Pixels shown around the scanned region: the axes are zoomed to its bounding box."""


def _view(mask: np.ndarray | None, shape: tuple[int, int], origin: tuple[float, float]) -> list[float]:
    """Axis limits [left, right, bottom, top]: the scanned pixels' bounding box + :data:`VIEW_MARGIN`."""
    if mask is None or not mask.any():
        return _extent(shape, origin)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    r0, r1 = max(rows[0] - VIEW_MARGIN, 0), min(rows[-1] + VIEW_MARGIN, shape[0] - 1)
    c0, c1 = max(cols[0] - VIEW_MARGIN, 0), min(cols[-1] + VIEW_MARGIN, shape[1] - 1)
    x0, y0 = origin
    return [x0 + c0 - 0.5, x0 + c1 + 0.5, y0 + r1 + 0.5, y0 + r0 - 0.5]


def _panel(ax: Any, image: np.ndarray, origin: tuple[float, float], cmap: str, vmin: float, vmax: float,
           view: list[float] | None = None) -> Any:
    """Draw ``image`` (NaN = masked, shown hatched) with fixed colour limits; returns the AxesImage.

    ``view`` = [left, right, bottom, top] limits the axes (default: the whole image).
    """
    import matplotlib
    from matplotlib.patches import Rectangle

    extent = _extent(image.shape, origin)
    if np.isnan(image).any():
        ax.add_patch(Rectangle((extent[0], extent[3]), extent[1] - extent[0], extent[2] - extent[3],
                               facecolor="white", edgecolor="0.65", hatch="////", linewidth=0, zorder=0,
                               gid="unscanned"))
    colours = matplotlib.colormaps[cmap].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    im = ax.imshow(image, cmap=colours, vmin=vmin, vmax=vmax, extent=extent, interpolation="nearest", zorder=1)
    view = view or extent
    ax.set_xlim(view[0], view[1])
    ax.set_ylim(view[2], view[3])
    return im


def _outline(ax: Any, box: tuple[int, int, int, int] | None, origin: tuple[float, float] = (0.0, 0.0),
             colour: str = OUTLINE_COLOUR) -> None:
    """Dashed outline of ``box`` = (y0, y1, x0, x1) canvas pixels (half-open), the evaluated region."""
    if box is None:
        return
    from matplotlib.patches import Rectangle

    y0, y1, x0, x1 = box
    ax.add_patch(Rectangle((origin[0] + x0 - 0.5, origin[1] + y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                           edgecolor=colour, linestyle="--", linewidth=1.2, zorder=3,
                           gid="evaluated-region"))


def _notes(mask: np.ndarray | None, box: Any) -> str:
    notes = []
    if mask is not None and not mask.all():
        notes.append(MASK_NOTE)
    if box is not None:
        notes.append(OUTLINE_NOTE)
    return "; ".join(notes)


def image_figure(image: np.ndarray, title: str, origin: tuple[float, float] = (0.0, 0.0), *, kind: str = "amplitude",
                 mask: np.ndarray | None = None, pixel_size_m: float | None = None,
                 box: tuple[int, int, int, int] | None = None) -> Any:
    """One amplitude or phase image (``kind``) with its colour bar, masked outside ``mask``.

    ``image`` is real (amplitude, or phase in radians; for the phase of a complex object use
    :func:`remove_phase_offset` first). Colour limits: :data:`ROBUST_PERCENTILES` of the scanned
    pixels; a phase spanning more than :data:`WRAPPED_SPAN` is shown wrapped on -pi..pi with
    the cyclic map. ``box`` (y0, y1, x0, x1) is outlined as the evaluated region.
    """
    data = _masked(image, mask)
    if kind == "phase":
        lo, hi = _robust_limits(data)
        cmap, label = PHASE_CMAP, "phase (rad)"
        if hi - lo > WRAPPED_SPAN:
            lo, hi, cmap, label = -np.pi, np.pi, WRAPPED_PHASE_CMAP, "phase (rad, wrapped)"
    else:
        lo, hi = _robust_limits(data)
        cmap, label = AMPLITUDE_CMAP, "amplitude |O|"
    fig = _figure(figsize=(5.6, 5.0), layout="constrained")
    ax = fig.subplots()
    im = _panel(ax, data, origin, cmap, lo, hi, _view(mask, data.shape, origin))
    _outline(ax, box, origin)
    ax.set_title(title)
    _label_axes(ax, data.shape, pixel_size_m)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label, extend=_extend(data, lo, hi))
    note = _notes(mask, box)
    if note:
        fig.supxlabel(note, fontsize=7, color="0.35")
    return fig


def save_image(image: np.ndarray, path: Path, title: str, origin: tuple[float, float] = (0.0, 0.0), *,
               kind: str = "amplitude", mask: np.ndarray | None = None, pixel_size_m: float | None = None,
               box: tuple[int, int, int, int] | None = None) -> Path:
    """Write :func:`image_figure` to ``path`` (PNG)."""
    return _save(image_figure(image, title, origin, kind=kind, mask=mask, pixel_size_m=pixel_size_m, box=box),
                 Path(path))


def save_loss(history: dict[str, list[float]], path: Path) -> Path:
    """Training curves per epoch: Poisson deviance (log axis) and relative amplitude misfit, with the rate.

    ``history`` is ``TrainResult.history`` (``training_log.HISTORY_KEYS``); a history without
    ``deviance`` (an older or third-party backend) shows its ``loss`` instead. Epoch ticks are
    integers; learning-rate changes are marked on the deviance panel.
    """
    return _save(loss_figure(history), Path(path))


def loss_figure(history: dict[str, list[float]]) -> Any:
    """The figure of :func:`save_loss`."""
    from matplotlib.ticker import MaxNLocator

    deviance = history.get("deviance") or history.get("loss") or []
    misfit = history.get("misfit") or []
    panels = 2 if misfit else 1
    fig = _figure(figsize=(5.2 * panels, 3.8), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)
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
    ax.set_ylabel(f"{label} per pixel\n(photon units; 0 = perfect fit)" if history.get("deviance") else label)
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
    return fig


def _score(scores: dict | None, name: str) -> str:
    if not scores or not isinstance(scores.get(name), dict):
        return ""
    s = scores[name]
    parts = []
    if "ssim" in s:
        parts.append(f"SSIM {s['ssim']:.3f}")
    if "psnr" in s:
        parts.append(f"PSNR {s['psnr']:.1f} dB")
    return "\n" + ", ".join(parts) if parts else ""


def comparison_figure(reconstruction: np.ndarray, truth: np.ndarray, metrics: dict | None = None,
                      network: np.ndarray | None = None, *, mask: np.ndarray | None = None,
                      pixel_size_m: float | None = None) -> Any:
    """Ground truth vs reconstruction: amplitude, amplitude difference, phase, phase difference rows.

    Each reconstruction is aligned to the truth as its metrics were (:func:`ptycho_data.metrics.align_to_truth`
    with ``metrics``, or ``metrics['network']`` for ``network``, the output before refinement,
    shown in a middle column). The amplitude and phase rows share one colour bar (the truth's
    range over ``mask``); each difference panel has its own symmetric diverging colour bar, its
    range taken inside the evaluated region (so the network's edge artefacts do not flatten the
    refined object's errors; values beyond are clipped and marked by the bar's arrows).
    Pixels outside ``mask`` (the scanned region) are NaN and drawn hatched; the evaluated region
    is outlined. ``truth`` and the reconstructions are on one grid with origin (0, 0).
    """
    from ptycho_data.metrics import align_to_truth, evaluated_box

    metrics = metrics or {}
    columns: list[tuple[str, np.ndarray, dict | None]] = []
    if network is not None:
        columns.append(("network", network, metrics.get("network")))
        columns.append(("refined", reconstruction, metrics))
    else:
        columns.append(("reconstruction", reconstruction, metrics))
    truth = np.asarray(truth, dtype=np.complex128)
    t_amp, t_phase = _masked(np.abs(truth), mask), _masked(np.angle(truth), mask)
    rows_amp, rows_phase, diff_amp, diff_phase, boxes = [], [], [], [], []
    for _, img, scores in columns:
        aligned = align_to_truth(img, scores) if scores and "phase_plane" in scores else np.asarray(img)
        wrapped = np.angle(aligned * np.conj(truth))  # as the metrics: true phase + wrapped difference
        rows_amp.append(_masked(np.abs(aligned), mask))
        rows_phase.append(_masked(np.angle(truth) + wrapped, mask))
        diff_amp.append(_masked(np.abs(aligned) - np.abs(truth), mask))
        diff_phase.append(_masked(wrapped, mask))
        boxes.append(evaluated_box(scores) if scores and "crop" in scores else None)
    amp_lim = _full_limits(t_amp)
    phase_lim = _full_limits(t_phase)
    phase_cmap = WRAPPED_PHASE_CMAP if phase_lim[1] - phase_lim[0] > WRAPPED_SPAN else PHASE_CMAP

    def inside(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
        return image if box is None else image[box[0]:box[1], box[2]:box[3]]

    # differences: each its own symmetric range, from the region the metrics score (edge artefacts clip)
    d_amp = [None, *(_symmetric_limit(inside(d, b)) for d, b in zip(diff_amp, boxes))]
    d_phase = [None, *(_symmetric_limit(inside(d, b)) for d, b in zip(diff_phase, boxes))]

    ncol = 1 + len(columns)
    fig = _figure(figsize=(3.3 * ncol + 1.2 + 0.6 * (ncol - 2), 12.6), layout="constrained")
    axes = fig.subplots(4, ncol, squeeze=False)
    origin = (0.0, 0.0)
    shape = truth.shape
    view = _view(mask, shape, origin)
    specs = [
        ("amplitude", [t_amp, *rows_amp], AMPLITUDE_CMAP, amp_lim, "amplitude |O|"),
        ("amplitude - truth", [None, *diff_amp], DIFFERENCE_CMAP, d_amp, "|O| - |O_true|"),
        ("phase", [t_phase, *rows_phase], phase_cmap, phase_lim, "phase (rad)"),
        ("phase - truth", [None, *diff_phase], DIFFERENCE_CMAP, d_phase, "phase difference (rad)"),
    ]
    for r, (name, images, cmap, limits, label) in enumerate(specs):
        shared = isinstance(limits, tuple)
        row_axes, im = [], None
        for c, image in enumerate(images):
            ax = axes[r, c]
            if image is None:
                ax.set_axis_off()
                continue
            lo, hi = limits if shared else (-limits[c], limits[c])
            im = _panel(ax, image, origin, cmap, lo, hi, view)
            box = boxes[c - 1] if c > 0 else next((b for b in boxes if b is not None), None)
            _outline(ax, box, colour=OUTLINE_COLOUR if cmap != DIFFERENCE_CMAP else "0.15")
            who = "ground truth" if c == 0 else columns[c - 1][0]
            score = _score(columns[c - 1][2], name) if c > 0 and name in ("amplitude", "phase") else ""
            ax.set_title(f"{name}: {who}{score}", fontsize=9)
            _label_axes(ax, shape, pixel_size_m, xlabel=(r == 3 or (r == 2 and c == 0)),
                        ylabel=(c == int(images[0] is None)),
                        metres=(r == 0))
            ax.tick_params(labelsize=7)
            row_axes.append(ax)
            if not shared:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label=label, extend=_extend(image, lo, hi))
        if shared:
            values = np.concatenate([i[np.isfinite(i)].ravel() for i in images if i is not None])
            fig.colorbar(im, ax=row_axes, fraction=0.046, pad=0.02, label=label, extend=_extend(values, *limits))
    axes[1, 0].text(0.0, 0.5, _alignment_note(columns), fontsize=7.5, va="center", ha="left", wrap=True,
                    transform=axes[1, 0].transAxes)
    axes[3, 0].text(0.0, 0.5, "\n".join(filter(None, [
        "Colour limits: the truth's range over",
        "the scanned region, shared by a row;",
        "differences: symmetric, each its own",
        "scale, from the scored region.",
        "Phase in radians; reconstructions aligned",
        "to the truth exactly as for the metrics.",
        _notes(mask, boxes[-1]).replace("; ", "\n")])), fontsize=7.5, va="center", ha="left",
        transform=axes[3, 0].transAxes)
    return fig


def _alignment_note(columns: list[tuple[str, np.ndarray, dict | None]]) -> str:
    lines = []
    for label, _, scores in columns:
        if not scores or "phase_plane" not in scores:
            lines.append(f"{label}: not aligned (no metrics)")
            continue
        plane = scores["phase_plane"]
        lines.append(f"{label}, as for the metrics:")
        lines.append(f"  amplitude x {scores.get('amplitude_scale', 1.0):.3f}")
        lines.append(f"  phase offset {plane['offset']:+.3f} rad removed")
        lines.append(f"  plane {plane['slope_x']:+.2g}, {plane['slope_y']:+.2g} rad/px (x, y)")
        if scores.get("shift"):
            lines.append(f"  shifted by ({scores['shift'][0]:+.2f}, {scores['shift'][1]:+.2f}) px")
    return "\n".join(lines)


def save_comparison(reconstruction: np.ndarray, truth: np.ndarray, path: Path, metrics: dict | None = None,
                    network: np.ndarray | None = None, *, mask: np.ndarray | None = None,
                    pixel_size_m: float | None = None) -> Path:
    """Write :func:`comparison_figure` to ``path`` (PNG)."""
    return _save(comparison_figure(reconstruction, truth, metrics, network, mask=mask, pixel_size_m=pixel_size_m),
                 Path(path))
