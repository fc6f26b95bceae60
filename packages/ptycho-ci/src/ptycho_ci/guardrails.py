"""Runtime guardrails: selectors, groups, baselines and thresholds.

A *selector* picks test results of a run: ``session`` (all of them), ``node:<glob>`` (node
ids, exact or :mod:`fnmatch` glob), ``marker:<name>`` or ``group:<name>`` (a named group
from the trigger file: node-id globs and markers, a test belongs to it if it matches any).
Its runtime in one run is the ``sum`` (default), ``max`` or, per node, ``each`` of the
selected durations.

A :class:`RuntimeRule` is a bound on that runtime: ``max_seconds`` (breach above) or
``min_seconds`` (breach below), optionally as a ``baseline_multiple`` of a calibrated
baseline (which then wins over the absolute seconds, so thresholds carry over to other
machines), breached only when ``consecutive`` runs in a row are beyond it.
The defaults come from the integration-test profile (:data:`INTEGRATION_PROFILE`).
"""

from __future__ import annotations

import fnmatch
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ptycho_ci.errors import SelectorError, TriggerSpecError
from ptycho_ci.records import TestResult

AGGREGATES = ("sum", "max", "each")


@dataclass(frozen=True)
class Group:
    """A named set of tests: node-id globs and markers (a test belongs if it matches any)."""

    name: str
    nodeid: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()

    def matches(self, result: TestResult) -> bool:
        """True when ``result`` matches one of the globs or carries one of the markers."""
        return any(match_nodeid(result.nodeid, g) for g in self.nodeid) or any(m in result.markers
                                                                               for m in self.markers)


def match_nodeid(nodeid: str, pattern: str) -> bool:
    """Exact node id or :func:`fnmatch.fnmatchcase` glob (brackets in node ids match literally)."""
    return nodeid == pattern or fnmatch.fnmatchcase(nodeid, pattern)


@dataclass(frozen=True)
class Selector:
    """Which test results a guardrail measures; see the module docstring for the syntax."""

    kind: str
    value: str = ""

    KINDS = ("session", "node", "marker", "group")

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse ``session``, ``node:<glob>``, ``marker:<name>`` or ``group:<name>``."""
        text = text.strip()
        if text == "session":
            return cls("session")
        kind, sep, value = text.partition(":")
        if not sep or kind not in cls.KINDS[1:] or not value:
            raise SelectorError(
                f"selector {text!r}: expected 'session', 'node:<glob>', 'marker:<name>' or 'group:<name>'"
            )
        return cls(kind, value)

    def __str__(self) -> str:
        return "session" if self.kind == "session" else f"{self.kind}:{self.value}"

    def matches(self, result: TestResult, groups: dict[str, Group] | None = None) -> bool:
        """True when ``result`` is selected; an unknown group is a :class:`SelectorError`."""
        if self.kind == "session":
            return True
        if self.kind == "node":
            return match_nodeid(result.nodeid, self.value)
        if self.kind == "marker":
            return self.value in result.markers
        group = (groups or {}).get(self.value)
        if group is None:
            known = ", ".join(sorted(groups or {})) or "none"
            raise SelectorError(f"selector {self}: unknown group {self.value!r} (groups defined: {known})")
        return group.matches(result)


def measure(results: Iterable[TestResult], selector: Selector, groups: dict[str, Group] | None = None,
            aggregate: str = "sum") -> dict[str, float]:
    """Runtime of ``selector`` in one run: ``{str(selector): seconds}`` or, for ``each``, per node id.

    Empty when nothing is selected.
    """
    if aggregate not in AGGREGATES:
        raise SelectorError(f"aggregate {aggregate!r}: expected one of {', '.join(AGGREGATES)}")
    chosen = [r for r in results if selector.matches(r, groups)]
    if not chosen:
        return {}
    if aggregate == "each":
        return {r.nodeid: float(r.duration) for r in chosen}
    values = [float(r.duration) for r in chosen]
    return {str(selector): sum(values) if aggregate == "sum" else max(values)}


@dataclass(frozen=True)
class RuntimeRule:
    """A runtime bound: exactly one of ``max_seconds`` / ``min_seconds``, optional baseline multiple."""

    max_seconds: float | None = None
    min_seconds: float | None = None
    baseline_multiple: float | None = None
    consecutive: int = 1

    def __post_init__(self) -> None:
        if (self.max_seconds is None) == (self.min_seconds is None):
            raise TriggerSpecError("runtime rule: give exactly one of 'max_seconds' or 'min_seconds'")
        bound = self.max_seconds if self.max_seconds is not None else self.min_seconds
        if not bound > 0:
            raise TriggerSpecError(f"runtime rule: seconds must be > 0, got {bound!r}")
        if self.baseline_multiple is not None and not self.baseline_multiple > 0:
            raise TriggerSpecError(f"runtime rule: 'baseline_multiple' must be > 0, got {self.baseline_multiple!r}")
        if self.consecutive < 1:
            raise TriggerSpecError(f"runtime rule: 'consecutive' must be >= 1, got {self.consecutive!r}")

    @property
    def upper(self) -> bool:
        """True for a maximum (breach when slower), False for a minimum (breach when faster)."""
        return self.max_seconds is not None

    def threshold(self, baseline: float | None = None) -> float:
        """Seconds: ``baseline_multiple * baseline`` when both exist, else the absolute bound."""
        if self.baseline_multiple is not None and baseline is not None and baseline > 0:
            return self.baseline_multiple * baseline
        return float(self.max_seconds if self.upper else self.min_seconds)

    def beyond(self, seconds: float, baseline: float | None = None) -> bool:
        """True when ``seconds`` is above a maximum or below a minimum."""
        limit = self.threshold(baseline)
        return seconds > limit if self.upper else seconds < limit

    def breached(self, series: Sequence[float], baseline: float | None = None) -> bool:
        """True when the last ``consecutive`` values of ``series`` (oldest first) are all beyond the bound."""
        if len(series) < self.consecutive:
            return False
        return all(self.beyond(v, baseline) for v in series[-self.consecutive:])


@dataclass(frozen=True)
class RuntimeProfile:
    """The three runtime guardrails of a test profile (hard max, sustained warning, too fast)."""

    hard_max: RuntimeRule
    warning: RuntimeRule
    too_fast: RuntimeRule


INTEGRATION_PROFILE = RuntimeProfile(
    hard_max=RuntimeRule(max_seconds=90.0, baseline_multiple=2.5),
    warning=RuntimeRule(max_seconds=60.0, baseline_multiple=1.7, consecutive=3),
    too_fast=RuntimeRule(min_seconds=20.0, baseline_multiple=0.55),
)
"""Integration-test profile: RT-001 above 90 s, RT-002 above 60 s three runs in a row, RT-003 below 20 s."""


def calibrate(series: Sequence[float], *, minimum_runs: int = 3) -> float:
    """Baseline runtime from a series of measurements: their median.

    Needs ``minimum_runs`` measurements so that one odd run does not set the baseline.
    """
    values = [float(v) for v in series]
    if len(values) < minimum_runs:
        raise SelectorError(f"calibration needs at least {minimum_runs} runs, the history holds {len(values)}")
    return float(statistics.median(values))


def calibrate_from_history(store, selector: Selector, groups: dict[str, Group] | None = None, *, last: int = 10,
                           minimum_runs: int = 3) -> tuple[float, int]:
    """``(baseline seconds, runs used)`` of ``selector`` from the last ``last`` healthy runs of ``store``.

    A run is healthy for the selector when its selected tests include a pass and no failure
    (a failing or fully skipped run says nothing about normal runtime).
    """
    window = store.last_runs(lambda r: selector.matches(r, groups), 10 * last)
    values = []
    for _run, selected in window:
        if any(r.failed for r in selected) or not any(r.outcome == "passed" for r in selected):
            continue
        values.append(sum(float(r.duration) for r in selected))
    values = values[-last:]
    if len(values) < minimum_runs:
        raise SelectorError(
            f"selector {selector}: calibration needs at least {minimum_runs} healthy runs (a pass, no failure) "
            f"that select it; the history holds {len(values)}"
        )
    return calibrate(values, minimum_runs=minimum_runs), len(values)


def store_baseline(store, selector: Selector, seconds: float, n_runs: int, machine: dict) -> None:
    """Record a calibrated baseline for ``selector`` (measured now) in ``store``."""
    store.set_baseline(str(selector), seconds, n_runs, time.time(), machine)
