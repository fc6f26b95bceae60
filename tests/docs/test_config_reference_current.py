"""docs/configuration.md is exactly what docs/scripts/gen_config_reference.py generates."""

from __future__ import annotations

from pathlib import Path

import attrs
from docs_support import load_script

from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _generator():
    return load_script("gen_config_reference")


def test_committed_configuration_md_is_current():
    text = _generator().generate()
    committed = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert committed == text, "docs/configuration.md is out of date: run python docs/scripts/gen_config_reference.py"


def test_every_field_is_documented_with_a_row():
    text = _generator().generate()
    for cls in (ModelConfig, TrainingConfig, InferenceConfig):
        section = text.split(f"## {cls.__name__}\n", 1)[1].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if line.startswith("| `")]
        assert [r.split("`")[1] for r in rows] == [f.name for f in attrs.fields(cls)]
        cells = [[c.strip() for c in r.replace("\\|", "/").split("|")[1:-1]] for r in rows]
        assert all(len(c) == 7 and all(c[:4]) and c[6] for c in cells), rows


def test_generator_refuses_an_undocumented_field_or_unknown_validator():
    gen = _generator()

    @attrs.frozen(kw_only=True)
    class Odd:
        value: int = attrs.field(default=1, validator=attrs.validators.gt(0))

    try:
        gen.allowed_values(attrs.fields(Odd).value)
    except ValueError as exc:
        assert "unknown validator" in str(exc)
    else:
        raise AssertionError("an unknown validator must not be documented silently")
    rows = gen.class_table(ModelConfig)
    assert any("`probe.big`" in r and "`true` or `false`" in r for r in rows)
    assert any(r.startswith("| `N` |") and "one of `64`, `128`, `256`" in r for r in rows)


def test_check_mode_reports_a_stale_file(tmp_path):
    gen = _generator()
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n", encoding="utf-8")
    assert gen.main(["--check", "--output", str(stale)]) == 1
    assert gen.main(["--output", str(stale)]) == 0
    assert gen.main(["--check", "--output", str(stale)]) == 0
