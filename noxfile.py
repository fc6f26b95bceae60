"""nox sessions: one per package, one per backend, plus cross-package suites.

Every session installs through ``constraints/ci.txt`` and only the packages it tests
(and what they declare), so an undeclared import fails. Run ``nox --list`` to see them;
``nox`` alone runs the default set that CI runs (``bash .ci/run``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = [
    "lint", "core", "data", "app", "ci", "pytorch", "tensorflow", "integration", "parity", "template", "docs",
]

PYTHON = None  # the interpreter running nox
CONSTRAINTS = ("-c", "constraints/ci.txt")
CORE = ("-e", "packages/ptycho-core")
DATA = ("-e", "packages/ptycho-data")
APP = ("-e", "packages/ptycho")
CI = ("-e", "packages/ptycho-ci")
TORCH = ("-e", "packages/ptycho-torch")
TF = ("-e", "packages/ptycho-tf")
TEMPLATE = ("-e", "examples/ptycho-backend-template")
# The bad-input corpus runs in every package/backend session; cases needing an uninstalled package skip.
CORPUS = "tests/corpus"
TEST_TOOLS = ("pytest", "hypothesis")
# pytest exits 5 when it collected no test; that is not a failure of the suite.
PYTEST_OK = [0, 5]


def _install(session: nox.Session, *packages: str) -> None:
    session.install(*CONSTRAINTS, *TEST_TOOLS, *packages)


def _pytest(session: nox.Session, *paths: str, extra: tuple[str, ...] = ()) -> None:
    env = {"PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    session.run("pytest", *paths, *extra, *session.posargs, env=env, success_codes=PYTEST_OK)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole repository and the import-linter contracts: the layers ptycho -> ptycho_data ->
    ptycho_core, each backend -> ptycho_core only, and no framework in the kernel, the data layer or the app."""
    # The backends and the template without their frameworks (--no-deps): import-linter reads their imports,
    # it does not run them, so the lint environment stays small.
    session.install(*CONSTRAINTS, "ruff", "import-linter", *CORE, *DATA, *APP)
    session.install("--no-deps", *TORCH, *TF, *CI, *TEMPLATE)
    session.run("ruff", "check", ".")
    session.run("lint-imports")
    session.run("python", "docs/scripts/check_design_graph.py")


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """ptycho-core alone: no TensorFlow, no torch, no ptycho-data in the environment."""
    _install(session, *CORE)
    session.run(
        "python", "-c",
        "import importlib.util as u, sys; bad=[m for m in ('torch','tensorflow','keras') if u.find_spec(m)]; "
        "sys.exit(f'framework installed in core session: {bad}' if bad else 0)",
    )
    _pytest(session, "packages/ptycho-core/tests", CORPUS)


@nox.session(python=PYTHON)
def data(session: nox.Session) -> None:
    """ptycho-data with ptycho-core (NumPy/SciPy/h5py/scikit-image only)."""
    _install(session, *CORE, *DATA)
    _pytest(session, "packages/ptycho-data/tests", CORPUS)


@nox.session(python=PYTHON)
def app(session: nox.Session) -> None:
    """The ptycho application (workflow commands, plots, refinement) with ptycho-core and ptycho-data, no backend."""
    _install(session, *CORE, *DATA, *APP)
    _pytest(session, "packages/ptycho/tests", CORPUS)


@nox.session(python=PYTHON)
def ci(session: nox.Session) -> None:
    """ptycho-ci: history store, guardrails, triggers, reports, pytest plugin and conformance suite."""
    _install(session, *CORE, *DATA, *CI)
    _pytest(session, "packages/ptycho-ci/tests")


@nox.session(python=PYTHON)
def pytorch(session: nox.Session) -> None:
    """The PyTorch + Lightning backend (torch==2.13.0 CPU wheel via the constraints)."""
    _install(session, *CORE, *DATA, *APP, *CI, *TORCH)
    # also the ptycho-ci checks of real torch checkpoints (skipped in the `ci` session, which has no torch)
    _pytest(session, "packages/ptycho-torch/tests", "packages/ptycho-ci/tests/test_ci_artifacts.py", CORPUS)


@nox.session(python=PYTHON)
def tensorflow(session: nox.Session) -> None:
    """The TensorFlow / Keras 3 backend."""
    _install(session, *CORE, *DATA, *APP, *CI, *TF)
    _pytest(session, "packages/ptycho-tf/tests", CORPUS)


@nox.session(python=PYTHON)
def template(session: nox.Session) -> None:
    """The third-party backend template (numpy-template): conformance suite and its own tests."""
    _install(session, *CORE, *DATA, *APP, *CI, *TEMPLATE)
    _pytest(session, "examples/ptycho-backend-template/tests")


@nox.session(python=PYTHON)
def ptychodus(session: nox.Session) -> None:
    """The Ptychodus adapter (ptycho[ptychodus]) against ptychodus==1.7.0 with the pytorch backend.

    Not in the default set: ptychodus pulls ~95 extra packages and the test trains a small model.
    """
    _install(session, *CORE, *DATA, "-e", "packages/ptycho[ptychodus]", *CI, *TORCH)
    _pytest(session, "packages/ptycho/tests/test_ptychodus_adapter.py")




# -- Cross-package sessions ---------------------------------------------------------------------------
# integration, parity, docs, bench and the ci-* tiers all need every package and both frameworks. They
# share one virtualenv (.nox/_all) instead of five identical ~2.7 GB copies: the same packages, so sharing
# changes nothing the tests see, and a full `nox` run needs about 8 GB of disk instead of 14 GB.
# These sessions use nox's "none" backend and run the shared interpreter explicitly.
SHARED_ENV = Path(".nox") / "_all"
ALL_PACKAGES = (*CORE, *DATA, *APP, *CI, *TORCH, *TF, *TEMPLATE)  # the template runs docs/writing-a-backend.md


def _install_key(args: tuple[str, ...]) -> str:
    """What decides the shared environment's contents: the pip arguments, the constraints and every package's
    pyproject.toml (dependencies, entry points). The packages are editable, so their sources are not in it."""
    digest = hashlib.sha256("\0".join(args).encode())
    packages = [a.split("[")[0] for a in args if a.startswith(("packages/", "examples/"))]
    files = [CONSTRAINTS[1], *(f"{package}/pyproject.toml" for package in packages)]
    for name in files:
        digest.update(name.encode() + b"\0" + Path(name).read_bytes())
    return digest.hexdigest()


def _shared(session: nox.Session) -> dict[str, str]:
    """Create (once) and update the shared environment; returns the env that puts it first on PATH.

    The install runs again only when :func:`_install_key` changed since the last one in this environment, so the
    sessions after the first of a ``nox`` run do not each spend ~40 s re-installing the same editable packages.
    """
    bin_dir = SHARED_ENV.resolve() / "bin"
    if not (bin_dir / "python").exists():
        session.run(sys.executable, "-m", "virtualenv", "-q", str(SHARED_ENV), external=True)
    env = {"VIRTUAL_ENV": str(SHARED_ENV.resolve()), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    args = (*CONSTRAINTS, *TEST_TOOLS, "mkdocs", *ALL_PACKAGES)
    stamp, key = SHARED_ENV / ".ptycho-installed", _install_key(args)
    if stamp.exists() and stamp.read_text() == key:
        session.log(f"{SHARED_ENV}: packages up to date ({stamp.name} matches); not re-installing")
        return env
    stamp.unlink(missing_ok=True)  # a failed install below must not leave an old stamp that matches later
    session.run(str(bin_dir / "python"), "-m", "pip", "install", "-q", *args, external=True, env=env)
    stamp.write_text(key)
    return env


def _shared_run(session: nox.Session, env: dict[str, str], *args: str, success_codes: list[int] | None = None) -> None:
    """``python ARGS`` with the shared environment's interpreter."""
    run_env = {**env, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    session.run(str(Path(env["VIRTUAL_ENV"]) / "bin" / "python"), *args, external=True, env=run_env,
                success_codes=success_codes or [0])


def _shared_pytest(session: nox.Session, *paths: str) -> None:
    env = _shared(session)
    _shared_run(session, env, "-m", "pytest", *paths, *session.posargs, success_codes=PYTEST_OK)


@nox.session(python=PYTHON, venv_backend="none")
def integration(session: nox.Session) -> None:
    """Workflow tests and the CLI cycle train -> save -> load -> infer -> stitch on the committed fixture."""
    _shared_pytest(session, "tests/workflow", "tests/integration")


@nox.session(python=PYTHON, venv_backend="none")
def parity(session: nox.Session) -> None:
    """Cross-backend parity with converted weights (each backend in its own subprocess)."""
    _shared_pytest(session, "tests/parity")


@nox.session(python=PYTHON, venv_backend="none")
def docs(session: nox.Session) -> None:
    """User docs: every code block runs; the references equal their generators' output; mkdocs build --strict."""
    _shared_pytest(session, "tests/docs")


@nox.session(python=PYTHON, venv_backend="none")
def bench(session: nox.Session) -> None:
    """Performance table: benchmarks/run.py --quick (ratios to same-process bounds); not run by default."""
    _shared_run(session, _shared(session), "benchmarks/run.py", "--quick", "--json", "bench-results.json",
                *session.posargs)



# -- CI tiers (ptycho-ci): each records its run into the history and is judged by its triggers --------
HISTORY = os.environ.get("PTYCHO_CI_HISTORY", ".ci-history/history.sqlite")
REPORT = "ci-report"
ALL_TESTS = ("packages/ptycho-core/tests", "packages/ptycho-data/tests", "packages/ptycho/tests",
             "packages/ptycho-ci/tests",
             "packages/ptycho-torch/tests", "packages/ptycho-tf/tests", "tests")


def _record(session: nox.Session, env: dict[str, str], label: str, *args: str, fatal: bool) -> None:
    """pytest with the ptycho-ci recorder; ``fatal=False`` records failures and lets the triggers judge."""
    Path(HISTORY).parent.mkdir(parents=True, exist_ok=True)
    _shared_run(session, env, "-m", "pytest", *args, "--ptycho-ci-history", HISTORY, "--ptycho-ci-label", label,
                *session.posargs, success_codes=PYTEST_OK if fatal else [0, 1, 5])


def _ptycho_ci(session: nox.Session, env: dict[str, str], *args: str) -> None:
    _shared_run(session, env, "-m", "ptycho_ci.cli", *args)


def _judge(session: nox.Session, env: dict[str, str], label: str) -> None:
    _ptycho_ci(session, env, "report", "--history", HISTORY, "--label", label, "--output", REPORT)
    _ptycho_ci(session, env, "escalate", "--history", HISTORY, "--label", label, "--output", f"{REPORT}/escalations")
    _ptycho_ci(session, env, "check", "--history", HISTORY, "--label", label)


@nox.session(name="ci-pr", python=PYTHON, venv_backend="none")
def ci_pr(session: nox.Session) -> None:
    """Per-PR tier: integration + backend-selection tests, recorded; fails on a high/critical breach or budget."""
    env = _shared(session)
    _record(session, env, "ci-pr", "-m", "ci_pr or backend_selection", "tests", "packages/ptycho-core/tests",
            fatal=True)
    _ptycho_ci(session, env, "check", "--history", HISTORY, "--label", "ci-pr", "--budgets")


@nox.session(name="ci-nightly", python=PYTHON, venv_backend="none")
def ci_nightly(session: nox.Session) -> None:
    """Nightly tier: the parity suite recorded (failures become breaches), then report, escalations, check."""
    env = _shared(session)
    _record(session, env, "ci-nightly", "tests/parity", fatal=False)
    _judge(session, env, "ci-nightly")


@nox.session(name="ci-weekly", python=PYTHON, venv_backend="none")
def ci_weekly(session: nox.Session) -> None:
    """Weekly tier: every test of every package and tests/, recorded, then report, escalations, check."""
    env = _shared(session)
    _record(session, env, "ci-weekly", *ALL_TESTS, fatal=False)
    _judge(session, env, "ci-weekly")
