"""Every code block of the user documentation (docs/*.md) runs.

Per page, in document order, in a fresh temporary working directory:

* ```` ```python ```` blocks run in one namespace per page (later blocks see earlier names);
* ```` ```console ```` / ```` ```bash ```` / ```` ```shell ```` blocks with ``$ `` prompts: each
  ``$ ptycho ...`` command (optionally prefixed by ``VAR=value`` settings, continued with a
  trailing backslash) runs as ``python -m ptycho_core.cli ...`` and must exit with 0; other
  lines of such a block are expected output: each must occur in the command's output
  (``...`` matches anything). A ``$ `` command that is not ``ptycho`` is an error: blocks that
  cannot run here (pip, torchrun, SLURM, GPU) are written as ```` ```text ```` or without prompts;
* ```` ```toml ```` / ```` ```yaml ```` blocks must parse; one whose first line is
  ``# file: NAME`` is also written to ``NAME`` for the blocks after it.

Optional dependencies: a page listed in :data:`PAGE_REQUIRES` is skipped when its package
is not installed, and a block preceded by ``<!-- docs-test: requires MODULE -->`` (invisible
in the rendered page) is skipped, with the reason, when ``MODULE`` cannot be imported.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import yaml
from docs_support import load_script, nav_pages

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p.name for p in DOCS.glob("*.md"))
PAGE_REQUIRES = {
    "ptychodus.md": ("ptychodus",),
    "writing-a-backend.md": ("ptycho_backend_template",),
}
"""Pages about an optional package: skipped (with the reason) when it is not installed."""
PYTHON = {"python", "py", "python3"}
SHELL = {"console", "bash", "shell", "sh"}
NOT_RUN = {"text", "toml", "yaml", "yml", "json", "ini", "cfg", "", "mermaid", "markdown", "md", "plain"}
COMMAND_TIMEOUT_S = 600

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
REQUIRES = re.compile(r"<!--\s*docs-test:\s*requires\s+(?P<mods>[\w., ]+?)\s*-->")
ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@attrs.frozen
class Block:
    """One fenced code block of a page."""

    lang: str
    code: str
    line: int
    requires: tuple[str, ...] = ()


def parse_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, in order, with the language of each.

    Raises
    ------
    ValueError
        For a fence that is never closed.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        lang = info.strip("{}").split()[0].lstrip(".").lower() if info else ""
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        req = REQUIRES.search(previous)
        requires = tuple(x.strip() for x in re.split(r"[ ,]+", req["mods"]) if x.strip()) if req else ()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise ValueError(f"line {i + 1}: code fence {fence} is never closed")
        blocks.append(Block(lang, "\n".join(body) + "\n", i + 2, requires))
        i = j + 1
    return blocks


def shell_steps(code: str) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` for each ``$ `` prompt of a shell block."""
    steps: list[tuple[str, list[str]]] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            steps.append((command, []))
        elif steps and line.strip():
            steps[-1][1].append(line.strip())
        i += 1
    return steps


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTYCHO_")}
    env.update(PYTHONHASHSEED="0", MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    return env


def run_command(command: str, cwd: Path, where: str) -> str:
    """Run one documented ``ptycho`` command line, check its exit code and return its output."""
    words = shlex.split(command)
    env = _subprocess_env()
    while words and ENV_ASSIGN.match(words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not words or words[0] != "ptycho":
        pytest.fail(f"{where}: `$ {command}` cannot be tested (only `$ ptycho ...` commands run); write blocks "
                    "that cannot run in CI as ```text or without the `$ ` prompt")
    proc = subprocess.run([sys.executable, "-m", "ptycho_core.cli", *words[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"{where}: `$ {command}` exited with {proc.returncode}:\n{output[-4000:]}")
    return output


def check_output(expected: list[str], output: str, command: str, where: str) -> None:
    """Each documented output line must occur in the real output (``...`` matches anything)."""
    flat = " ".join(output.split())
    for line in expected:
        pattern = ".*?".join(re.escape(" ".join(part.split())) for part in line.split("..."))
        if not re.search(pattern, flat):
            pytest.fail(f"{where}: `$ {command}` did not print {line!r}; it printed:\n{output[-3000:]}")


def run_page(page: str, cwd: Path) -> list[str]:
    """Run every block of ``docs/<page>`` in ``cwd``; return the reasons of skipped blocks."""
    namespace: dict = {"__name__": "__docs__"}
    skipped: list[str] = []
    for block in parse_blocks((DOCS / page).read_text(encoding="utf-8")):
        where = f"docs/{page}:{block.line}"
        missing = _missing(block.requires)
        if missing:
            skipped.append(f"{where} needs {', '.join(missing)}")
            continue
        if block.lang in PYTHON:
            exec(compile(block.code, where, "exec"), namespace)  # noqa: S102 - the documented example
        elif block.lang in SHELL:
            for command, expected in shell_steps(block.code):
                output = run_command(command, cwd, where)
                check_output(expected, output, command, where)
        elif block.lang in ("toml", "yaml", "yml"):
            first = block.code.splitlines()[0] if block.code.strip() else ""
            try:
                tomllib.loads(block.code) if block.lang == "toml" else yaml.safe_load(block.code)
            except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
                pytest.fail(f"{where}: {block.lang} block does not parse: {exc}")
            if first.startswith("# file:"):
                target = cwd / first.split(":", 1)[1].strip()
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code, encoding="utf-8")
        elif block.lang not in NOT_RUN:
            pytest.fail(f"{where}: code block language {block.lang!r} is neither run nor declared as not run")
    return skipped


@pytest.mark.parametrize("page", PAGES)
def test_page_code_blocks_run(page, tmp_path, monkeypatch):
    missing = _missing(PAGE_REQUIRES.get(page, ()))
    if missing:
        pytest.skip(f"docs/{page} documents {', '.join(missing)}, which is not installed")
    for key in [k for k in os.environ if k.startswith("PTYCHO_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    skipped = run_page(page, tmp_path)
    if skipped:
        pytest.skip("ran the other blocks; skipped: " + "; ".join(skipped))


def test_parser_finds_blocks_languages_and_requirements():
    text = (
        "intro\n\n```python\nx = 1\n```\n\n<!-- docs-test: requires ptycho_tf -->\n\n"
        "```console\n$ ptycho backends \\\n  --devices\nInstalled backends:\n```\n\n"
        "- item\n\n    ```toml\n    # file: a.toml\n    [model]\n    N = 64\n    ```\n"
    )
    blocks = parse_blocks(text)
    assert [b.lang for b in blocks] == ["python", "console", "toml"]
    assert blocks[0].requires == () and blocks[1].requires == ("ptycho_tf",)
    assert shell_steps(blocks[1].code) == [("ptycho backends  --devices", ["Installed backends:"])]
    assert blocks[2].code.startswith("# file: a.toml\n[model]")
    with pytest.raises(ValueError, match="never closed"):
        parse_blocks("```python\nx = 1\n")


def test_documented_output_must_match():
    printed = "Installed backends:\n  pytorch  ptycho-torch 0.1"
    check_output(["Installed backends:", "pytorch ... ptycho-torch"], printed, "ptycho backends", "here")
    with pytest.raises(pytest.fail.Exception, match="did not print"):
        check_output(["No backend is installed."], "Installed backends:", "ptycho backends", "here")


def test_every_page_is_in_the_mkdocs_nav():
    listed = set(nav_pages())
    assert set(PAGES) <= listed, f"pages missing from mkdocs.yml nav: {sorted(set(PAGES) - listed)}"


def test_make_figures_writes_the_concepts_png(tmp_path):
    out = load_script("make_figures").make_concepts_figure(tmp_path / "concepts.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    committed = DOCS / "img" / "concepts.png"
    assert committed.is_file() and committed.stat().st_size < 200_000, "commit a small docs/img/concepts.png"


def test_result_figures_are_committed_small_and_shown():
    script = load_script("make_figures")
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for name in script.RESULT_FIGURES:
        path = DOCS / "img" / f"result-{name}.png"
        assert path.is_file(), f"run `python docs/scripts/make_figures.py --results` and commit {path.name}"
        assert path.stat().st_size < 150_000, f"{path.name} is {path.stat().st_size // 1024} kB; keep it small"
        assert f"img/{path.name}" in index, f"docs/index.md does not show {path.name}"
