"""The ptycho-ci command line: exit codes, report, escalations, history, calibration, artifacts."""

from __future__ import annotations

import pytest
from ci_artifact_files import good_output, tiny_png
from ci_helpers import add_run, failed, healthy_run, integration

from ptycho_ci.artifacts import check_png
from ptycho_ci.cli import main
from ptycho_ci.history import HistoryStore


@pytest.fixture
def history(tmp_path):
    path = tmp_path / "history.sqlite"
    with HistoryStore(path) as store:
        for seconds in (35.0, 37.0, 36.0):
            healthy_run(store, seconds)
    return path


def _append(path, results, **kw):
    with HistoryStore(path) as store:
        return add_run(store, results, **kw)


def test_check_healthy_exits_0(history, capsys):
    assert main(["check", "--history", str(history)]) == 0
    out = capsys.readouterr().out
    assert "run 3" in out and "no trigger fired" in out


def test_check_high_exits_1_and_prints_the_table(history, capsys):
    _append(history, integration(36.0) + [failed("pkg/tests/test_x.py::test_y", "AssertionError", "3 != 4")])
    assert main(["check", "--history", str(history)]) == 1
    out = capsys.readouterr().out
    for text in ("severity", "owner", "SLA", "deadline", "FAIL-001", "high", "integration-maintainers", "1d",
                 "pkg/tests/test_x.py::test_y"):
        assert text in out
    assert "exit 1: high breach" in out


def test_check_critical_exits_2(history, capsys):
    _append(history, integration(120.0))
    assert main(["check", "--history", str(history)]) == 2
    assert "RT-001" in capsys.readouterr().out
    assert main(["check", "--history", str(history), "--run", "2"]) == 0  # an older, healthy run


def test_check_with_artifact_directory(history, tmp_path, capsys):
    out = good_output(tmp_path / "out")
    assert main(["check", "--history", str(history), "--artifacts", str(out)]) == 0
    tiny_png(out / "run" / "phase.png")
    assert main(["check", "--history", str(history), "--artifacts", str(out)]) == 0  # medium only
    assert "ARTIF-002" in capsys.readouterr().out


def test_bad_input_exits_3(tmp_path, history, capsys):
    assert main(["check", "--history", str(tmp_path / "absent.sqlite")]) == 3
    assert "no run history there" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[trigger]]\nid = 'X'\n")
    assert main(["check", "--history", str(history), "--triggers", str(bad)]) == 3
    assert "trigger X.title" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["check", "--no-such-option"])
    assert exc.value.code == 3


def test_history_env_variable(history, monkeypatch, capsys):
    monkeypatch.setenv("PTYCHO_CI_HISTORY", str(history))
    assert main(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["run", "started", "label"] and len(lines) == 5
    assert main(["history", "--selector", "group:integration"]) == 0
    out = capsys.readouterr().out
    assert "35.00" in out and "37.00" in out and "36.00" in out


def test_calibrate_stores_baselines(history, capsys):
    assert main(["calibrate", "--history", str(history), "--dry-run"]) == 0
    assert "group:integration" in capsys.readouterr().out
    with HistoryStore(history) as store:
        assert store.baselines() == {}
    assert main(["calibrate", "--history", str(history)]) == 0
    with HistoryStore(history) as store:
        base = store.baselines()["group:integration"]
    assert base["seconds"] == 36.0 and base["n_runs"] == 3 and base["machine"]["cpu"]["logical"] >= 1
    assert main(["calibrate", "--history", str(history), "--min-runs", "9"]) == 3


def test_report_writes_markdown_and_pngs(history, tmp_path, capsys):
    _append(history, integration(95.0) + [failed("pkg/tests/test_x.py::test_y", "IndexError", "out of bounds")])
    out = tmp_path / "report"
    assert main(["report", "--history", str(history), "--output", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## Runs" in text and "## Breaches in run 4" in text and "## Runtime trends" in text
    for run_id in (1, 2, 3, 4):
        assert f"| {run_id} |" in text
    assert "RT-001" in text and "FORMAT-001" in text and "pkg/tests/test_x.py::test_y" in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["runtime-group-integration.png", "runtime-session.png"]
    assert "![runtime of group:integration](runtime-group-integration.png)" in text
    assert all(check_png(out / p) == [] for p in pngs)
    older = tmp_path / "older"
    assert main(["report", "--history", str(history), "--output", str(older), "--run", "2"]) == 0
    text = (older / "report.md").read_text()
    assert "## Breaches in run 2" in text and "| 2 |" in text and "| 3 |" not in text


def test_escalate_writes_one_issue_per_breach(history, tmp_path, capsys):
    _append(history, integration(100.0) + [failed("pkg/tests/test_x.py::test_y", "TypeError",
                                                  "load_from_checkpoint() got an unexpected keyword",
                                                  backend="pytorch")])
    out = tmp_path / "issues"
    assert main(["escalate", "--history", str(history), "--output", str(out)]) == 0
    files = sorted(out.glob("*.md"))
    assert [p.name for p in files] == ["01-RT-001-group-integration.md", "02-FAIL-003-pkg-tests-test-x-py-test-y.md"]
    runtime, failure = (p.read_text() for p in files)
    assert "# [RT-001]" in runtime and "| severity | critical |" in runtime and "100.00" in runtime
    assert "python -m pytest tests/integration --durations=20" in runtime  # --ptycho-ci-history dropped
    assert "PTYCHO_BACKEND=pytorch python -m pytest pkg/tests/test_x.py::test_y" in failure
    assert "exception = [\"TypeError\"]" in failure and "| git commit | abc123def456 |" in failure
    assert "| torch | 2.13.0 |" in failure and "load_from_checkpoint() got an unexpected keyword" in failure
    assert "2 escalation(s) for run 4" in capsys.readouterr().out


def test_artifacts_command(tmp_path, history, capsys):
    out = good_output(tmp_path / "out")
    assert main(["artifacts", str(out)]) == 0
    assert "all artifacts ok" in capsys.readouterr().out
    (out / "run" / "phase.png").unlink()
    assert main(["artifacts", str(out), "--history", str(history), "--record"]) == 1
    assert "png_missing" in capsys.readouterr().out
    with HistoryStore(history) as store:
        assert [f.check for f in store.artifacts(3)] == ["png_missing"]
    assert main(["check", "--history", str(history)]) == 0
    assert "ARTIF-002" in capsys.readouterr().out


def test_triggers_command(capsys):
    assert main(["triggers"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") >= 14 and "POLICY-001" in out and "groups: backend-selection, backends" in out


SESSION = """
import time
import pytest

pytestmark = pytest.mark.integration

@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_cycle(backend):
    time.sleep(0.05)
"""


def test_end_to_end_two_recorded_sessions_then_check_and_report(pytester, capsys):
    """An integration-marked session recorded twice; check fires RT-003 (far too fast); the report shows both."""
    pytester.makepyfile(test_integration=SESSION)
    history = pytester.path / "history.sqlite"
    for _ in range(2):
        pytester.runpytest_subprocess("--ptycho-ci-history", str(history)).assert_outcomes(passed=2)
    assert main(["check", "--history", str(history)]) == 1
    assert "RT-003" in capsys.readouterr().out
    report = pytester.path / "report"
    assert main(["report", "--history", str(history), "--output", str(report)]) == 0
    text = (report / "report.md").read_text()
    assert "| 1 |" in text and "| 2 |" in text and "### `group:integration`" in text
    assert check_png(report / "runtime-group-integration.png") == []
