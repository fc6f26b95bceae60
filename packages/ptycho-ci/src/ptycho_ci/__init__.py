"""ptycho-ci: run history, runtime guardrails, escalation triggers, reports and the
backend conformance suite for ptycho's test suite."""

__version__ = "0.1.0"
