"""The workflow's figures say what a scientist needs (issue 19): what is checked is the drawn content.

Masked (NaN) unscanned pixels that do not set the colour range, colour limits shared between
the truth and the reconstruction, phase aligned as the metrics are, difference rows, the
evaluated region outlined, axis labels in pixels and metres, integer epoch ticks.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ptycho import plots
from ptycho_data.metrics import evaluate_reconstruction, evaluated_box


def _object(shape=(80, 80), seed=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amp = 0.6 + 0.3 * np.tanh(ndimage.gaussian_filter(rng.standard_normal(shape), 3) * 8)
    phase = 0.8 * np.tanh(ndimage.gaussian_filter(rng.standard_normal(shape), 3) * 8)
    return amp * np.exp(1j * phase)


POSITIONS = np.array([[x, y] for y in range(25, 56, 6) for x in range(25, 56, 6)], dtype=float)


def _images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def _patches(ax, gid):
    return [p for p in ax.patches if p.get_gid() == gid]


def test_scanned_mask_is_the_stitched_coverage():
    mask = plots.scanned_mask((80, 80), (0, 0), POSITIONS, 20)
    assert mask[40, 40] and mask[25 - 10, 25 - 10] and mask[55 + 9, 55 + 9]
    assert not mask[5, 5] and not mask[75, 40] and not mask[40, 13]
    shifted = plots.scanned_mask((80, 80), (10, 0), POSITIONS, 20)  # canvas origin x = 10
    np.testing.assert_array_equal(shifted[:, :70], mask[:, 10:])


@pytest.mark.parametrize(("crop", "origin"), [(20, (0, 0)), (7, (-3, 5)), (16, (12, -4))])
def test_scanned_mask_equals_the_reference_stitcher_coverage(crop, origin):
    from ptycho_core import reference

    rng = np.random.default_rng(crop)
    positions = np.concatenate([rng.uniform(-10, 90, size=(60, 2)), np.round(rng.uniform(0, 80, size=(20, 2)))])
    ones = np.ones((len(positions), crop, crop), np.float32)
    _, coverage = reference.reassemble(ones, positions, crop, (70, 90), origin, return_coverage=True)
    np.testing.assert_array_equal(plots.scanned_mask((70, 90), origin, positions, crop), coverage > 1e-6)


def test_image_masks_unscanned_pixels_which_do_not_set_the_colour_range():
    obj = _object()
    mask = plots.scanned_mask(obj.shape, (0, 0), POSITIONS, 20)
    amp = np.abs(obj)
    amp[~mask] = 50.0  # an unscanned region full of junk must not matter
    fig = plots.image_figure(amp, "Amplitude", kind="amplitude", mask=mask)
    (im,) = _images(fig)
    data = np.ma.getdata(im.get_array())
    assert np.isnan(data[~mask]).all() and np.isfinite(data[mask]).all()
    lo, hi = im.get_clim()
    assert hi < 1.0 and lo > 0.2  # the scanned amplitudes (0.3..0.9), not 50
    ax = im.axes
    assert _patches(ax, "unscanned"), "the masked region is drawn hatched"
    assert ax.get_xlabel() == "x (object pixels)" and ax.get_ylabel() == "y (object pixels)"
    assert ax.get_xlim()[0] > 0  # zoomed to the scanned region
    assert plots.MASK_NOTE in fig._supxlabel.get_text()


def test_phase_image_uses_a_sequential_map_unless_wrapped_and_metres_when_known():
    obj = _object() * np.exp(1j * 2.9)  # an offset that would wrap around +-pi
    mask = plots.scanned_mask(obj.shape, (0, 0), POSITIONS, 20)
    phase = plots.remove_phase_offset(obj, mask)
    assert np.ptp(phase[mask]) < 2.0  # the offset is gone, no wrap left
    fig = plots.image_figure(phase, "Phase", kind="phase", mask=mask, pixel_size_m=2e-8)
    (im,) = _images(fig)
    assert im.get_cmap().name.startswith(plots.PHASE_CMAP)
    labels = [child.get_xlabel() for ax in fig.axes for child in ax.child_axes]
    assert any("µm" in label and "20 nm" in label for label in labels), labels
    wrapped = plots.image_figure(np.angle(np.exp(1j * np.linspace(-4, 4, 6400))).reshape(80, 80), "Phase",
                                 kind="phase")
    (im,) = _images(wrapped)
    assert im.get_cmap().name.startswith(plots.WRAPPED_PHASE_CMAP) and im.get_clim() == (-np.pi, np.pi)


def test_comparison_shares_limits_aligns_phase_like_the_metrics_and_outlines_the_scored_region():
    truth = _object()
    yy, xx = np.mgrid[0:80, 0:80]
    rec = 0.5 * truth * np.exp(1j * (0.04 * xx - 0.02 * yy + 2.0))  # scale, phase plane and offset only
    mask = plots.scanned_mask(truth.shape, (0, 0), POSITIONS, 20)
    rec = np.where(mask, rec, 0)
    metrics = evaluate_reconstruction(rec, truth, POSITIONS)
    fig = plots.comparison_figure(rec, truth, metrics, mask=mask)
    images = {im.axes.get_title().split("\n")[0]: im for im in _images(fig)}
    assert set(images) == {"amplitude: ground truth", "amplitude: reconstruction",
                           "amplitude - truth: reconstruction", "phase: ground truth", "phase: reconstruction",
                           "phase - truth: reconstruction"}
    for name in ("amplitude", "phase"):  # one colour range for truth and reconstruction
        assert images[f"{name}: ground truth"].get_clim() == images[f"{name}: reconstruction"].get_clim()
    phase_t = np.ma.getdata(images["phase: ground truth"].get_array())
    phase_r = np.ma.getdata(images["phase: reconstruction"].get_array())
    np.testing.assert_allclose(phase_r[mask], phase_t[mask], atol=1e-6)  # offset and plane removed as for the metrics
    amp_r = np.ma.getdata(images["amplitude: reconstruction"].get_array())
    np.testing.assert_allclose(amp_r[mask], np.abs(truth)[mask], atol=1e-6)  # amplitude scale as for the metrics
    assert np.isnan(phase_r[~mask]).all()
    lo, hi = images["phase: ground truth"].get_clim()
    assert lo == pytest.approx(np.angle(truth)[mask].min()) and hi == pytest.approx(np.angle(truth)[mask].max())
    assert images["phase: ground truth"].get_cmap().name.startswith(plots.PHASE_CMAP)
    diff = images["phase - truth: reconstruction"]
    assert diff.get_clim()[0] == -diff.get_clim()[1]
    assert diff.get_cmap().name.startswith(plots.DIFFERENCE_CMAP)
    assert np.nanmax(np.abs(np.ma.getdata(diff.get_array()))) < 1e-6
    y0, y1, x0, x1 = evaluated_box(metrics)
    for im in images.values():
        (box,) = _patches(im.axes, "evaluated-region")
        assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (x0 - 0.5, y0 - 0.5, x1 - x0, y1 - y0)
    assert "SSIM" in images["phase: reconstruction"].axes.get_title()
    assert images["phase - truth: reconstruction"].axes.get_xlabel() == "x (object pixels)"


def test_comparison_with_the_network_output_has_one_column_more():
    truth = _object()
    metrics = evaluate_reconstruction(truth * 0.9, truth, POSITIONS)
    metrics["network"] = evaluate_reconstruction(truth * 0.5, truth, POSITIONS)
    fig = plots.comparison_figure(truth * 0.9, truth, metrics, network=truth * 0.5)
    titles = {im.axes.get_title().split("\n")[0] for im in _images(fig)}
    assert {"amplitude: network", "amplitude: refined", "phase - truth: network", "phase - truth: refined"} <= titles


def test_loss_has_integer_epochs_and_a_log_deviance_axis():
    fig = plots.loss_figure({"deviance": [3.0, 1.0, 0.5], "misfit": [0.3, 0.2, 0.1], "lr": [1e-3, 1e-3, 5e-4]})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert all(float(t).is_integer() for t in ticks)


def test_save_image_writes_a_png(tmp_path):
    path = plots.save_image(np.ones((20, 20)), tmp_path / "a.png", "A")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
