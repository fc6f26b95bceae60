"""Builders of crafted run histories for the ptycho-ci tests."""

from __future__ import annotations

from ptycho_ci.history import HistoryStore
from ptycho_ci.records import ArtifactFinding, TestResult

INTEGRATION = ("tests/integration/test_cli_cycle.py::test_run[pytorch]",
               "tests/integration/test_cli_cycle.py::test_run[tensorflow]")
CHAINS = {
    "AssertionError": ("builtins.AssertionError", "builtins.Exception"),
    "TypeError": ("builtins.TypeError", "builtins.Exception"),
    "ValueError": ("builtins.ValueError", "builtins.Exception"),
    "IndexError": ("builtins.IndexError", "builtins.LookupError", "builtins.Exception"),
    "ModuleNotFoundError": ("builtins.ModuleNotFoundError", "builtins.ImportError", "builtins.Exception"),
}


def passed(nodeid: str, seconds: float = 0.1, markers: tuple[str, ...] = (), backend: str | None = None) -> TestResult:
    """A passing result."""
    return TestResult(nodeid=nodeid, outcome="passed", duration=seconds, markers=markers, backend=backend)


def failed(nodeid: str, exc: str, message: str, markers: tuple[str, ...] = (), backend: str | None = None,
           outcome: str = "failed", frames: tuple[str, ...] = ()) -> TestResult:
    """A failing result with the exception chain of ``exc`` (and the traceback ``frames``, outermost first)."""
    return TestResult(nodeid=nodeid, outcome=outcome, duration=0.5, markers=markers, backend=backend, exc_type=exc,
                      exc_types=CHAINS.get(exc, (f"builtins.{exc}",)), message=message, phase="call",
                      location=nodeid.split("::")[0] + ":10", frames=frames)


def integration(total_seconds: float) -> list[TestResult]:
    """The two integration tests, together taking ``total_seconds``."""
    return [passed(n, total_seconds / 2, markers=("integration", "ci_pr"), backend=b)
            for n, b in zip(INTEGRATION, ("pytorch", "tensorflow"))]


def add_run(store: HistoryStore, results: list[TestResult], *, start: float = 1_700_000_000.0, label: str | None = None,
            artifacts: list[ArtifactFinding] = (), extra_triggers: list[dict] = ()) -> int:
    """Append a run with a fixed environment; ``start`` advances with the run count."""
    t0 = start + 3600 * store.count_runs()
    env = {"python": "3.11.7", "git_commit": "abc123def456", "cpu": {"logical": 2, "usable": 2},
           "packages": {"torch": "2.13.0"}, "invocation_dir": "/repo"}
    return store.add_run(results, started=t0, finished=t0 + sum(r.duration for r in results), label=label,
                         exitstatus=0, args=["tests/integration", "--ptycho-ci-history", "h.sqlite"], environment=env,
                         artifacts=artifacts, extra_triggers=extra_triggers)


def healthy_run(store: HistoryStore, seconds: float = 36.0, **kw) -> int:
    """A run where everything passes and the integration group takes ``seconds`` (inside all guardrails)."""
    unit = [passed("packages/ptycho-core/tests/test_config.py::test_defaults"),
            passed("packages/ptycho-core/tests/test_registry.py::test_get", markers=("backend_selection",))]
    return add_run(store, unit + integration(seconds), **kw)
