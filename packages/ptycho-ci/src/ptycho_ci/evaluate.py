"""Evaluate a recorded run against the triggers: the breaches that become escalations.

Every failed test gives one breach of the failure trigger that classifies it; every
runtime trigger whose rule is broken gives one breach per subject (its selector, or per
node for ``aggregate = "each"``); every artifact finding gives one breach of the first
artifact trigger that covers its check. A breach's deadline is the end of the run plus the
trigger's response SLA. ``ptycho-ci check`` exits with :func:`exit_code`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ptycho_ci.conditions import ArtifactCondition, RuntimeCondition
from ptycho_ci.guardrails import measure
from ptycho_ci.history import HistoryStore
from ptycho_ci.records import ArtifactFinding, Run, TestResult
from ptycho_ci.triggers import Trigger, TriggerSet, load_triggers


@dataclass(frozen=True)
class Breach:
    """One trigger firing for one subject (a selector, a node id or an artifact path) in one run."""

    trigger: Trigger
    run: Run
    subject: str
    observed: str
    result: TestResult | None = None
    finding: ArtifactFinding | None = None
    series: tuple[tuple[int, float], ...] = ()
    threshold: float | None = None

    @property
    def severity(self) -> str:
        return self.trigger.severity

    @property
    def owner(self) -> str:
        return self.trigger.owner

    @property
    def deadline(self) -> float:
        """Seconds since the epoch by which the owner must respond (end of run + SLA)."""
        return self.run.finished + self.trigger.sla_hours * 3600.0


def exit_code(breaches: Iterable[Breach]) -> int:
    """2 if any breach is critical, 1 if any is high, else 0 (medium and warning do not fail a build)."""
    severities = {b.severity for b in breaches}
    return 2 if "critical" in severities else 1 if "high" in severities else 0


def _first_line(text: str | None, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def failure_breaches(run: Run, results: Iterable[TestResult], triggers: TriggerSet) -> list[Breach]:
    """One breach per failed or errored test, classified by :meth:`TriggerSet.classify`."""
    out = []
    for r in results:
        if r.failed:
            what = f"{r.outcome} in {r.phase or 'call'}: {r.exc_type or 'failure'}: {_first_line(r.message)}"
            out.append(Breach(triggers.classify(r), run, r.nodeid, what, result=r))
    return out


def runtime_breaches(store: HistoryStore, run: Run, triggers: TriggerSet) -> list[Breach]:
    """Breaches of every runtime trigger, looking back ``consecutive`` runs from ``run``."""
    baselines = {k: v["seconds"] for k, v in store.baselines().items()}
    out = []
    for trig in triggers.of_kind(RuntimeCondition):
        cond: RuntimeCondition = trig.condition
        window = store.last_runs(lambda r, c=cond: c.selector.matches(r, triggers.groups),
                                 cond.rule.consecutive, up_to=run.id)
        if not window or window[-1][0].id != run.id:
            continue
        per_run = [(past.id, measure(sel, cond.selector, triggers.groups, cond.aggregate)) for past, sel in window]
        for subject, seconds in per_run[-1][1].items():
            series = tuple((rid, values[subject]) for rid, values in per_run if subject in values)
            key = subject if cond.aggregate != "each" else f"node:{subject}"
            baseline = baselines.get(key)
            if not cond.rule.breached([s for _, s in series], baseline):
                continue
            limit = cond.rule.threshold(baseline)
            relation = ">" if cond.rule.upper else "<"
            relative = cond.rule.baseline_multiple is not None and baseline is not None and baseline > 0
            basis = f"{cond.rule.baseline_multiple}x baseline {baseline:.1f} s" if relative else "absolute"
            runs = f" in {cond.rule.consecutive} consecutive runs" if cond.rule.consecutive > 1 else ""
            observed = f"{seconds:.1f} s {relation} {limit:.1f} s ({basis}){runs}"
            out.append(Breach(trig, run, key if cond.aggregate == "each" else subject, observed, series=series,
                              threshold=limit))
    return out


def artifact_breaches(run: Run, findings: Iterable[ArtifactFinding], triggers: TriggerSet) -> list[Breach]:
    """One breach per finding, of the first artifact trigger (by priority) that covers its check."""
    ordered = triggers.of_kind(ArtifactCondition)
    out = []
    for f in findings:
        trig = next((t for t in ordered if t.condition.matches(f)), None)
        if trig is not None:
            out.append(Breach(trig, run, f.path, f"{f.check}: {f.message}", finding=f))
    return out


def run_triggers(run: Run, files: Iterable[str] = (), include_defaults: bool = True,
                 budgets: bool = False) -> TriggerSet:
    """Triggers for ``run``: shipped, entry-point plugins, those its conftest registered, then ``files``."""
    extra = [(doc, f"run {run.id} (registered by the test suite)") for doc in run.extra_triggers]
    return load_triggers(files, include_defaults=include_defaults, extra=extra, budgets=budgets)


def evaluate(
    store: HistoryStore,
    run: Run | None = None,
    triggers: TriggerSet | None = None,
    extra_findings: Iterable[ArtifactFinding] = (),
) -> list[Breach]:
    """All breaches of a run.

    Parameters
    ----------
    store : HistoryStore
        The history.
    run : Run, optional
        The run to evaluate (default: the latest); runtime windows look back from it.
    triggers : TriggerSet, optional
        Default: :func:`run_triggers` of the run.
    extra_findings : iterable of ArtifactFinding
        Artifact findings to evaluate besides those stored with the run.

    Returns
    -------
    list of Breach
        Most severe first, then by trigger id and subject.
    """
    run = run if run is not None else store.latest_run()
    triggers = triggers if triggers is not None else run_triggers(run)
    breaches = failure_breaches(run, store.results(run.id), triggers)
    breaches += runtime_breaches(store, run, triggers)
    breaches += artifact_breaches(run, [*store.artifacts(run.id), *extra_findings], triggers)
    return sorted(breaches, key=lambda b: (b.trigger.rank, b.trigger.id, b.subject))
