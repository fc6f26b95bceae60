"""Escalations: one Markdown issue body per breach, ready to paste into (or post to) an issue tracker.

Each body names the trigger, severity, owner, response SLA and deadline, says what was
observed, shows the matched trigger definition, gives a reproduction command and the
environment capture of the run.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ptycho_ci.conditions import ArtifactCondition, RuntimeCondition
from ptycho_ci.evaluate import Breach
from ptycho_ci.text import iso, md_table, slug, toml_table
from ptycho_core.atomic import write_text


def strip_ci_options(args: tuple[str, ...] | list[str]) -> list[str]:
    """pytest arguments without the ``--ptycho-ci-*`` options (and their values)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("--ptycho-ci"):
            skip = "=" not in arg
        else:
            out.append(arg)
    return out


def reproduction(breach: Breach) -> str:
    """Shell commands that reproduce the breach from the run's invocation directory."""
    run = breach.run
    cd = f"cd {shlex.quote(run.environment.get('invocation_dir', '.'))}"
    if isinstance(breach.trigger.condition, ArtifactCondition):
        return f"{cd}\nptycho-ci artifacts {shlex.quote(breach.subject)}"
    if isinstance(breach.trigger.condition, RuntimeCondition):
        args = [shlex.quote(a) for a in strip_ci_options(run.args)]
        return f"{cd}\n" + " ".join(["python -m pytest", *args, "--durations=20"])
    prefix = ""
    if breach.result is not None and breach.result.backend:
        prefix = f"PTYCHO_BACKEND={breach.result.backend} "
    return f"{cd}\n{prefix}python -m pytest {shlex.quote(breach.subject)} -x -vv"


def environment_table(env: dict) -> str:
    """A Markdown table of the environment capture (packages on one row each)."""
    rows = [[key, env.get(key, "-")] for key in ("python", "implementation", "platform", "machine", "hostname")]
    cpu = env.get("cpu") or {}
    rows.append(["CPUs (logical / usable)", f"{cpu.get('logical', '-')} / {cpu.get('usable', '-')}"])
    dirty = " (uncommitted changes)" if env.get("git_dirty") else ""
    rows.append(["git commit", f"{env.get('git_commit') or '-'}{dirty}"])
    rows += [[name, version] for name, version in sorted((env.get("packages") or {}).items())]
    rows += [[f"${name}", value] for name, value in sorted((env.get("ci_env") or {}).items())]
    return md_table(["", "value"], rows)


def _evidence(breach: Breach) -> list[str]:
    if breach.result is not None:
        r = breach.result
        chain = " < ".join(r.exc_types) if r.exc_types else (r.exc_type or "-")
        return [
            "## Failure", "",
            md_table(["", "value"], [["test", r.nodeid], ["outcome", f"{r.outcome} ({r.phase or 'call'})"],
                                     ["exception", chain], ["location", r.location or "-"],
                                     ["backend", r.backend or "-"], ["markers", ", ".join(r.markers) or "-"],
                                     ["duration", f"{r.duration:.2f} s"]]),
            "", "```text", (r.message or "(no message)").strip(), "```", "",
            *(["Traceback (innermost last):", "", "```text", *r.frames[-12:], "```", ""] if r.frames else []),
        ]
    if breach.finding is not None:
        f = breach.finding
        return ["## Artifact", "", md_table(["", "value"], [["path", f.path], ["check", f.check],
                                                           ["problem", f.message]]), ""]
    rows = [[rid, f"{s:.2f}"] for rid, s in breach.series]
    limit = f"{breach.threshold:.1f} s" if breach.threshold is not None else "-"
    return ["## Runtime", "", f"Threshold: {limit}.", "", md_table(["run", "seconds"], rows), ""]


def issue_body(breach: Breach, history: str | os.PathLike | None = None) -> str:
    """The Markdown issue body of one breach."""
    t, run = breach.trigger, breach.run
    head = [
        f"# [{t.id}] {t.title}: {breach.subject}", "",
        md_table(["", "value"], [
            ["severity", t.severity], ["owner", t.owner], ["response SLA", t.sla],
            ["deadline", iso(breach.deadline)], ["run", f"{run.id} ({run.label or 'no label'}, finished "
                                                     f"{iso(run.finished)})"],
            ["history", str(history) if history else "-"],
        ]),
        "", "## What happened", "", f"{breach.observed}", "", t.description, "",
    ]
    matched = ["## Matched trigger", "", f"From `{t.source}`:", "", "```toml", "[[trigger]]",
               toml_table(t.table), "```", ""]
    action = ["## Suggested action", "", t.action, ""] if t.action else []
    repro = ["## Reproduce", "", "```bash", reproduction(breach), "```", ""]
    env = ["## Environment", "", environment_table(run.environment), ""]
    return "\n".join(head + _evidence(breach) + matched + action + repro + env)


def write_escalations(
    breaches: list[Breach], output: str | os.PathLike, history: str | os.PathLike | None = None
) -> list[Path]:
    """Write one ``<nn>-<trigger>-<subject>.md`` per breach into ``output``; return the paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, breach in enumerate(breaches, start=1):
        path = output / f"{i:02d}-{breach.trigger.id}-{slug(breach.subject, 50)}.md"
        write_text(path, issue_body(breach, history))
        paths.append(path)
    return paths
