"""benchmarks/loss_ceiling.py: free patches under the PyTorch training loss keep the truth only when the probe
lies inside the model's object support (physics.md s5, "Object support and the probe"): the windowed probe in
the default N/2 window, the default probe in a window of the whole patch (``object_window`` 1.0)."""

from __future__ import annotations

import pytest
from cli_helpers import benchmark_script

from ptycho_data.simulate import SimulationConfig, simulate_dataset


def _script():
    return benchmark_script("loss_ceiling")


@pytest.mark.parametrize(("window", "object_window"), [(True, 0.5), (False, 0.5), (False, 1.0)])
def test_fitting_from_the_truth_keeps_it_only_when_the_support_holds_the_probe(window, object_window):
    pytest.importorskip("ptycho_torch")
    ds = simulate_dataset(SimulationConfig(n_positions=64, probe_window=window, seed=5), progress=False)
    rows = _script().fit(ds, steps=60, every=30, lr=0.01, start="truth", object_window=object_window)
    assert [r["step"] for r in rows] == [0, 30, 60]
    assert rows[0]["amp_ssim"] > 0.999 and rows[0]["phase_ssim"] > 0.999
    assert rows[-1]["deviance"] < rows[0]["deviance"]
    if window or object_window == 1.0:  # the loss falls to the Poisson floor (about 0.4 per detector pixel)
        # and the truth stays: the windowed probe lies inside the N/2 window, the default one inside the whole patch
        assert rows[-1]["deviance"] < 5.0
        assert rows[-1]["amp_ssim"] > 0.99 and rows[-1]["phase_ssim"] > 0.99
    else:  # the probe's tails outside the window: a misfit no object removes, and the amplitude drifts
        assert rows[-1]["deviance"] > 50.0
        assert rows[-1]["amp_ssim"] < 0.97
