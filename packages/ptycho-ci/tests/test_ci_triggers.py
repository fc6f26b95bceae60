"""The shipped triggers fire on crafted histories and stay quiet on healthy ones."""

from __future__ import annotations

import pytest
from ci_helpers import add_run, failed, healthy_run, integration, passed

from ptycho_ci.evaluate import evaluate, exit_code
from ptycho_ci.history import HistoryStore
from ptycho_ci.records import ArtifactFinding
from ptycho_ci.triggers import SEVERITIES, load_triggers

SHIPPED = ["RT-001", "RT-002", "RT-003", "FAIL-001", "FAIL-002", "FAIL-003", "POLICY-001", "CONFIG-001",
           "FORMAT-001", "PARITY-001", "ARTIF-001", "ARTIF-002"]


def _failing(store, result):
    healthy_run(store)
    return add_run(store, [passed("packages/ptycho-core/tests/test_config.py::test_defaults"), result,
                           *integration(36.0)])


SCENARIOS = {
    "RT-001": lambda s: add_run(s, integration(100.0)),
    "RT-002": lambda s: [add_run(s, integration(70.0)) for _ in range(3)],
    "RT-003": lambda s: add_run(s, integration(5.0)),
    "FAIL-001": lambda s: _failing(s, failed("packages/ptycho-data/tests/test_npz.py::test_roundtrip",
                                             "AssertionError", "assert 3 == 4")),
    "FAIL-002": lambda s: _failing(s, failed("packages/ptycho-core/tests/test_registry.py::test_default_backend",
                                             "AssertionError", "expected 'pytorch', got 'tensorflow'")),
    "FAIL-003": lambda s: _failing(s, failed("packages/ptycho-torch/tests/test_io.py::test_load", "TypeError",
                                             "load_from_checkpoint(): __init__() missing 1 required argument")),
    "POLICY-001": lambda s: _failing(s, failed("packages/ptycho-torch/tests/test_model.py::test_build",
                                               "ModuleNotFoundError", "No module named 'torch'",
                                               markers=("pytorch",), backend="pytorch", outcome="error")),
    "CONFIG-001": lambda s: _failing(s, failed("packages/ptycho-core/tests/test_workflow.py::test_train",
                                               "ValueError", "shape mismatch: X has 1 channel, model expects 4")),
    "FORMAT-001": lambda s: _failing(s, failed("packages/ptycho-data/tests/test_npz.py::test_legacy_layout",
                                               "IndexError", "index 64 is out of bounds for axis 0 with size 64")),
    "PARITY-001": lambda s: _failing(s, failed("tests/parity/test_parity.py::test_decoder", "AssertionError",
                                               "decoder output mismatch between backends", markers=("parity",))),
    "ARTIF-001": lambda s: add_run(s, integration(36.0), artifacts=[
        ArtifactFinding("out/model/model.ckpt", "checkpoint_hyper_parameters", "no 'hyper_parameters'")]),
    "ARTIF-002": lambda s: add_run(s, integration(36.0), artifacts=[
        ArtifactFinding("out/amplitude.png", "png_too_small", "PNG is 300 bytes")]),
}


@pytest.fixture
def store(tmp_path):
    with HistoryStore(tmp_path / "history.sqlite") as s:
        yield s


def test_shipped_set_is_the_handbook_twelve():
    ts = load_triggers(plugins=None)
    assert sorted(ts.triggers) == sorted(SHIPPED)
    assert {t.severity for t in ts.triggers.values()} <= set(SEVERITIES)
    assert ts.triggers["RT-001"].severity == "critical" and ts.triggers["RT-002"].severity == "warning"
    assert all(t.owner and t.sla_hours > 0 for t in ts.triggers.values())
    assert [t.id for t in ts.fallbacks()] == ["FAIL-001"]


@pytest.mark.parametrize("trigger_id", SHIPPED)
def test_trigger_fires_on_crafted_history(store, trigger_id):
    SCENARIOS[trigger_id](store)
    fired = {b.trigger.id for b in evaluate(store)}
    assert fired == {trigger_id}


def test_healthy_history_fires_nothing(store):
    for seconds in (34.0, 36.0, 41.0, 38.0):
        healthy_run(store, seconds)
    breaches = evaluate(store)
    assert breaches == []
    assert exit_code(breaches) == 0


@pytest.mark.parametrize(("runs", "fires"), [
    ([70, 70], False),
    ([70, 70, 70], True),
    ([70, 70, 30, 70, 70], False),
    ([30, 70, 70, 70], True),
    ([70, 70, 70, 30], False),
])
def test_rt002_needs_three_consecutive_slow_runs(store, runs, fires):
    for seconds in runs:
        add_run(store, integration(float(seconds)))
    breaches = [b for b in evaluate(store) if b.trigger.id == "RT-002"]
    assert bool(breaches) is fires
    if fires:
        assert [s for _, s in breaches[0].series] == [70.0, 70.0, 70.0]


def test_unrelated_runs_do_not_break_the_consecutive_window(store):
    """Runs without integration tests (a unit-only run) are not counted as fast runs."""
    for _ in range(2):
        add_run(store, integration(70.0))
        add_run(store, [passed("packages/ptycho-core/tests/test_config.py::test_defaults")])
    add_run(store, integration(70.0))
    assert "RT-002" in {b.trigger.id for b in evaluate(store)}


def test_baseline_multiples_take_over_after_calibration(store):
    """A machine twice as slow: 72 s runs breach the absolute 60 s but not 1.7x a 45 s baseline."""
    for _ in range(3):
        add_run(store, integration(72.0))
    assert "RT-002" in {b.trigger.id for b in evaluate(store)}
    store.set_baseline("group:integration", 45.0, 5, 0.0, {})
    fired = {b.trigger.id for b in evaluate(store)}
    assert "RT-002" not in fired and "RT-001" not in fired
    add_run(store, integration(20.0))  # below 0.55 x 45 = 24.75 s, though above the absolute 20 s floor
    assert "RT-003" in {b.trigger.id for b in evaluate(store)}


def test_classification_prefers_priority_then_specificity(store):
    """A TypeError about checkpoints in the backend-selection group is FAIL-003 (priority 85 > 40)."""
    healthy_run(store)
    add_run(store, [failed("packages/ptycho-core/tests/test_registry.py::test_bundle", "TypeError",
                           "load_bundle(): unexpected keyword"), failed(
        "packages/ptycho-core/tests/test_registry.py::test_other", "KeyError", "'tensorflow'")])
    by_subject = {b.subject: b.trigger.id for b in evaluate(store)}
    assert by_subject == {"packages/ptycho-core/tests/test_registry.py::test_bundle": "FAIL-003",
                          "packages/ptycho-core/tests/test_registry.py::test_other": "FAIL-002"}


def test_exception_matches_base_classes(store):
    """POLICY-001 names ImportError; a ModuleNotFoundError (its subclass) matches through the recorded chain."""
    ts = load_triggers()
    result = failed("packages/ptycho-tf/tests/test_model.py::test_x", "ModuleNotFoundError",
                    "No module named 'tensorflow'", markers=("tensorflow",))
    assert ts.classify(result).id == "POLICY-001"
    outside = failed("packages/ptycho-core/tests/test_cli.py::test_x", "ModuleNotFoundError", "No module named 'torch'")
    assert ts.classify(outside).id == "FAIL-001"


def test_exit_code_follows_the_worst_severity(store):
    SCENARIOS["ARTIF-002"](store)
    assert exit_code(evaluate(store)) == 0  # medium
    SCENARIOS["FAIL-001"](store)
    assert exit_code(evaluate(store)) == 1  # high
    SCENARIOS["RT-001"](store)
    assert exit_code(evaluate(store)) == 2  # critical


def test_breach_deadline_is_end_of_run_plus_sla(store):
    SCENARIOS["RT-001"](store)
    (breach,) = evaluate(store)
    assert breach.deadline == pytest.approx(breach.run.finished + 4 * 3600)
    assert breach.owner == "integration-maintainers"


def test_pr_tier_budget_applies_only_with_budgets(store):
    from ptycho_ci.evaluate import run_triggers

    add_run(store, integration(130.0))
    run = store.latest_run()
    assert {b.trigger.id for b in evaluate(store, run, run_triggers(run))} == {"RT-001"}
    with_budgets = evaluate(store, run, run_triggers(run, budgets=True))
    assert {b.trigger.id for b in with_budgets} == {"RT-001", "BUDGET-PR"}
    budget = next(b for b in with_budgets if b.trigger.id == "BUDGET-PR")
    assert budget.subject == "group:pr" and budget.threshold == 120.0
