"""Capture of the environment a test run ran in (stored with every run).

Framework versions come from package metadata (:mod:`importlib.metadata`): capturing
them never imports torch or TensorFlow.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

DISTRIBUTIONS = (
    "torch", "lightning", "tensorflow", "tensorflow-cpu", "keras", "numpy", "scipy", "pytest",
    "ptycho-core", "ptycho-data", "ptycho-torch", "ptycho-tf", "ptycho-ci",
)
"""Distributions whose installed versions are recorded (absent ones are left out)."""

CI_VARIABLES = ("CI", "GITHUB_RUN_ID", "GITHUB_SHA", "GITHUB_REF", "CI_PIPELINE_ID", "PTYCHO_BACKEND")
"""Environment variables copied into the capture when set."""


def package_versions(names: tuple[str, ...] = DISTRIBUTIONS) -> dict[str, str]:
    """Installed versions of ``names`` (:func:`ptycho_core.provenance.installed_versions`)."""
    from ptycho_core.provenance import installed_versions

    return installed_versions(names)


def cpu_count() -> dict[str, int | None]:
    """Logical CPUs of the machine and CPUs this process may run on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"logical": os.cpu_count(), "usable": usable}


def git_commit(directory: str | os.PathLike | None = None) -> dict[str, object]:
    """``{'commit': sha, 'dirty': bool}`` of the git checkout at ``directory``.

    Falls back to ``$GITHUB_SHA`` / ``$CI_COMMIT_SHA``; ``commit`` is None when neither works.
    """
    cwd = Path(directory) if directory is not None else Path.cwd()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True, timeout=5)
            return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    env_sha = os.environ.get("GITHUB_SHA") or os.environ.get("CI_COMMIT_SHA")
    return {"commit": env_sha or None, "dirty": None}


def capture(directory: str | os.PathLike | None = None) -> dict:
    """A JSON-serialisable description of the interpreter, machine, packages and checkout."""
    git = git_commit(directory)
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu": cpu_count(),
        "packages": package_versions(),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "ci_env": {k: os.environ[k] for k in CI_VARIABLES if os.environ.get(k)},
    }
