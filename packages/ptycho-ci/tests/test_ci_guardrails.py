"""Selectors, runtime rules, the integration profile and calibration."""

from __future__ import annotations

import pytest
from ci_helpers import add_run, failed, healthy_run, integration, passed

from ptycho_ci.errors import SelectorError, TriggerSpecError
from ptycho_ci.guardrails import (
    INTEGRATION_PROFILE,
    Group,
    RuntimeRule,
    Selector,
    calibrate,
    calibrate_from_history,
    measure,
)
from ptycho_ci.history import HistoryStore
from ptycho_ci.triggers import load_triggers

RESULTS = [
    passed("tests/integration/test_cycle.py::test_run[pytorch]", 10.0, markers=("integration",)),
    passed("tests/integration/test_cycle.py::test_run[tensorflow]", 30.0, markers=("integration",)),
    passed("packages/ptycho-core/tests/test_config.py::test_defaults", 0.5),
]


@pytest.mark.parametrize(("text", "expected"), [
    ("session", 3), ("marker:integration", 2), ("node:tests/integration/*", 2),
    ("node:tests/integration/test_cycle.py::test_run[pytorch]", 1), ("group:core", 1),
])
def test_selector_matches(text, expected):
    groups = {"core": Group("core", nodeid=("packages/ptycho-core/*",))}
    sel = Selector.parse(text)
    assert str(sel) == text
    assert sum(sel.matches(r, groups) for r in RESULTS) == expected


@pytest.mark.parametrize("text", ["", "marker:", "nodes:x", "integration"])
def test_bad_selector(text):
    with pytest.raises(SelectorError, match="expected 'session'"):
        Selector.parse(text)


def test_unknown_group_selector():
    with pytest.raises(SelectorError, match="unknown group 'nope'"):
        Selector.parse("group:nope").matches(RESULTS[0], {})


def test_measure_aggregates():
    sel = Selector.parse("marker:integration")
    assert measure(RESULTS, sel) == {"marker:integration": 40.0}
    assert measure(RESULTS, sel, aggregate="max") == {"marker:integration": 30.0}
    assert measure(RESULTS, sel, aggregate="each") == {RESULTS[0].nodeid: 10.0, RESULTS[1].nodeid: 30.0}
    assert measure(RESULTS, Selector.parse("marker:parity")) == {}
    with pytest.raises(SelectorError, match="aggregate 'mean'"):
        measure(RESULTS, sel, aggregate="mean")


def test_runtime_rule_bounds():
    hard = RuntimeRule(max_seconds=90, baseline_multiple=2.5)
    assert hard.beyond(90.5) and not hard.beyond(90.0)
    assert hard.threshold(40.0) == 100.0 and not hard.beyond(95.0, baseline=40.0)
    fast = RuntimeRule(min_seconds=20, baseline_multiple=0.55)
    assert fast.beyond(19.9) and not fast.beyond(20.0)
    sustained = RuntimeRule(max_seconds=60, consecutive=3)
    assert not sustained.breached([70, 70])
    assert sustained.breached([10, 70, 70, 70])
    assert not sustained.breached([70, 70, 70, 10])


@pytest.mark.parametrize("kwargs", [{}, {"max_seconds": 1, "min_seconds": 1}, {"max_seconds": 0},
                                    {"max_seconds": 5, "baseline_multiple": -1}, {"max_seconds": 5, "consecutive": 0}])
def test_invalid_rules(kwargs):
    with pytest.raises(TriggerSpecError):
        RuntimeRule(**kwargs)


def test_profile_matches_the_shipped_runtime_triggers():
    """RT-001/002/003 in triggers.toml are exactly the integration profile (90 s / 60 s x3 / 20 s)."""
    ts = load_triggers()
    assert ts.triggers["RT-001"].condition.rule == INTEGRATION_PROFILE.hard_max
    assert ts.triggers["RT-002"].condition.rule == INTEGRATION_PROFILE.warning
    assert ts.triggers["RT-003"].condition.rule == INTEGRATION_PROFILE.too_fast
    # the multiples reproduce the absolute limits at the reference baseline of 36 s
    for rule, seconds in ((INTEGRATION_PROFILE.hard_max, 90), (INTEGRATION_PROFILE.warning, 60),
                          (INTEGRATION_PROFILE.too_fast, 20)):
        assert rule.threshold(36.0) == pytest.approx(seconds, rel=0.02)


def test_calibrate_is_the_median():
    assert calibrate([30, 100, 36, 35, 40]) == 36.0
    with pytest.raises(SelectorError, match="at least 3 runs"):
        calibrate([1.0, 2.0])


def test_calibrate_from_history_uses_healthy_runs_only(tmp_path):
    with HistoryStore(tmp_path / "h.sqlite") as store:
        for seconds in (30.0, 34.0, 38.0):
            healthy_run(store, seconds)
        broken = [failed("tests/integration/test_cli_cycle.py::test_run[pytorch]", "AssertionError", "x",
                         markers=("integration",))]
        add_run(store, broken + integration(2.0)[1:])
        add_run(store, [passed("packages/ptycho-core/tests/test_config.py::test_defaults")])
        sel = Selector.parse("marker:integration")
        assert calibrate_from_history(store, sel) == (34.0, 3)
        assert calibrate_from_history(store, sel, last=2, minimum_runs=2) == (36.0, 2)
        with pytest.raises(SelectorError, match="needs at least 5 healthy runs"):
            calibrate_from_history(store, sel, minimum_runs=5)
