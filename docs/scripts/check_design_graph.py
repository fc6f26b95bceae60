"""Check the package graph drawn in docs/design.md against the code (run by ``nox -s lint``).

The mermaid block between ``<!-- design-graph:start -->`` and ``<!-- design-graph:end -->`` holds
two kinds of edges between our packages (named by import name):

- ``A --> B``: A imports B. The set of these must equal the package-level import graph of the
  sources (built with grimp, the library under import-linter, function-local imports included),
  and B must be a declared dependency of A's distribution.
- ``A -. "group" .-> B``: A plugs into B through the entry-point group ``group``; A's
  ``pyproject.toml`` must declare an entry point in that group, and every package that declares
  one in a ``ptycho.*`` group must be drawn.

Exits 1 with one line per difference, 0 when the drawing is the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
PACKAGES = {
    "ptycho": ROOT / "packages" / "ptycho",
    "ptycho_core": ROOT / "packages" / "ptycho-core",
    "ptycho_data": ROOT / "packages" / "ptycho-data",
    "ptycho_torch": ROOT / "packages" / "ptycho-torch",
    "ptycho_tf": ROOT / "packages" / "ptycho-tf",
    "ptycho_ci": ROOT / "packages" / "ptycho-ci",
    "ptycho_backend_template": ROOT / "examples" / "ptycho-backend-template",
}
IMPORT_EDGE = re.compile(r"^\s*(\w+)(?:\[[^\]]*\]|\([^)]*\))?\s*-->\s*(\w+)")
ENTRY_EDGE = re.compile(r'^\s*(\w+)(?:\[[^\]]*\])?\s*-\.\s*"([\w.]+)"\s*\.->\s*(\w+)')


def drawn_edges(text: str) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    """(import edges, entry-point edges) of the design graph in ``text``."""
    match = re.search(r"<!-- design-graph:start -->(.*?)<!-- design-graph:end -->", text, re.S)
    if match is None:
        raise SystemExit(f"{DESIGN}: no block between <!-- design-graph:start --> and <!-- design-graph:end -->")
    imports, entries = set(), set()
    for line in match.group(1).splitlines():
        if m := ENTRY_EDGE.match(line):
            entries.add((m.group(1), m.group(2), m.group(3)))
        elif m := IMPORT_EDGE.match(line):
            imports.add((m.group(1), m.group(2)))
    return imports, entries


def code_edges() -> set[tuple[str, str]]:
    """Package-level imports between our packages, read from the sources."""
    import grimp

    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    return {(a, b) for a in PACKAGES for b in PACKAGES
            if a != b and graph.direct_import_exists(importer=a, imported=b, as_packages=True)}


def _distribution(pyproject: dict) -> str:
    return pyproject["project"]["name"]


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~\[;(]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def check() -> list[str]:
    problems = []
    projects = {name: tomllib.loads((path / "pyproject.toml").read_text()) for name, path in PACKAGES.items()}
    imports, entries = drawn_edges(DESIGN.read_text())
    actual = code_edges()
    for a, b in sorted(actual - imports):
        problems.append(f"{a} imports {b}, but docs/design.md does not draw `{a} --> {b}`")
    for a, b in sorted(imports - actual):
        problems.append(f"docs/design.md draws `{a} --> {b}`, but no module of {a} imports {b}")
    for a, b in sorted(imports | actual):
        if a in projects and b in projects:
            declared = _requirement_names(projects[a]["project"].get("dependencies", []))
            if _distribution(projects[b]) not in declared:
                problems.append(f"{PACKAGES[a].relative_to(ROOT)}/pyproject.toml: {a} imports {b}, but "
                                f"{_distribution(projects[b])!r} is not in its dependencies")
    declared_entries = {(name, group) for name, project in projects.items()
                        for group in project["project"].get("entry-points", {}) if group.startswith("ptycho.")}
    for a, group, _ in sorted(entries):
        if (a, group) not in declared_entries:
            problems.append(f"docs/design.md draws {a} -. {group} .-> but {a}'s pyproject.toml declares no "
                            f"entry point in [project.entry-points.\"{group}\"]")
    for a, group in sorted(declared_entries - {(a, g) for a, g, _ in entries}):
        problems.append(f"{a} declares entry points in {group!r}, but docs/design.md does not draw them")
    return problems


def main() -> int:
    problems = check()
    for problem in problems:
        print(f"check_design_graph: {problem}", file=sys.stderr)
    if not problems:
        print("check_design_graph: docs/design.md's package graph is the code's")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
