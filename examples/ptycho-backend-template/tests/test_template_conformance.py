"""The ptycho backend conformance suite run against the installed ``numpy-template`` backend.

The backend is found through its ``ptycho.backends`` entry point, so this also checks the
packaging: install the template (``pip install -e examples/ptycho-backend-template``) first.
"""

from __future__ import annotations

from ptycho_ci.conformance import BackendConformance
from ptycho_core import backends

BACKEND_ID = "numpy-template"


class TestNumpyTemplateConformance(BackendConformance):
    backend_id = BACKEND_ID
    # The model has no CNN settings to shrink; n_filters_scale & co. are accepted and do not matter.
    model_overrides = {}
    # No check is skipped: the template exports the canonical physics weights ``intensity_scale``,
    # ``probe.real`` and ``probe.imag`` next to its own parameters, so even ``canonical_weights`` applies.
    # A backend whose model holds no probe would list "canonical_weights" here and say why.
    skip = frozenset()


def test_entry_point_lists_the_template():
    """``ptycho backends`` reads the entry point from metadata: id, distribution and version."""
    entries = {e.id: e for e in backends.available()}
    entry = entries[BACKEND_ID]
    assert entry.installed
    assert entry.distribution == "ptycho-backend-template"
    assert entry.value == "ptycho_backend_template.plugin:TemplateBackend"
    assert entry.version


def test_the_class_implements_every_operation():
    """Each operation hook gets a generated implementation; none is left to the core's fallbacks."""
    from ptycho_backend_template.plugin import TemplateBackend
    from ptycho_core.backend_base import OPERATIONS

    plugin = TemplateBackend.as_plugin()
    assert TemplateBackend.implemented_operations() == OPERATIONS
    assert all(callable(getattr(plugin, f"ptycho_{op}", None)) for op in OPERATIONS)


def test_cli_backends_lists_the_template(capsys):
    from ptycho_core.cli import main

    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    listed = out.split("Available to install:")[0]
    assert any(line.split()[:2] == [BACKEND_ID, "ptycho-backend-template"] for line in listed.splitlines()), out
