r"""Try triggers on real failures: run a small test suite with recording on and classify its failures.

Used by ptycho-ci's own tests and the backends' (the trigger table against failures raised the
way real code raises them), and usable for a project's own triggers::

    suite = {"packages/ptycho-data/tests/test_layout.py":
             "import numpy as np\n\ndef test_layout():\n    np.zeros((64, 64, 100))[80]  # (N, N, n) as (n, N, N)\n"}
    history = run_recorded_suite(suite, tmp_path)
    assert classification(history) == {"packages/ptycho-data/tests/test_layout.py::test_layout": "FORMAT-001"}

The files are laid out under ``root`` as they would be in the repository, so node ids and
traceback frames read as they would there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path


def run_recorded_suite(files: Mapping[str, str], root: str | os.PathLike, *, args: Iterable[str] = (),
                       timeout: float = 300.0) -> Path:
    """Write ``files`` (relative path -> source, dedented) under ``root``, run pytest there with recording on.

    The run is a subprocess of this Python (``--import-mode=importlib``, collection errors do not
    stop it, no ``PTYCHO_CI_*`` variable of the calling process leaks in). Returns the history file
    (``root/history.sqlite``).

    Raises
    ------
    RuntimeError
        pytest did not finish with exit status 0 or 1 (a usage error or an internal error), with its output.
    """
    root = Path(root)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    history = root / "history.sqlite"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTYCHO_CI_")}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--import-mode=importlib",
               "--continue-on-collection-errors", "--ptycho-ci-history", str(history), *args]
    proc = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"pytest exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return history


def classification(history: str | os.PathLike) -> dict[str, str]:
    """Node id -> id of the trigger that classifies its failure, for the latest run of ``history``."""
    from ptycho_ci.evaluate import evaluate
    from ptycho_ci.history import HistoryStore

    with HistoryStore(history, create=False) as store:
        return {b.subject: b.trigger.id for b in evaluate(store) if b.result is not None}


def latest_results(history: str | os.PathLike) -> dict:
    """Node id -> :class:`~ptycho_ci.records.TestResult` of the latest run of ``history``."""
    from ptycho_ci.history import HistoryStore

    with HistoryStore(history, create=False) as store:
        return {r.nodeid: r for r in store.results(store.latest_run().id)}
