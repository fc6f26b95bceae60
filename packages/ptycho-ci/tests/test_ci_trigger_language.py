"""The trigger language: parsing, errors that name the key, merging, plugins."""

from __future__ import annotations

import pytest
from ci_helpers import failed, passed

from ptycho_ci import hookimpl
from ptycho_ci.conditions import FailureCondition, RuntimeCondition, parse_condition
from ptycho_ci.errors import TriggerSpecError
from ptycho_ci.records import ArtifactFinding
from ptycho_ci.triggers import TriggerSet, load_triggers, parse_sla, plugin_manager

PROJ = {"id": "PROJ-001", "title": "KeyError in the data package", "severity": "medium", "owner": "data-team",
        "sla": "2d", "priority": 95,
        "condition": {"kind": "failure", "exception": ["KeyError"], "nodeid": ["packages/ptycho-data/*"]}}


def test_runtime_condition_compiles():
    cond = parse_condition({"kind": "runtime", "selector": "marker:slow", "aggregate": "each", "max_seconds": 10,
                            "baseline_multiple": 2.0, "consecutive": 2}, "X")
    assert isinstance(cond, RuntimeCondition)
    assert str(cond.selector) == "marker:slow" and cond.rule.consecutive == 2
    assert cond.rule.threshold() == 10 and cond.rule.threshold(3.0) == 6.0


def test_failure_condition_matches_all_keys():
    cond = parse_condition({"kind": "failure", "exception": "KeyError", "message": ["missing (key|field)"],
                            "markers": ["slow"], "backend": ["pytorch"]}, "X")
    assert isinstance(cond, FailureCondition) and cond.specificity == 4
    hit = failed("a.py::t", "KeyError", "Missing KEY 'x'", markers=("slow",), backend="pytorch")
    assert cond.matches(hit)
    assert not cond.matches(failed("a.py::t", "KeyError", "Missing KEY 'x'", markers=("slow",), backend="tensorflow"))
    assert not cond.matches(failed("a.py::t", "KeyError", "other", markers=("slow",), backend="pytorch"))
    assert not cond.matches(passed("a.py::t", markers=("slow",), backend="pytorch"))


def test_frame_and_any_match_where_the_error_came_from():
    cond = parse_condition({"kind": "failure", "exception": "TypeError", "any": [
        {"message": ["checkpoint"]}, {"frame": ["load_from_checkpoint"], "nodeid": ["packages/ptycho-torch/*"]}]}, "X")
    assert cond.specificity == 2 and len(cond.alternatives) == 2
    frames = ("packages/ptycho-torch/tests/test_io.py:12 in test_load",
              "/venv/lightning/pytorch/core/module.py:1590 in LightningModule.load_from_checkpoint",
              "/venv/lightning/pytorch/core/saving.py:186 in _load_state")
    text = "PtychoLightningModule.__init__() missing 1 required positional argument: 'model_config'"
    assert cond.matches(failed("packages/ptycho-torch/tests/test_io.py::test_load", "TypeError", text, frames=frames))
    assert cond.matches(failed("x.py::t", "TypeError", "bad checkpoint"))  # the other alternative
    assert not cond.matches(failed("x.py::t", "TypeError", text, frames=frames))  # frames, but not that node id
    assert not cond.matches(failed("packages/ptycho-torch/tests/test_io.py::test_load", "TypeError", text))
    assert not cond.matches(failed("packages/ptycho-torch/tests/test_io.py::test_load", "ValueError", text,
                                   frames=frames))


@pytest.mark.parametrize(("table", "needle"), [
    ({"kind": "failure", "any": {"message": ["x"]}}, "any: expected a list of tables"),
    ({"kind": "failure", "any": [{"mesage": ["x"]}]}, "did you mean 'message'"),
    ({"kind": "failure", "any": [{"outcome": ["failed"]}]}, "unknown key 'outcome'"),
    ({"kind": "failure", "frame": ["(unclosed"]}, "frame: '(unclosed' is not a valid regular expression"),
    ({"kind": "failure", "exceptoin": ["TypeError"]}, "did you mean 'exception'"),
    ({"kind": "failure", "message": ["(unclosed"]}, "not a valid regular expression"),
    ({"kind": "failure"}, "give at least one of"),
    ({"kind": "failure", "fallback": True, "exception": ["X"]}, "fallback condition takes no match keys"),
    ({"kind": "runtime", "selector": "group:x"}, "exactly one of 'max_seconds' or 'min_seconds'"),
    ({"kind": "runtime", "selector": "nodes:x", "max_seconds": 1}, "selector"),
    ({"kind": "runtime", "max_seconds": 1, "consecutive": 1.5}, "consecutive: expected an integer"),
    ({"kind": "artifact", "checks": ["png_to_small"]}, "did you mean 'png_too_small'"),
    ({"kind": "timing"}, "condition.kind: expected one of"),
])
def test_condition_errors_name_the_key(table, needle):
    with pytest.raises(TriggerSpecError, match="trigger T-1: condition") as err:
        parse_condition(table, "T-1")
    assert needle in str(err.value)


@pytest.mark.parametrize(("text", "hours"), [("30m", 0.5), ("4h", 4.0), ("2d", 48.0), ("1w", 168.0), (6, 6.0)])
def test_sla(text, hours):
    assert parse_sla(text) == hours


@pytest.mark.parametrize("text", ["soon", "0h", "-1d", "", True])
def test_bad_sla(text):
    with pytest.raises(TriggerSpecError, match="sla"):
        parse_sla(text)


def test_trigger_table_errors(tmp_path):
    bad = dict(PROJ, severity="urgent")
    with pytest.raises(TriggerSpecError, match="trigger PROJ-001.severity: expected one of critical"):
        TriggerSet().add([bad], "test")
    with pytest.raises(TriggerSpecError, match="unknown key 'onwer'"):
        TriggerSet().add([dict(PROJ, onwer="x")], "test")
    path = tmp_path / "t.toml"
    path.write_text("[[trigger]]\nid = 'A'\ntitle = ")
    with pytest.raises(TriggerSpecError, match="not valid TOML"):
        TriggerSet().add_file(path)


def test_duplicate_id_needs_override():
    with pytest.raises(TriggerSpecError, match="FAIL-003 is already defined by ptycho_ci/data/triggers.toml"):
        load_triggers(extra=[([dict(PROJ, id="FAIL-003")], "project")])
    ts = load_triggers(extra=[([dict(PROJ, id="FAIL-003", override=True)], "project")])
    assert ts.triggers["FAIL-003"].owner == "data-team" and ts.triggers["FAIL-003"].source == "project"


def test_unknown_group_is_reported():
    table = dict(PROJ, condition={"kind": "failure", "group": ["integraton"]})
    with pytest.raises(TriggerSpecError, match="unknown group 'integraton' \\(did you mean 'integration'"):
        load_triggers(extra=[([table], "project")])


def test_file_with_groups_and_triggers(tmp_path):
    path = tmp_path / "extra.toml"
    path.write_text(
        "[groups.io]\nnodeid = ['*test_npz*']\n\n"
        "[[trigger]]\nid = 'IO-001'\ntitle = 'I/O broke'\nseverity = 'high'\nowner = 'io'\nsla = '1d'\n"
        "priority = 99\ncondition = { kind = 'failure', group = ['io'] }\n"
    )
    ts = load_triggers([path])
    assert ts.classify(failed("packages/ptycho-data/tests/test_npz.py::test_x", "OSError", "disk")).id == "IO-001"
    assert ts.classify(failed("packages/ptycho-data/tests/test_h5.py::test_x", "OSError", "disk")).id == "FAIL-001"


def test_artifact_options_take_the_strictest_trigger():
    table = dict(PROJ, id="ART-9", condition={"kind": "artifact", "checks": ["png_missing"], "min_bytes": 4096,
                                              "expect": ["loss.png"]})
    ts = load_triggers(extra=[([table], "project")])
    opts = ts.artifact_options()
    assert opts["min_png_bytes"] == 4096
    assert set(opts["expect_png"]) == {"amplitude.png", "phase.png", "loss.png"}
    finding = ArtifactFinding("out/loss.png", "png_missing", "no loss.png")
    assert ts.triggers["ARTIF-002"].condition.matches(finding)


class ProjectTriggers:
    @hookimpl
    def ptycho_ci_register_triggers(self):
        return [PROJ]


class FileTriggers:
    def __init__(self, path):
        self.path = path

    @hookimpl
    def ptycho_ci_register_triggers(self):
        return self.path


def test_plugin_hook_adds_triggers(tmp_path):
    pm = plugin_manager(load_entry_points=False)
    pm.register(ProjectTriggers(), name="myproject")
    path = tmp_path / "more.toml"
    path.write_text("[[trigger]]\nid = 'FILE-1'\ntitle = 't'\nseverity = 'warning'\nowner = 'o'\nsla = '1w'\n"
                    "condition = { kind = 'failure', message = ['flaky'] }\n")
    pm.register(FileTriggers(path), name="fileplugin")
    ts = load_triggers(plugins=pm)
    assert ts.triggers["PROJ-001"].source == "plugin myproject"
    assert ts.triggers["FILE-1"].source == "plugin fileplugin"
    assert ts.classify(failed("packages/ptycho-data/tests/test_x.py::t", "KeyError", "x")).id == "PROJ-001"
    assert ts.classify(failed("packages/ptycho-core/tests/test_x.py::t", "KeyError", "x")).id == "FAIL-001"


def test_entry_point_group_is_loaded(tmp_path, monkeypatch):
    """A distribution exposing ``ptycho_ci.triggers`` is picked up without editing ptycho-ci."""
    site = tmp_path / "site"
    info = site / "proj_ci-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: proj-ci\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ptycho_ci.triggers]\nproj = proj_ci_triggers\n")
    (site / "proj_ci_triggers.py").write_text(
        "from ptycho_ci import hookimpl\n\n@hookimpl\ndef ptycho_ci_register_triggers():\n"
        f"    return [{PROJ!r}]\n"
    )
    monkeypatch.syspath_prepend(str(site))
    ts = load_triggers()
    assert ts.triggers["PROJ-001"].source == "plugin proj"


class Misspelled:
    @hookimpl
    def ptycho_ci_register_trigger(self):
        return []


def test_misspelled_hook_is_an_error():
    pm = plugin_manager(load_entry_points=False)
    pm.register(Misspelled(), name="typo")
    with pytest.raises(TriggerSpecError, match="unknown hook .*ptycho_ci_register_trigger"):
        load_triggers(plugins=pm)
