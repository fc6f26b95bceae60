"""pytest plugin (entry point ``pytest11: ptycho_ci``): record test runs into a history store.

Off unless enabled, so it costs nothing on ordinary runs: without
``--ptycho-ci-history PATH`` (or ``$PTYCHO_CI_HISTORY``) this module only registers its
options and the tier markers, imports nothing beyond the standard library and opens no
database. When enabled, :class:`ptycho_ci.recorder.Recorder` is registered and writes one
run (every test's outcome, duration, markers, backend and failure, plus the environment)
at the end of the session.

Options::

    --ptycho-ci-history PATH    SQLite history file to append this run to
    --ptycho-ci-backend ID      backend of tests that carry no pytorch/tensorflow marker
    --ptycho-ci-label TEXT      label of the run (e.g. the tier: ci-pr, ci-nightly)
    --ptycho-ci-artifacts DIR   output directory whose artifacts are checked at the end (repeatable)
"""

from __future__ import annotations

import os

ENV_HISTORY = "PTYCHO_CI_HISTORY"
ENV_BACKEND = "PTYCHO_CI_BACKEND"
ENV_LABEL = "PTYCHO_CI_LABEL"

MARKERS = (
    "ci_pr: per-PR tier (integration + backend selection, runtime budget 2 minutes)",
    "ci_nightly: nightly tier (parity suite, history + report)",
    "ci_weekly: weekly tier (everything)",
    "backend_selection: tests of backend discovery and selection (FAIL-002)",
    "pytorch: test exercises the PyTorch backend",
    "tensorflow: test exercises the TensorFlow backend",
)


def pytest_addoption(parser):
    """Register the ``--ptycho-ci-*`` options (the only work done when the plugin is off)."""
    group = parser.getgroup("ptycho-ci", "ptycho-ci run history")
    group.addoption(
        "--ptycho-ci-history", metavar="PATH", default=None,
        help=f"append this run to the SQLite run history at PATH (or set ${ENV_HISTORY}); off by default",
    )
    group.addoption(
        "--ptycho-ci-backend", metavar="ID", default=None,
        help="backend id recorded for tests without a pytorch/tensorflow marker",
    )
    group.addoption("--ptycho-ci-label", metavar="TEXT", default=None, help="label of the recorded run (tier)")
    group.addoption(
        "--ptycho-ci-artifacts", metavar="DIR", action="append", default=[],
        help="check bundles, checkpoints and PNGs under DIR at the end of the run and record the findings",
    )


def history_path(config) -> str | None:
    """The history file of this session, or None when recording is off."""
    path = config.getoption("ptycho_ci_history", default=None) or os.environ.get(ENV_HISTORY, "").strip()
    return path or None


def pytest_configure(config):
    """Declare the tier markers; register the recorder only when a history path is given."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    path = history_path(config)
    if path is None or hasattr(config, "workerinput"):
        return
    from ptycho_ci.recorder import Recorder

    config.pluginmanager.register(Recorder(config, path), "ptycho-ci-recorder")
