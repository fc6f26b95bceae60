"""Hook specifications of ptycho-ci's own plugin system (pluggy project ``"ptycho_ci"``).

Projects add escalation triggers without editing this package, in either of two ways:

* an installed distribution exposes a module under the entry-point group
  ``ptycho_ci.triggers`` (``[project.entry-points."ptycho_ci.triggers"] myproj = "myproj.ci"``);
* a ``conftest.py`` of the test suite defines the hook (picked up by the pytest plugin when
  history recording is on; the definitions are stored with the run so ``ptycho-ci check``
  sees them too).

Either way the module implements::

    from ptycho_ci import hookimpl

    @hookimpl
    def ptycho_ci_register_triggers():
        return [{"id": "PROJ-001", "title": "...", "severity": "high", "owner": "me", "sla": "1d",
                 "condition": {"kind": "failure", "exception": ["KeyError"]}}]
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "ptycho_ci"
ENTRY_POINT_GROUP = "ptycho_ci.triggers"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ptycho_ci_register_triggers() -> Any:
    """Return extra triggers and groups.

    Any of: a list of trigger tables (dicts shaped like a ``[[trigger]]`` table of
    ``triggers.toml``), a dict ``{"trigger": [...], "groups": {...}}``, or a path to a
    TOML file in the same format. Results of all plugins are merged; an id that already
    exists is an error unless the table sets ``override = true``.
    """
