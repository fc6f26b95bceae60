"""Create the separate virtualenv that runs pty-chi for ``benchmarks/quality.py --amortised``.

pty-chi (PyPI ``ptychi``) imports torchvision, which cannot import beside the project's torch pin
(``constraints/ci.txt``), so it gets its own venv with its own pins (``constraints/ptychi.txt``:
torch 2.14.1 + torchvision 0.29.1, about 6 GB) and runs as a subprocess
(``benchmarks/ptychi_runner.py``). CI never makes it. ::

    python benchmarks/ptychi_env.py                  # .venv-ptychi/ at the repository root
    python benchmarks/ptychi_env.py /tmp/ptychi-venv
    python benchmarks/quality.py --amortised --ptychi-python .venv-ptychi/bin/python

Creates the venv (``python3 -m venv``) unless it exists, installs through the pins, checks that
``import ptychi`` works and prints the interpreter to pass as ``--ptychi-python`` (or
``PTYCHO_PTYCHI_PYTHON``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints" / "ptychi.txt"
DEFAULT = ROOT / ".venv-ptychi"
PACKAGES = ("ptychi", "torch", "torchvision", "numpy")
CHECK = "import ptychi, torch, torchvision; print('ptychi', ptychi.__version__, 'torch', torch.__version__)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", nargs="?", type=Path, default=DEFAULT, help=f"venv folder (default {DEFAULT})")
    args = p.parse_args(argv)
    python = args.path / "bin" / "python"
    if not python.exists():
        print(f"creating {args.path} ...", flush=True)
        venv.create(args.path, with_pip=True)
    print(f"installing {', '.join(PACKAGES)} through {CONSTRAINTS.relative_to(ROOT)} (several GB) ...", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), *PACKAGES], check=True)
    check = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True)
    if check.returncode != 0:
        print(f"import ptychi failed in {args.path}:\n{check.stderr[-3000:]}", file=sys.stderr)
        return 1
    print(check.stdout.strip())
    print(python.absolute())  # the venv's own interpreter (not the symlink's target), last line for scripts
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
