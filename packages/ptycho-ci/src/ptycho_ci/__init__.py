"""ptycho-ci: run history, runtime guardrails, escalation triggers, reports and the
backend conformance suite for ptycho's test suite.

The pytest plugin (``--ptycho-ci-history PATH``) records runs into a SQLite history;
``ptycho-ci check`` evaluates the latest run against the triggers of
``ptycho_ci/data/triggers.toml`` (plus those plugins register through
:data:`hookimpl`), ``ptycho-ci report`` writes a Markdown summary with runtime-trend plots.
Importing this package is cheap: it pulls in neither NumPy nor a framework.
"""

from ptycho_ci.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
