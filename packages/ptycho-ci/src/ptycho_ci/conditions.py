"""The declarative condition language of escalation triggers (no ``eval``).

A trigger's ``condition`` table has a ``kind`` and kind-specific keys. Lists mean
"any of"; different keys must all hold. A single string is accepted where a list is.

``kind = "runtime"``
    ``selector`` (``session``, ``node:<glob>``, ``marker:<name>``, ``group:<name>``),
    ``aggregate`` (``sum`` default, ``max``, ``each``), exactly one of ``max_seconds`` /
    ``min_seconds``, optional ``baseline_multiple`` and ``consecutive`` (default 1).
``kind = "failure"``
    any of ``exception`` (class names, matched against the class and its bases, short or
    qualified), ``message`` (regular expressions, searched case-insensitively), ``frame``
    (regular expressions, searched case-insensitively in each traceback frame
    ``path:line in qualified.function``, e.g. ``load_from_checkpoint`` or ``ptycho_torch/``),
    ``nodeid`` (globs on the test's node id), ``markers``, ``backend``, ``group`` (group
    names), ``any`` (a list of tables of these match keys: at least one table must match
    as a whole), ``outcome`` (default ``["failed", "error"]``), or ``fallback = true`` (the
    trigger of failures no other failure trigger classifies; it must have no other match key).
``kind = "artifact"``
    ``checks`` (artifact check names, see :data:`ptycho_ci.artifacts.CHECKS`), optional
    ``path`` (globs), ``min_bytes`` (PNG size floor) and ``expect`` (PNG names required in a
    run output directory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ptycho_ci.errors import SelectorError, TriggerSpecError
from ptycho_ci.guardrails import AGGREGATES, Group, RuntimeRule, Selector, match_nodeid
from ptycho_ci.records import OUTCOMES, ArtifactFinding, TestResult
from ptycho_core.errors import did_you_mean

ARTIFACT_CHECKS = (
    "checkpoint_hyper_parameters", "checkpoint_unreadable", "bundle_manifest", "bundle_integrity",
    "png_missing", "png_invalid", "png_too_small",
)
KEYS = {
    "runtime": ("kind", "selector", "aggregate", "max_seconds", "min_seconds", "baseline_multiple", "consecutive"),
    "failure": ("kind", "exception", "message", "frame", "nodeid", "markers", "backend", "group", "any", "outcome",
                "fallback"),
    "artifact": ("kind", "checks", "path", "min_bytes", "expect"),
}


def _where(trigger_id: str) -> str:
    return f"trigger {trigger_id}: condition"


def _strings(table: dict, key: str, trigger_id: str) -> tuple[str, ...]:
    value = table.get(key, ())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise TriggerSpecError(f"{_where(trigger_id)}.{key}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _number(table: dict, key: str, trigger_id: str, *, integer: bool = False) -> float | int | None:
    value = table.get(key)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an integer" if integer else "a number"
        raise TriggerSpecError(f"{_where(trigger_id)}.{key}: expected {what}, got {value!r}")
    return value


@dataclass(frozen=True)
class RuntimeCondition:
    """Runtime of a selector beyond a :class:`~ptycho_ci.guardrails.RuntimeRule`."""

    selector: Selector
    aggregate: str
    rule: RuntimeRule
    kind: str = "runtime"


@dataclass(frozen=True)
class FailureCondition:
    """A failed test matched by exception, message, traceback frame, node id, markers, backend or group.

    ``alternatives`` (the ``any`` key) holds conditions of match keys only: one of them must match too.
    """

    exception: tuple[str, ...] = ()
    message: tuple[re.Pattern, ...] = ()
    frame: tuple[re.Pattern, ...] = ()
    nodeid: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    backend: tuple[str, ...] = ()
    group: tuple[str, ...] = ()
    alternatives: tuple[FailureCondition, ...] = ()
    outcome: tuple[str, ...] = ("failed", "error")
    fallback: bool = False
    kind: str = "failure"

    @property
    def specificity(self) -> int:
        """Number of match keys given (more keys: more specific, tried first at equal priority)."""
        keys = (self.exception, self.message, self.frame, self.nodeid, self.markers, self.backend, self.group,
                self.alternatives)
        return sum(1 for k in keys if k)

    def matches(self, result: TestResult, groups: dict[str, Group] | None = None) -> bool:
        """True when every given key matches ``result`` (fallback conditions never match directly)."""
        if self.fallback or result.outcome not in self.outcome:
            return False
        return self._keys_match(result, groups)

    def _keys_match(self, result: TestResult, groups: dict[str, Group] | None) -> bool:
        if self.alternatives and not any(alt._keys_match(result, groups) for alt in self.alternatives):
            return False
        if self.frame and not any(p.search(f) for p in self.frame for f in result.frames):
            return False
        if self.exception and not _exception_matches(result, self.exception):
            return False
        text = result.message or ""
        if self.message and not any(p.search(text) for p in self.message):
            return False
        if self.nodeid and not any(match_nodeid(result.nodeid, g) for g in self.nodeid):
            return False
        if self.markers and not any(m in result.markers for m in self.markers):
            return False
        if self.backend and result.backend not in self.backend:
            return False
        if self.group:
            known = groups or {}
            return any(known[g].matches(result) for g in self.group if g in known)
        return True


def _exception_matches(result: TestResult, names: tuple[str, ...]) -> bool:
    chain = list(result.exc_types) or ([result.exc_type] if result.exc_type else [])
    candidates = set(chain) | {c.rsplit(".", 1)[-1] for c in chain}
    return any(n in candidates for n in names)


@dataclass(frozen=True)
class ArtifactCondition:
    """Artifact findings of the given checks (optionally only under ``path`` globs)."""

    checks: tuple[str, ...]
    path: tuple[str, ...] = ()
    min_bytes: int | None = None
    expect: tuple[str, ...] = ()
    kind: str = "artifact"

    def matches(self, finding: ArtifactFinding) -> bool:
        """True when ``finding`` is one of ``checks`` (and under ``path`` when given)."""
        if finding.check not in self.checks:
            return False
        return not self.path or any(match_nodeid(finding.path, g) for g in self.path)


Condition = RuntimeCondition | FailureCondition | ArtifactCondition


def parse_condition(table: object, trigger_id: str) -> Condition:
    """Compile a ``condition`` table into a condition object (errors name the trigger and key)."""
    if not isinstance(table, dict):
        raise TriggerSpecError(f"{_where(trigger_id)}: expected a table, got {table!r}")
    kind = table.get("kind")
    if kind not in KEYS:
        raise TriggerSpecError(f"{_where(trigger_id)}.kind: expected one of {', '.join(KEYS)}, got {kind!r}")
    for key in table:
        if key not in KEYS[kind]:
            raise TriggerSpecError(
                f"{_where(trigger_id)}: unknown key {key!r} for kind {kind!r}{did_you_mean(key, list(KEYS[kind]))}; "
                f"allowed: {', '.join(KEYS[kind])}"
            )
    return {"runtime": _runtime, "failure": _failure, "artifact": _artifact}[kind](table, trigger_id)


def _runtime(table: dict, trigger_id: str) -> RuntimeCondition:
    text = table.get("selector", "session")
    if not isinstance(text, str):
        raise TriggerSpecError(f"{_where(trigger_id)}.selector: expected a selector string, got {text!r}")
    try:
        selector = Selector.parse(text)
    except SelectorError as exc:
        raise TriggerSpecError(f"{_where(trigger_id)}.selector: {exc}") from None
    aggregate = table.get("aggregate", "sum")
    if aggregate not in AGGREGATES:
        raise TriggerSpecError(f"{_where(trigger_id)}.aggregate: expected one of {AGGREGATES}, got {aggregate!r}")
    try:
        rule = RuntimeRule(
            max_seconds=_number(table, "max_seconds", trigger_id),
            min_seconds=_number(table, "min_seconds", trigger_id),
            baseline_multiple=_number(table, "baseline_multiple", trigger_id),
            consecutive=_number(table, "consecutive", trigger_id, integer=True) or 1,
        )
    except TriggerSpecError as exc:
        raise TriggerSpecError(f"{_where(trigger_id)}: {exc}") from None
    return RuntimeCondition(selector=selector, aggregate=aggregate, rule=rule)


def _patterns(table: dict, key: str, trigger_id: str) -> tuple[re.Pattern, ...]:
    patterns = []
    for text in _strings(table, key, trigger_id):
        try:
            patterns.append(re.compile(text, re.IGNORECASE))
        except re.error as exc:
            raise TriggerSpecError(
                f"{_where(trigger_id)}.{key}: {text!r} is not a valid regular expression ({exc})"
            ) from None
    return tuple(patterns)


#: Keys of a table in a failure condition's ``any`` list.
ALTERNATIVE_KEYS = ("exception", "message", "frame", "nodeid", "markers", "backend", "group")


def _alternatives(table: dict, trigger_id: str) -> tuple[FailureCondition, ...]:
    value = table.get("any", [])
    if not isinstance(value, list) or not all(isinstance(v, dict) and v for v in value):
        raise TriggerSpecError(f"{_where(trigger_id)}.any: expected a list of tables of match keys, got {value!r}")
    out = []
    for i, alt in enumerate(value):
        where = f"{trigger_id}: condition.any[{i}]"
        for key in alt:
            if key not in ALTERNATIVE_KEYS:
                hint = did_you_mean(key, list(ALTERNATIVE_KEYS))
                raise TriggerSpecError(f"trigger {where}: unknown key {key!r}{hint}; "
                                       f"allowed: {', '.join(ALTERNATIVE_KEYS)}")
        out.append(FailureCondition(
            exception=_strings(alt, "exception", trigger_id), message=_patterns(alt, "message", trigger_id),
            frame=_patterns(alt, "frame", trigger_id), nodeid=_strings(alt, "nodeid", trigger_id),
            markers=_strings(alt, "markers", trigger_id), backend=_strings(alt, "backend", trigger_id),
            group=_strings(alt, "group", trigger_id)))
    return tuple(out)


def _failure(table: dict, trigger_id: str) -> FailureCondition:
    outcome = _strings(table, "outcome", trigger_id) or ("failed", "error")
    bad = [o for o in outcome if o not in OUTCOMES]
    if bad:
        raise TriggerSpecError(f"{_where(trigger_id)}.outcome: {bad!r} not in {', '.join(OUTCOMES)}")
    fallback = table.get("fallback", False)
    if not isinstance(fallback, bool):
        raise TriggerSpecError(f"{_where(trigger_id)}.fallback: expected true or false, got {fallback!r}")
    cond = FailureCondition(
        exception=_strings(table, "exception", trigger_id), message=_patterns(table, "message", trigger_id),
        frame=_patterns(table, "frame", trigger_id), alternatives=_alternatives(table, trigger_id),
        nodeid=_strings(table, "nodeid", trigger_id), markers=_strings(table, "markers", trigger_id),
        backend=_strings(table, "backend", trigger_id), group=_strings(table, "group", trigger_id),
        outcome=outcome, fallback=fallback,
    )
    if fallback and cond.specificity:
        raise TriggerSpecError(f"{_where(trigger_id)}: a fallback condition takes no match keys")
    if not fallback and not cond.specificity:
        raise TriggerSpecError(
            f"{_where(trigger_id)}: give at least one of exception, message, frame, nodeid, markers, backend, group, "
            "any (or fallback = true)"
        )
    return cond


def _artifact(table: dict, trigger_id: str) -> ArtifactCondition:
    checks = _strings(table, "checks", trigger_id)
    if not checks:
        raise TriggerSpecError(f"{_where(trigger_id)}.checks: expected at least one of {', '.join(ARTIFACT_CHECKS)}")
    for name in checks:
        if name not in ARTIFACT_CHECKS:
            raise TriggerSpecError(
                f"{_where(trigger_id)}.checks: unknown check {name!r}{did_you_mean(name, list(ARTIFACT_CHECKS))}; "
                f"known: {', '.join(ARTIFACT_CHECKS)}"
            )
    min_bytes = _number(table, "min_bytes", trigger_id, integer=True)
    if min_bytes is not None and min_bytes < 0:
        raise TriggerSpecError(f"{_where(trigger_id)}.min_bytes: expected an integer >= 0, got {min_bytes}")
    return ArtifactCondition(checks=checks, path=_strings(table, "path", trigger_id), min_bytes=min_bytes,
                             expect=_strings(table, "expect", trigger_id))
