"""Escalation triggers: loading, merging and failure classification.

Triggers live in TOML files (the shipped set is ``ptycho_ci/data/triggers.toml``, the
twelve triggers of the integration handbook)::

    [groups.integration]
    markers = ["integration"]

    [[trigger]]
    id = "FAIL-003"
    title = "Checkpoint load raised TypeError"
    severity = "high"            # critical | high | medium | warning
    owner = "backend-maintainers"
    sla = "1d"                   # response time: <number><m|h|d|w>
    priority = 80                # higher is tried first; then the more specific condition
    condition = { kind = "failure", exception = ["TypeError"], frame = ["load_from_checkpoint"] }

The condition language is described in :mod:`ptycho_ci.conditions`. Plugins add triggers
through the ``ptycho_ci_register_triggers`` hook (:mod:`ptycho_ci.hookspecs`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pluggy

from ptycho_ci import hookspecs
from ptycho_ci.conditions import ArtifactCondition, Condition, FailureCondition, RuntimeCondition, parse_condition
from ptycho_ci.errors import TriggerSpecError
from ptycho_ci.guardrails import Group
from ptycho_ci.records import TestResult
from ptycho_core.errors import did_you_mean

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SEVERITIES = ("critical", "high", "medium", "warning")
"""Severities, most severe first."""
TRIGGER_KEYS = ("id", "title", "severity", "owner", "sla", "priority", "description", "action", "condition",
                "override")
_SLA = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_SLA_HOURS = {"m": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}


def parse_sla(text: object, where: str = "sla") -> float:
    """Hours of a response SLA such as ``"30m"``, ``"4h"``, ``"2d"`` or ``"1w"`` (a bare number is hours)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool) and text > 0:
        return float(text)
    match = _SLA.match(text) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise TriggerSpecError(f"{where}: expected a duration like '4h', '1d' or '30m', got {text!r}")
    return float(match.group(1)) * _SLA_HOURS[match.group(2)]


@dataclass(frozen=True)
class Trigger:
    """One escalation trigger: what fires it, how severe, who owns it and how fast to respond."""

    id: str
    title: str
    severity: str
    owner: str
    sla: str
    sla_hours: float
    condition: Condition
    priority: int = 0
    description: str = ""
    action: str = ""
    source: str = ""
    table: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def rank(self) -> int:
        """0 for critical ... 3 for warning."""
        return SEVERITIES.index(self.severity)


def parse_trigger(table: object, source: str) -> Trigger:
    """Validate one ``[[trigger]]`` table (errors name the source, trigger id and key)."""
    if not isinstance(table, dict):
        raise TriggerSpecError(f"{source}: each [[trigger]] must be a table, got {table!r}")
    tid = table.get("id")
    if not isinstance(tid, str) or not tid.strip():
        raise TriggerSpecError(f"{source}: a trigger without a string 'id' ({table!r})")
    where = f"{source}: trigger {tid}"
    for key in table:
        if key not in TRIGGER_KEYS:
            raise TriggerSpecError(f"{where}: unknown key {key!r}{did_you_mean(key, list(TRIGGER_KEYS))}")
    for key in ("title", "owner"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise TriggerSpecError(f"{where}.{key}: expected a non-empty string, got {table.get(key)!r}")
    severity = table.get("severity")
    if severity not in SEVERITIES:
        raise TriggerSpecError(f"{where}.severity: expected one of {', '.join(SEVERITIES)}, got {severity!r}")
    priority = table.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TriggerSpecError(f"{where}.priority: expected an integer, got {priority!r}")
    try:
        condition = parse_condition(table.get("condition"), tid)
    except TriggerSpecError as exc:
        raise TriggerSpecError(f"{source}: {exc}") from None
    return Trigger(
        id=tid, title=table["title"], severity=severity, owner=table["owner"], sla=str(table.get("sla")),
        sla_hours=parse_sla(table.get("sla"), f"{where}.sla"), condition=condition, priority=priority,
        description=str(table.get("description", "")), action=str(table.get("action", "")), source=source,
        table=dict(table),
    )


def parse_groups(table: object, source: str) -> dict[str, Group]:
    """Validate a ``[groups]`` table: name -> ``{nodeid = [...], markers = [...]}``."""
    if not isinstance(table, dict):
        raise TriggerSpecError(f"{source}: [groups] must be a table, got {table!r}")
    out = {}
    for name, spec in table.items():
        if not isinstance(spec, dict) or set(spec) - {"nodeid", "markers"} or not spec:
            raise TriggerSpecError(f"{source}: group {name!r} must be a table with 'nodeid' and/or 'markers' lists")
        values = {}
        for key in ("nodeid", "markers"):
            value = spec.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise TriggerSpecError(f"{source}: group {name!r}.{key}: expected a list of strings, got {value!r}")
            values[key] = tuple(value)
        out[name] = Group(name=name, **values)
    return out


@dataclass
class TriggerSet:
    """All triggers and groups in force, merged from the shipped file, plugins and project files."""

    triggers: dict[str, Trigger] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)

    def add(self, document: object, source: str) -> None:
        """Merge a parsed document: a dict with ``trigger`` (list) and/or ``groups``, or a list of tables."""
        if isinstance(document, list):
            document = {"trigger": document}
        if not isinstance(document, dict):
            raise TriggerSpecError(f"{source}: expected trigger tables or a [[trigger]] document, got {document!r}")
        unknown = set(document) - {"trigger", "groups", "schema"}
        if unknown:
            raise TriggerSpecError(f"{source}: unknown top-level keys {sorted(unknown)} (expected trigger, groups)")
        self.groups.update(parse_groups(document.get("groups", {}), source))
        tables = document.get("trigger", [])
        if not isinstance(tables, list):
            raise TriggerSpecError(f"{source}: 'trigger' must be an array of tables ([[trigger]])")
        for table in tables:
            trig = parse_trigger(table, source)
            old = self.triggers.get(trig.id)
            if old is not None and not table.get("override", False):
                raise TriggerSpecError(
                    f"{source}: trigger {trig.id} is already defined by {old.source} "
                    "(set override = true to replace it)"
                )
            self.triggers[trig.id] = trig

    def add_file(self, path: str | os.PathLike) -> None:
        """Merge a TOML trigger file."""
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TriggerSpecError(f"{path}: no such trigger file") from None
        except tomllib.TOMLDecodeError as exc:
            raise TriggerSpecError(f"{path}: not valid TOML ({exc})") from None
        self.add(document, str(path))

    def validate(self) -> TriggerSet:
        """Check cross references: groups named by conditions exist and a fallback failure trigger exists."""
        for trig in self.triggers.values():
            cond = trig.condition
            names: tuple[str, ...] = ()
            if isinstance(cond, FailureCondition):
                names = cond.group + tuple(g for alt in cond.alternatives for g in alt.group)
            if isinstance(cond, RuntimeCondition) and cond.selector.kind == "group":
                names = (cond.selector.value,)
            for name in names:
                if name not in self.groups:
                    raise TriggerSpecError(
                        f"{trig.source}: trigger {trig.id} names unknown group {name!r}"
                        f"{did_you_mean(name, list(self.groups))}"
                    )
        if not self.fallbacks():
            raise TriggerSpecError("no fallback failure trigger (condition.fallback = true); unclassified failures "
                                   "need one (the shipped set has FAIL-001)")
        return self

    def of_kind(self, kind: type) -> list[Trigger]:
        """Triggers whose condition is of class ``kind``, in classification order."""
        found = [t for t in self.triggers.values() if isinstance(t.condition, kind)]
        return sorted(found, key=lambda t: (-t.priority, -getattr(t.condition, "specificity", 0), t.id))

    def fallbacks(self) -> list[Trigger]:
        return [t for t in self.of_kind(FailureCondition) if t.condition.fallback]

    def classify(self, result: TestResult) -> Trigger:
        """The failure trigger of a failed result: the first match by priority, then specificity, else fallback."""
        for trig in self.of_kind(FailureCondition):
            if trig.condition.matches(result, self.groups):
                return trig
        return self.fallbacks()[0]

    def artifact_options(self) -> dict:
        """PNG size floor and expected PNG names for the artifact checks (the strictest of all artifact triggers)."""
        conds = [t.condition for t in self.of_kind(ArtifactCondition)]
        floors = [c.min_bytes for c in conds if c.min_bytes is not None]
        expect = sorted({name for c in conds for name in c.expect})
        return {"min_png_bytes": max(floors) if floors else 1024, "expect_png": tuple(expect)}


def plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager for ``ptycho_ci`` hooks, with ``ptycho_ci.triggers`` entry points loaded."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
    return pm


def plugin_documents(pm: pluggy.PluginManager) -> list[tuple[object, str]]:
    """``(document, source)`` from ``ptycho_ci_register_triggers`` of every plugin (documents as dicts)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise TriggerSpecError(f"a ptycho_ci plugin implements an unknown hook ({exc}); the hook is "
                               "ptycho_ci_register_triggers") from None
    out = []
    for impl in pm.hook.ptycho_ci_register_triggers.get_hookimpls():
        name = pm.get_name(impl.plugin) or repr(impl.plugin)
        result = impl.function()
        if result is None:
            continue
        if isinstance(result, (str, os.PathLike)):
            path = Path(result)
            try:
                result = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise TriggerSpecError(f"plugin {name}: cannot read trigger file {path} ({exc})") from None
        if isinstance(result, (list, tuple)):
            result = {"trigger": list(result)}
        out.append((result, f"plugin {name}"))
    return out


def _shipped(ts: TriggerSet, name: str) -> None:
    text = resources.files("ptycho_ci").joinpath(f"data/{name}").read_text(encoding="utf-8")
    ts.add(tomllib.loads(text), f"ptycho_ci/data/{name}")


def load_triggers(
    files: Iterable[str | os.PathLike] = (),
    *,
    include_defaults: bool = True,
    plugins: pluggy.PluginManager | None = None,
    extra: Iterable[tuple[object, str]] = (),
    budgets: bool = False,
) -> TriggerSet:
    """Merge and validate the triggers in force.

    Parameters
    ----------
    files : iterable of path
        Project TOML trigger files, merged last.
    include_defaults : bool
        Start from the shipped ``ptycho_ci/data/triggers.toml`` (the twelve handbook triggers).
    plugins : pluggy.PluginManager, optional
        Plugins implementing ``ptycho_ci_register_triggers``; None loads the
        ``ptycho_ci.triggers`` entry points.
    extra : iterable of (document, source)
        Further documents, e.g. those a run's conftest registered.
    budgets : bool
        Add the tier runtime budgets of ``ptycho_ci/data/budgets.toml`` (``BUDGET-PR``).

    Returns
    -------
    TriggerSet
        Validated: groups referenced exist and a fallback failure trigger exists.

    Raises
    ------
    TriggerSpecError
        Naming the source, trigger id and key at fault.
    """
    ts = TriggerSet()
    if include_defaults:
        _shipped(ts, "triggers.toml")
    if budgets:
        _shipped(ts, "budgets.toml")
    for document, source in plugin_documents(plugins if plugins is not None else plugin_manager()):
        ts.add(document, source)
    for document, source in extra:
        ts.add(document, source)
    for path in files:
        ts.add_file(path)
    return ts.validate()
