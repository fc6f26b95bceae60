"""benchmarks/group_fit.py: the network trained on a few groups, the deviance against the distance to the truth."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import benchmark_script

from ptycho_data.simulate import SimulationConfig, simulate_dataset


def _script():
    return benchmark_script("group_fit")


def test_distances_ignore_one_amplitude_factor_and_one_phase_per_group_only():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    truth = torch.from_numpy((rng.uniform(0.5, 1.0, (3, 8, 8)) * np.exp(1j * rng.uniform(-1, 1, (3, 8, 8))))
                             .astype(np.complex64))
    support = torch.zeros(3, 8, 8, dtype=torch.bool)
    support[:, 2:6, 1:7] = True
    phases = torch.exp(1j * torch.tensor([2.5, -1.0, 0.3]))
    factors = (torch.tensor([0.5, 1.0, 3.0]) * phases)[:, None, None]
    outside = torch.where(support, 0, 7.0)  # pixels outside the support do not count
    amp, phase = _script().distances(truth * factors + outside, truth, support)
    assert amp < 1e-6 and phase < 1e-5
    blurred = truth.clone()
    blurred[:, 2:6, 1:7] = truth[:, 2:6, 1:7].abs().mean() * torch.exp(1j * truth[:, 2:6, 1:7].angle())
    amp, phase = _script().distances(blurred, truth, support)  # amplitude flattened, phase kept
    assert amp > 0.05 and phase < 1e-5
    amp, phase = _script().distances(truth.abs() + 0j, truth, support)  # phase removed
    assert amp < 1e-6 and phase > 0.1


def test_fitting_a_few_groups_lowers_the_deviance_and_reports_both_errors():
    pytest.importorskip("ptycho_torch")
    ds = simulate_dataset(SimulationConfig(n_positions=64, seed=5), progress=False)
    res = _script().fit(ds, "pretrained:sim-n64-g2", groups=3, steps=10, every=5, lr=1e-3)
    assert res["groups"] == 3
    rows = res["rows"]
    assert [r["step"] for r in rows] == [0, 5, 10]
    assert rows[-1]["deviance"] < rows[0]["deviance"]
    assert res["truth_deviance"] < rows[0]["deviance"]
    for r in rows:
        assert 0 < r["amp_err"] < 1 and 0 < r["phase_err"] < np.pi
