"""docs/cli.md is exactly what docs/scripts/gen_cli_reference.py generates, without any backend."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from docs_support import load_script

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCRIPT = DOCS / "scripts" / "gen_cli_reference.py"


def _generator():
    return load_script("gen_cli_reference")


def test_committed_cli_md_is_current():
    text = _generator().generate()
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert committed == text, "docs/cli.md is out of date: run python docs/scripts/gen_cli_reference.py"


def test_every_command_and_flag_is_documented():
    from ptycho_core.cli import build_parser

    gen = _generator()
    text = gen.generate()
    commands = gen._subparsers(build_parser()).choices
    for name, parser in commands.items():
        assert f"### `ptycho {name}`" in text
        for action in parser._actions:
            if action.help == "show this help message and exit":
                continue
            for flag in action.option_strings:
                assert f"`{flag}`" in text, f"ptycho {name} {flag} missing from docs/cli.md"


def test_generating_imports_no_backend_framework():
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("g", {str(SCRIPT)!r})
        g = importlib.util.module_from_spec(spec); spec.loader.exec_module(g)
        g.generate()
        loaded = sorted(m for m in ("torch", "tensorflow", "keras", "lightning", "ptycho_torch", "ptycho_tf")
                        if m in sys.modules)
        print(loaded)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTYCHO_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_check_mode_reports_a_stale_file(tmp_path):
    gen = _generator()
    stale = tmp_path / "cli.md"
    stale.write_text("old\n", encoding="utf-8")
    assert gen.main(["--check", "--output", str(stale)]) == 1
    assert gen.main(["--output", str(stale)]) == 0
    assert gen.main(["--check", "--output", str(stale)]) == 0
