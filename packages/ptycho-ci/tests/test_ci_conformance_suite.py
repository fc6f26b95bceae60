"""The conformance suite itself: it catches contract violations, is collected only in subclasses, can opt out."""

from __future__ import annotations

from pathlib import Path

FAKE = (Path(__file__).parent / "ci_fake_backend.py").read_text()

BROKEN = """
from ci_fake_backend import BrokenFakeBackend
from ptycho_ci.conformance import BackendConformance


class TestBroken(BackendConformance):
    backend_id = "brokenfake"
    plugin = BrokenFakeBackend()
"""


def _outcomes(result) -> dict[str, str]:
    """test name -> PASSED/FAILED/SKIPPED/ERROR, from the ``-v`` progress lines."""
    out = {}
    for line in result.stdout.lines:
        parts = line.split()
        if len(parts) >= 2 and "::" in parts[0] and parts[1] in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
            out[parts[0].split("::")[-1]] = parts[1]
    return out


def test_suite_catches_a_broken_backend(pytester):
    pytester.makepyfile(ci_fake_backend=FAKE, test_broken=BROKEN)
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    outcomes = _outcomes(result)
    failing = {name for name, word in outcomes.items() if word == "FAILED"}
    assert failing == {"test_infer_patches_and_positions", "test_reassemble_matches_reference",
                       "test_reassemble_marker_orientation"}
    assert outcomes["test_bundle_round_trip[directory]"] == "PASSED"
    assert outcomes["test_forward_matches_reference_physics"] == "PASSED"
    result.stdout.fnmatch_lines(["*positions != group centroids*"])


def test_base_class_is_not_collected(pytester):
    pytester.makepyfile(test_nothing="from ptycho_ci.conformance import BackendConformance\n"
                                     "TestAlias = BackendConformance\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 5  # no tests collected


def test_opt_out_and_missing_backend_id(pytester):
    pytester.makepyfile(ci_fake_backend=FAKE, test_partial="""
from ci_fake_backend import FakeBackend
from ptycho_ci.conformance import BackendConformance


class TestPartial(BackendConformance):
    backend_id = "fakebackend"
    plugin = FakeBackend()
    skip = frozenset({"train", "bundle"})
    gridsize = 1


class TestNoId(BackendConformance):
    pass
""")
    result = pytester.runpytest_subprocess("-v", "-rA", "-p", "no:cacheprovider",
                                           "-k", "TestPartial or test_backend_info")
    outcomes = _outcomes(result)
    assert outcomes["test_train_one_epoch"] == "SKIPPED"
    assert outcomes["test_bundle_round_trip[zip]"] == "SKIPPED"
    assert outcomes["test_infer_patches_and_positions"] == "PASSED"
    result.stdout.fnmatch_lines(["*TestNoId: set the class attribute backend_id*", "*opts out of the 'train' check*"])
