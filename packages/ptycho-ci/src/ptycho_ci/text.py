"""Small text helpers shared by the CLI, the report and the escalations: tables, times, slugs."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone


def iso(ts: float | None) -> str:
    """``YYYY-MM-DD HH:MM UTC`` of a POSIX time (``-`` for None)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe lower-case slug of ``text``."""
    out = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return out[:limit].rstrip("-") or "item"


def plain_table(headers: list[str], rows: list[list[object]]) -> str:
    """A fixed-width text table (for terminals)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_escape(text: object) -> str:
    """Escape a value for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(md_escape(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def toml_value(value: object) -> str:
    """A TOML literal of a str, number, bool, list or dict value (for showing trigger definitions)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def toml_table(table: dict) -> str:
    """``key = value`` lines of a flat TOML table (nested dicts as inline tables)."""
    return "\n".join(f"{k} = {toml_value(v)}" for k, v in table.items())
