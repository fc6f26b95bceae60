"""The run report: a Markdown summary (for a CI job summary) and a runtime-trend PNG per selector.

``report.md`` holds the recent runs, the breaches of the latest run, one section per
selector with its trend plot and thresholds, the latest run's failures and its slowest
tests. Plots use Matplotlib's Agg canvas directly (no global backend switch, no display).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ptycho_ci.conditions import RuntimeCondition
from ptycho_ci.evaluate import Breach, evaluate
from ptycho_ci.guardrails import Selector, measure
from ptycho_ci.history import HistoryStore
from ptycho_ci.records import Run
from ptycho_ci.text import iso, md_table, slug
from ptycho_ci.triggers import TriggerSet
from ptycho_core.atomic import atomic_file, write_text

REPORT_NAME = "report.md"


def report_selectors(triggers: TriggerSet, extra: list[str] | tuple[str, ...] = ()) -> list[Selector]:
    """Selectors of the runtime triggers, ``session`` and ``extra``, without duplicates, in that order."""
    texts = [str(t.condition.selector) for t in triggers.of_kind(RuntimeCondition)] + ["session", *extra]
    seen: dict[str, Selector] = {}
    for text in texts:
        seen.setdefault(str(Selector.parse(text)), Selector.parse(text))
    return list(seen.values())


def runtime_series(store: HistoryStore, runs: list[Run], selector: Selector, triggers: TriggerSet) -> list[tuple]:
    """``(run, seconds)`` of ``selector`` (summed) for each of ``runs`` that selected any test."""
    out = []
    for run in runs:
        values = measure(store.results(run.id), selector, triggers.groups, "sum")
        if values:
            out.append((run, values[str(selector)]))
    return out


def thresholds(triggers: TriggerSet, selector: Selector, baselines: dict) -> list[tuple[str, float, bool]]:
    """``(label, seconds, is_upper)`` of the runtime triggers on ``selector`` (baseline-resolved)."""
    out = []
    base = baselines.get(str(selector), {}).get("seconds")
    for t in triggers.of_kind(RuntimeCondition):
        if str(t.condition.selector) == str(selector) and t.condition.aggregate != "each":
            rule = t.condition.rule
            word = "max" if rule.upper else "min"
            extra = f", {rule.consecutive} runs" if rule.consecutive > 1 else ""
            seconds = rule.threshold(base)
            out.append((f"{t.id} {word} {seconds:.0f} s{extra}", seconds, rule.upper))
    return out


def plot_trend(series: list[tuple], limits: list[tuple[str, float, bool]], title: str, path: Path) -> Path:
    """Write a runtime-trend PNG: seconds per run id with the threshold lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = [run.id for run, _ in series]
    ys = [seconds for _, seconds in series]
    ax.plot(xs, ys, marker="o", color="tab:blue", label="runtime")
    styles = {True: ("tab:red", "--"), False: ("tab:orange", ":")}
    for label, seconds, upper in limits:
        color, style = styles[upper]
        ax.axhline(seconds, color=color, linestyle=style, linewidth=1, label=label)
    ax.set_xlabel("run id")
    ax.set_ylabel("seconds")
    ax.set_title(title)
    if len(xs) <= 15:
        ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _runs_table(runs: list[Run]) -> str:
    rows = []
    for r in runs:
        c = r.counts
        commit = (r.environment.get("git_commit") or "-")[:10]
        rows.append([r.id, iso(r.started), r.label or "-", commit, c.get("passed", 0), c.get("failed", 0),
                     c.get("error", 0), c.get("skipped", 0), f"{r.duration:.1f}"])
    return md_table(["run", "started", "label", "commit", "passed", "failed", "errors", "skipped", "wall (s)"], rows)


def _breach_table(breaches: list[Breach]) -> str:
    if not breaches:
        return "No trigger fired."
    rows = [[b.severity, b.trigger.id, b.subject, b.observed, b.owner, b.trigger.sla, iso(b.deadline)]
            for b in breaches]
    return md_table(["severity", "trigger", "subject", "observed", "owner", "SLA", "deadline"], rows)


def write_report(
    store: HistoryStore,
    triggers: TriggerSet,
    output: str | os.PathLike,
    *,
    last: int = 30,
    selectors: list[str] | tuple[str, ...] = (),
    run: Run | None = None,
) -> Path:
    """Write ``report.md`` and one ``runtime-<selector>.png`` per selector into ``output``.

    Parameters
    ----------
    store : HistoryStore
        The history.
    triggers : TriggerSet
        Triggers evaluated for the breach table; their runtime selectors get trend plots.
    output : path
        Directory (created if needed).
    last : int
        Number of runs shown, ending at ``run``.
    selectors : sequence of str
        Extra selectors to plot.
    run : Run, optional
        The run the report is about (default: the latest).

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    latest = run if run is not None else store.latest_run()
    runs = [r for r in store.runs() if r.id <= latest.id][-last:]
    breaches = evaluate(store, latest, triggers)
    baselines = store.baselines()
    parts = [
        "# ptycho-ci report", "",
        f"History `{store.path}`: {store.count_runs()} runs recorded, the last {len(runs)} shown. "
        f"Generated {iso(time.time())}.", "",
        "## Runs", "", _runs_table(runs), "",
        f"## Breaches in run {latest.id}", "", _breach_table(breaches), "",
        "## Runtime trends", "",
    ]
    for sel in report_selectors(triggers, selectors):
        series = runtime_series(store, runs, sel, triggers)
        parts += [f"### `{sel}`", ""]
        if not series:
            parts += ["No recorded run selected any test.", ""]
            continue
        limits = thresholds(triggers, sel, baselines)
        png = plot_trend(series, limits, f"runtime of {sel}", output / f"runtime-{slug(str(sel))}.png")
        base = baselines.get(str(sel))
        parts += [f"![runtime of {sel}]({png.name})", ""]
        if base:
            when = iso(base["measured_at"])
            parts += [f"Baseline {base['seconds']:.1f} s (median of {base['n_runs']} runs, {when}).", ""]
        if limits:
            parts += ["Thresholds: " + "; ".join(label for label, _, _ in limits) + ".", ""]
        parts += [md_table(["run", "seconds"], [[run.id, f"{s:.2f}"] for run, s in series]), ""]
    failed = [r for r in store.results(latest.id) if r.failed]
    parts += [f"## Failures in run {latest.id}", ""]
    parts += [md_table(["test", "outcome", "exception", "message"],
                       [[r.nodeid, r.outcome, r.exc_type or "-", (r.message or "").strip()[:160]] for r in failed])
              if failed else "None.", ""]
    slow = sorted(store.results(latest.id), key=lambda r: -r.duration)[:10]
    parts += [f"## Slowest tests in run {latest.id}", "",
              md_table(["test", "seconds", "outcome"], [[r.nodeid, f"{r.duration:.2f}", r.outcome] for r in slow]), ""]
    path = output / REPORT_NAME
    write_text(path, "\n".join(parts))
    return path
