"""The command line shared by the documentation generators: write the page, or ``--check`` it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def write_or_check(generate: Callable[[], str], output: Path, script: str, argv: list[str] | None = None) -> int:
    """Write ``generate()`` to ``output``; with ``--check`` exit 1 (and say how to fix it) if it differs.

    ``script`` is the generator's file (its ``__file__``): its name goes into the description and
    into the "out of date" message.
    """
    name = Path(script).name
    parser = argparse.ArgumentParser(description=f"Write (or with --check compare) {output.name} ({name}).")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    parser.add_argument("--output", type=Path, default=output, help=f"file to write (default: docs/{output.name})")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is out of date: run python docs/scripts/{name}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0
