"""The pytest plugin: off by default, records everything when enabled (run through pytester)."""

from __future__ import annotations

from ptycho_ci.history import HistoryStore

SUITE = """
import pytest

def test_ok():
    pass

@pytest.mark.pytorch
@pytest.mark.slow
def test_checkpoint():
    raise TypeError("load_from_checkpoint() missing hyper_parameters")

@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_param(backend):
    assert backend == "pytorch", "shape mismatch"

def test_skipped():
    pytest.skip("not here")

@pytest.mark.xfail(reason="known")
def test_xfail():
    raise ValueError("known")

@pytest.fixture
def broken():
    raise IndexError("index 3 is out of bounds for axis 0 with size 3")

def test_setup_error(broken):
    pass
"""

OFF_CHECK = """
import sys

def test_plugin_is_inert():
    loaded = sorted(m for m in sys.modules if m.startswith("ptycho_ci"))
    assert loaded == ["ptycho_ci", "ptycho_ci.hookspecs", "ptycho_ci.pytest_plugin"], loaded
    assert "sqlite3" not in sys.modules
"""


def test_off_by_default(pytester, monkeypatch):
    monkeypatch.delenv("PTYCHO_CI_HISTORY", raising=False)
    pytester.makepyfile(test_inert=OFF_CHECK)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not list(pytester.path.rglob("*.sqlite*"))
    assert "ptycho-ci: recorded" not in result.stdout.str()


def test_options_are_registered(pytester):
    result = pytester.runpytest_subprocess("--help")
    out = result.stdout.str()
    for option in ("--ptycho-ci-history", "--ptycho-ci-backend", "--ptycho-ci-label", "--ptycho-ci-artifacts"):
        assert option in out


def test_records_outcomes_markers_backend_and_failures(pytester):
    pytester.makepyfile(test_suite=SUITE)
    history = pytester.path / "h.sqlite"
    result = pytester.runpytest_subprocess("--ptycho-ci-history", str(history), "--ptycho-ci-label", "ci-pr",
                                           "--ptycho-ci-backend", "numpy-fake")
    result.assert_outcomes(passed=2, failed=2, skipped=1, xfailed=1, errors=1)
    result.stdout.fnmatch_lines(["ptycho-ci: recorded run 1 (7 tests) in *h.sqlite"])
    with HistoryStore(history, create=False) as store:
        run = store.latest_run()
        assert run.label == "ci-pr" and run.exitstatus == 1
        assert run.counts == {"passed": 2, "failed": 2, "skipped": 1, "xfailed": 1, "error": 1}
        assert "--ptycho-ci-history" in run.args
        env = run.environment
        assert env["python"] and env["cpu"]["logical"] >= 1 and "ptycho-ci" in env["packages"]
        assert "git_commit" in env
        results = {r.nodeid.split("::")[1]: r for r in store.results(run.id)}
    ckpt = results["test_checkpoint"]
    assert ckpt.outcome == "failed" and ckpt.phase == "call"
    assert ckpt.markers == ("pytorch", "slow") and ckpt.backend == "pytorch"
    assert ckpt.exc_type == "TypeError" and ckpt.exc_types == ("builtins.TypeError", "builtins.Exception")
    assert ckpt.message == "load_from_checkpoint() missing hyper_parameters"
    line = SUITE.strip().splitlines().index('    raise TypeError("load_from_checkpoint() missing hyper_parameters")')
    assert ckpt.location == f"test_suite.py:{line + 1}"
    assert results["test_param[tensorflow]"].backend == "tensorflow"
    assert results["test_param[tensorflow]"].exc_type == "AssertionError"
    assert results["test_param[pytorch]"].outcome == "passed"
    assert results["test_ok"].backend == "numpy-fake"
    err = results["test_setup_error"]
    assert err.outcome == "error" and err.phase == "setup" and "builtins.LookupError" in err.exc_types
    assert results["test_xfail"].outcome == "xfailed" and results["test_xfail"].exc_type is None
    assert all(r.duration >= 0 for r in results.values())


def test_enabled_by_environment_variable_and_appends(pytester, monkeypatch):
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    history = pytester.path / "env.sqlite"
    monkeypatch.setenv("PTYCHO_CI_HISTORY", str(history))
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    with HistoryStore(history, create=False) as store:
        assert [r.id for r in store.runs()] == [1, 2]


CONFTEST = """
from ptycho_ci import hookimpl

@hookimpl
def ptycho_ci_register_triggers():
    return [{"id": "PROJ-001", "title": "KeyError in project code", "severity": "critical", "owner": "proj",
             "sla": "2h", "priority": 99, "condition": {"kind": "failure", "exception": ["KeyError"]}}]
"""


def test_conftest_triggers_and_artifacts_are_stored_with_the_run(pytester):
    from ptycho_ci.evaluate import evaluate, run_triggers

    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_k="def test_k():\n    raise KeyError('missing')\n")
    out = pytester.mkdir("out")
    (out / "summary.json").write_text("{}")
    history = pytester.path / "h.sqlite"
    result = pytester.runpytest_subprocess("--ptycho-ci-history", str(history), "--ptycho-ci-artifacts", str(out))
    result.assert_outcomes(failed=1)
    with HistoryStore(history, create=False) as store:
        run = store.latest_run()
        assert [t["id"] for doc in run.extra_triggers for t in doc["trigger"]] == ["PROJ-001"]
        assert sorted(f.check for f in store.artifacts(run.id)) == ["png_missing", "png_missing"]
        fired = {(b.trigger.id, b.severity) for b in evaluate(store, run, run_triggers(run))}
    assert fired == {("PROJ-001", "critical"), ("ARTIF-002", "medium")}


def test_undecorated_conftest_hook_is_reported(pytester):
    pytester.makeconftest("def ptycho_ci_register_triggers():\n    return []\n")
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("--ptycho-ci-history", str(pytester.path / "h.sqlite"))
    result.stdout.fnmatch_lines(["*not decorated with ptycho_ci.hookimpl; ignored*"])
