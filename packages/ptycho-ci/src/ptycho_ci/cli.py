"""``ptycho-ci``: check, report, history, calibrate, escalate, artifacts, triggers.

Exit codes: ``check`` returns 0 (no breach, or only medium/warning), 1 (a high breach) or
2 (a critical breach); every command returns 3 for bad input or usage (a missing history,
an invalid trigger file), so 2 always means "critical". ``--history`` defaults to
``$PTYCHO_CI_HISTORY``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ptycho_ci.errors import CIError
from ptycho_ci.text import iso, plain_table
from ptycho_core.errors import PtychoInputError

USAGE_ERROR = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2, which means "critical" here
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _store(args: argparse.Namespace):
    from ptycho_ci.history import HistoryStore

    path = args.history or os.environ.get("PTYCHO_CI_HISTORY", "").strip()
    if not path:
        raise CIError("no history given: pass --history PATH or set $PTYCHO_CI_HISTORY")
    return HistoryStore(path, create=False)


def _run_and_triggers(store, args: argparse.Namespace):
    from ptycho_ci.evaluate import run_triggers

    run = store.run(args.run) if getattr(args, "run", None) is not None else store.latest_run(args.label)
    return run, run_triggers(run, args.triggers, include_defaults=not args.no_default_triggers,
                             budgets=args.budgets)


def _findings(args: argparse.Namespace, triggers) -> list:
    from ptycho_ci.artifacts import check_directory

    options = triggers.artifact_options()
    return [f for d in (args.artifacts or []) for f in check_directory(d, **options)]


def cmd_check(args: argparse.Namespace) -> int:
    """Evaluate a run (default: the latest) and print its breaches."""
    from ptycho_ci.evaluate import evaluate, exit_code

    with _store(args) as store:
        run, triggers = _run_and_triggers(store, args)
        breaches = evaluate(store, run, triggers, _findings(args, triggers))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(run.counts.items())) or "no tests"
    print(f"run {run.id} ({run.label or 'no label'}, {iso(run.finished)}): {counts}")
    if not breaches:
        print("no trigger fired")
        return 0
    rows = [[b.severity, b.trigger.id, b.owner, b.trigger.sla, iso(b.deadline), b.subject, b.observed[:100]]
            for b in breaches]
    print(plain_table(["severity", "trigger", "owner", "SLA", "deadline", "subject", "observed"], rows))
    code = exit_code(breaches)
    print(f"exit {code}: " + {0: "no high or critical breach", 1: "high breach", 2: "critical breach"}[code])
    return code


def cmd_report(args: argparse.Namespace) -> int:
    """Write report.md and runtime-trend PNGs."""
    from ptycho_ci.report import write_report

    with _store(args) as store:
        run, triggers = _run_and_triggers(store, args)
        path = write_report(store, triggers, args.output, last=args.last, selectors=args.selector or (), run=run)
    print(f"wrote {path}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """List recorded runs, or the runtime of a selector per run."""
    from ptycho_ci.guardrails import Selector, measure
    from ptycho_ci.triggers import load_triggers

    with _store(args) as store:
        runs = store.runs(last=args.last, label=args.label)
        if args.selector:
            sel, groups = Selector.parse(args.selector), load_triggers(args.triggers).groups
            rows = []
            for run in runs:
                values = measure(store.results(run.id), sel, groups, "sum")
                if values:
                    rows.append([run.id, iso(run.started), f"{values[str(sel)]:.2f}"])
            print(plain_table(["run", "started", f"seconds ({sel})"], rows))
            return 0
        rows = [[r.id, iso(r.started), r.label or "-", (r.environment.get("git_commit") or "-")[:10],
                 r.counts.get("passed", 0), r.counts.get("failed", 0) + r.counts.get("error", 0),
                 r.counts.get("skipped", 0), f"{r.duration:.1f}"] for r in runs]
    print(plain_table(["run", "started", "label", "commit", "passed", "failed", "skipped", "wall (s)"], rows))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Measure baselines (median of recent healthy runs) for selectors and store them."""
    from ptycho_ci.environment import capture
    from ptycho_ci.guardrails import Selector, calibrate_from_history, store_baseline
    from ptycho_ci.report import report_selectors

    with _store(args) as store:
        _run, triggers = _run_and_triggers(store, args)
        if args.selector:
            selectors = [Selector.parse(s) for s in args.selector]
        else:
            selectors = [s for s in report_selectors(triggers) if s.kind != "session"]
        env = capture()
        machine = {k: env[k] for k in ("hostname", "machine", "cpu", "python")}
        rows = []
        for sel in selectors:
            seconds, n = calibrate_from_history(store, sel, triggers.groups, last=args.last,
                                                minimum_runs=args.min_runs)
            if not args.dry_run:
                store_baseline(store, sel, seconds, n, machine)
            rows.append([str(sel), f"{seconds:.2f}", n])
    print(plain_table(["selector", "baseline (s)", "runs"], rows))
    if args.dry_run:
        print("dry run: nothing stored")
    return 0


def cmd_escalate(args: argparse.Namespace) -> int:
    """Write one Markdown issue body per breach into a directory."""
    from ptycho_ci.escalate import write_escalations
    from ptycho_ci.evaluate import evaluate

    with _store(args) as store:
        run, triggers = _run_and_triggers(store, args)
        breaches = evaluate(store, run, triggers, _findings(args, triggers))
        paths = write_escalations(breaches, args.output, store.path)
    for p in paths:
        print(p)
    print(f"{len(paths)} escalation(s) for run {run.id} in {args.output}")
    return 0


def cmd_artifacts(args: argparse.Namespace) -> int:
    """Check output directories; exit 1 when anything is wrong. ``--record`` attaches findings to the latest run."""
    from ptycho_ci.artifacts import check_directory

    found = [f for d in args.directory for f in check_directory(d, min_png_bytes=args.min_png_bytes,
                                                                  expect_png=args.expect or ("amplitude.png",
                                                                                             "phase.png"))]
    if found:
        print(plain_table(["check", "path", "problem"], [[f.check, f.path, f.message] for f in found]))
    else:
        print("all artifacts ok")
    if args.record:
        with _store(args) as store:
            run = store.latest_run()
            store.add_artifacts(run.id, found)
            print(f"recorded {len(found)} finding(s) with run {run.id}")
    return 1 if found else 0


def cmd_triggers(args: argparse.Namespace) -> int:
    """List the triggers in force (shipped, plugins, files) and the groups."""
    from ptycho_ci.triggers import load_triggers

    ts = load_triggers(args.triggers, include_defaults=not args.no_default_triggers, budgets=args.budgets)
    rows = [[t.id, t.severity, t.owner, t.sla, t.condition.kind, t.priority, t.title] for t in ts.triggers.values()]
    print(plain_table(["id", "severity", "owner", "SLA", "kind", "priority", "title"], rows))
    print("groups: " + ", ".join(sorted(ts.groups)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ptycho-ci``."""
    parser = _Parser(prog="ptycho-ci", description="Run history, guardrails and escalations for ptycho's tests.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name, func, *, history=True, run=False, triggers=True):
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        p.set_defaults(func=func)
        if history:
            p.add_argument("--history", metavar="PATH", help="SQLite run history (default $PTYCHO_CI_HISTORY)")
        if run:
            p.add_argument("--run", type=int, help="run id to evaluate (default: the latest)")
            p.add_argument("--label", help="evaluate the latest run with this label")
        if triggers:
            p.add_argument("--triggers", metavar="FILE", action="append", default=[],
                           help="extra trigger TOML file (repeatable)")
            p.add_argument("--no-default-triggers", action="store_true", help="leave out the shipped triggers")
            p.add_argument("--budgets", action="store_true",
                           help="also apply the tier runtime budgets (BUDGET-PR: ci_pr tests under 120 s)")
        return p

    p = add("check", cmd_check, run=True)
    p.add_argument("--artifacts", metavar="DIR", action="append", help="also check this output directory")
    p = add("report", cmd_report, run=True)
    p.add_argument("--output", metavar="DIR", required=True, help="directory for report.md and PNGs")
    p.add_argument("--last", type=int, default=30, help="number of recent runs shown (default 30)")
    p.add_argument("--selector", action="append", help="extra selector to plot (repeatable)")
    p = add("history", cmd_history)
    p.add_argument("--last", type=int, default=20, help="number of recent runs (default 20)")
    p.add_argument("--label", help="only runs with this label")
    p.add_argument("--selector", help="show this selector's runtime per run")
    p = add("calibrate", cmd_calibrate, run=True)
    p.add_argument("--selector", action="append", help="selector to calibrate (default: all runtime triggers')")
    p.add_argument("--last", type=int, default=10, help="healthy runs to take the median of (default 10)")
    p.add_argument("--min-runs", type=int, default=3, help="fewest healthy runs accepted (default 3)")
    p.add_argument("--dry-run", action="store_true", help="print the baselines without storing them")
    p = add("escalate", cmd_escalate, run=True)
    p.add_argument("--output", metavar="DIR", required=True, help="directory for the issue bodies")
    p.add_argument("--artifacts", metavar="DIR", action="append", help="also check this output directory")
    p = add("artifacts", cmd_artifacts, triggers=False)
    p.add_argument("directory", nargs="+", help="output directories to check")
    p.add_argument("--min-png-bytes", type=int, default=1024, help="PNG size floor (default 1024)")
    p.add_argument("--expect", action="append", help="PNG a run output directory must hold (repeatable)")
    p.add_argument("--record", action="store_true", help="attach the findings to the latest run in --history")
    add("triggers", cmd_triggers, history=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ptycho-ci`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CIError, PtychoInputError) as exc:
        print(f"ptycho-ci {args.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
