"""Every malformed input of the corpus through the ``ptycho`` CLI, in a subprocess.

Each case goes through the command that fits its kind (``fixture`` for datasets,
``config validate`` for configs, ``infer`` for bundles, ``evaluate`` for reconstructions;
no command reads Ptychodus products, so ``hdf5`` cases are covered in-process only).
Expected: exit code 2, exactly one ``ptycho: error:`` line naming the file and problem,
no traceback without ``--debug``, and no file or directory created or changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from corpus_cases import CASES, Case

ERROR_PREFIX = "ptycho: error: "


def _command(c: Case, files: dict[str, Path], directory: Path) -> list[str]:
    if c.kind == "npz":
        return ["fixture", str(files["data"]), str(directory / "fixture_out.npz"), "--n-positions", "2"]
    if c.kind == "config":
        return ["config", "validate", str(files["config"])]
    if c.kind == "bundle":
        return ["infer", "--model-path", str(files["bundle"]), "--test-data", str(files["data"]),
                "--output-dir", str(directory / "infer_out")]
    if c.kind == "evaluate":
        return ["evaluate", str(files["reconstruction"]), str(files["truth"]),
                "--output", str(directory / "metrics.json")]
    raise AssertionError(f"no CLI command for kind {c.kind!r}")


CLI_KINDS = ("npz", "config", "bundle", "evaluate")
APP_KINDS = ("bundle", "evaluate")
CLI_CASES = sorted(name for name, c in CASES.items() if c.kind in CLI_KINDS)


def _snapshot(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): (p.stat().st_size if p.is_file() else -1)
            for p in sorted(directory.rglob("*"))}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PTYCHO_BACKEND", "PYTHONWARNINGS")}
    return subprocess.run([sys.executable, "-m", "ptycho_core.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def _prepare(name: str, tmp_path: Path) -> tuple[Case, list[str]]:
    c = CASES[name]
    if c.kind != "config":  # fixture, infer (its test data) and evaluate need ptycho-data
        pytest.importorskip("ptycho_data", reason=f"`ptycho {c.kind}` cases need ptycho-data (not installed here)")
    if c.kind in APP_KINDS:  # infer and evaluate are commands of the application
        pytest.importorskip("ptycho.cli_workflow", reason=f"`ptycho {c.kind}` is a command of the ptycho application "
                                                          "(not installed here)")
    for module in c.requires:
        pytest.importorskip(module, reason=f"case {name} needs {module}")
    files = c.write(tmp_path)
    return c, _command(c, files, tmp_path)


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_refuses_case(name: str, tmp_path: Path) -> None:
    c, args = _prepare(name, tmp_path)
    before = _snapshot(tmp_path)
    proc = _run(args, tmp_path)
    assert proc.returncode == 2, f"{name}: exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, f"{name}: traceback without --debug:\n{proc.stderr}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, f"{name}: expected one error line, got:\n{proc.stderr}"
    missing = [w for w in c.words if w not in errors[0]]
    assert not missing, f"{name}: error line lacks {missing}: {errors[0]}"
    assert _snapshot(tmp_path) == before, f"{name}: the command created or changed files in {tmp_path}"


def test_cli_debug_shows_traceback(tmp_path: Path) -> None:
    c, args = _prepare("cfg_wrong_type", tmp_path)
    proc = _run(["--debug", *args], tmp_path)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ptycho_core.errors.ConfigError" in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def test_every_cli_kind_has_cases() -> None:
    kinds = {CASES[name].kind for name in CLI_CASES}
    assert kinds == set(CLI_KINDS)
