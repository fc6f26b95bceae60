"""The trigger table classifies failures raised the way real code raises them.

A nested pytest run with recording on (:func:`ptycho_ci.trial.run_recorded_suite`) holds test
files laid out like this repository (``packages/ptycho-torch/tests``, ``tests/parity``, ...)
whose tests fail through the real import machinery and real NumPy errors; the recorded run is
then classified by the shipped triggers, which see the exception, its message, its traceback
frames and the node id.
The checkpoint case (FAIL-003 through Lightning's ``load_from_checkpoint``) needs torch and
lives in ``packages/ptycho-torch/tests/test_torch_ci_classification.py``.
"""

from __future__ import annotations

import pytest

from ptycho_ci.trial import classification, latest_results, run_recorded_suite

FILES = {
    # a backend test whose framework is missing from the environment (POLICY-001)
    "packages/ptycho-torch/tests/test_policy_torch.py": """
        import sys

        def test_model_builds(monkeypatch):
            monkeypatch.setitem(sys.modules, "torch", None)  # torch not installed
            import torch  # noqa: F401
        """,
    # a backend test file importing its framework at the top: a collection error, no test item (POLICY-001)
    "packages/ptycho-tf/tests/test_tf_collect.py": """
        import sys

        sys.modules["tensorflow"] = None  # tensorflow not installed
        import tensorflow  # noqa: E402, F401

        def test_never_collected():
            pass
        """,
    # the same import failing in a backend's own module, called from a test outside the backend (POLICY-001)
    "packages/ptycho-tf/src/ptycho_tf_fake/model.py": """
        def build():
            import keras  # noqa: F401
        """,
    "tests/integration/test_policy_frames.py": """
        import sys
        sys.path.insert(0, "packages/ptycho-tf/src")
        import importlib

        def test_cli_cycle(monkeypatch):
            monkeypatch.setitem(sys.modules, "keras", None)
            importlib.import_module("ptycho_tf_fake.model").build()
        """,
    # core tests must not import frameworks: that is an ordinary failure, not the backend policy (FAIL-001)
    "packages/ptycho-core/tests/test_core_torch.py": """
        import sys

        def test_core_without_framework(monkeypatch):
            monkeypatch.setitem(sys.modules, "torch", None)
            import torch  # noqa: F401
        """,
    # a decoder concatenating a skip connection of the wrong size, in a parity test (PARITY-001)
    "tests/parity/test_decoder_parity.py": """
        import numpy as np

        def decoder(features, skip):
            return np.concatenate([features, skip], axis=-1)

        def test_decoders_agree():
            decoder(np.zeros((1, 8, 8, 4)), np.zeros((1, 16, 16, 4)))
        """,
    # the same mismatch outside the parity suite is a configuration/shape problem (CONFIG-001)
    "packages/ptycho-core/tests/test_core_shapes.py": """
        import numpy as np

        def test_groups_stack():
            np.concatenate([np.zeros((2, 64, 64, 4)), np.zeros((2, 64, 64, 1))], axis=0)

        def test_scale_broadcast():
            np.ones((4, 64, 64)) * np.ones((4, 74, 74))
        """,
    # diffraction stored (N, N, n) and read as (n, N, N): the missing transpose (FORMAT-001)
    "packages/ptycho-data/tests/test_layout.py": """
        import numpy as np

        def test_patterns_by_index():
            diffraction = np.zeros((64, 64, 100), dtype=np.float32)  # (N, N, n) legacy layout
            sums = [float(diffraction[i].sum()) for i in range(100)]
        """,
    # a TypeError with no checkpoint in sight: the fallback (FAIL-001)
    "packages/ptycho-data/tests/test_plain_typeerror.py": """
        def test_sum():
            sum(["a", "b"])
        """,
}

EXPECTED = {
    "packages/ptycho-tf/tests/test_tf_collect.py": "POLICY-001",
    "packages/ptycho-torch/tests/test_policy_torch.py::test_model_builds": "POLICY-001",
    "tests/integration/test_policy_frames.py::test_cli_cycle": "POLICY-001",
    "packages/ptycho-core/tests/test_core_torch.py::test_core_without_framework": "FAIL-001",
    "tests/parity/test_decoder_parity.py::test_decoders_agree": "PARITY-001",
    "packages/ptycho-core/tests/test_core_shapes.py::test_groups_stack": "CONFIG-001",
    "packages/ptycho-core/tests/test_core_shapes.py::test_scale_broadcast": "CONFIG-001",
    "packages/ptycho-data/tests/test_layout.py::test_patterns_by_index": "FORMAT-001",
    "packages/ptycho-data/tests/test_plain_typeerror.py::test_sum": "FAIL-001",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The history of the suite of :data:`FILES`, run with recording on."""
    return run_recorded_suite(FILES, tmp_path_factory.mktemp("repo"))


def test_failures_are_classified_like_the_trigger_table(recorded):
    results = latest_results(recorded)
    assert set(results) == set(EXPECTED), sorted(results)
    assert classification(recorded) == EXPECTED


def test_frames_are_recorded_innermost_last(recorded):
    results = latest_results(recorded)
    frames = results["tests/integration/test_policy_frames.py::test_cli_cycle"].frames
    assert len(frames) == 2  # from the test function on: pytest's own frames are left out
    assert frames[-2].startswith("tests/integration/test_policy_frames.py:")
    assert frames[-2].endswith(" in test_cli_cycle")
    assert frames[-1].startswith("packages/ptycho-tf/src/ptycho_tf_fake/model.py:2 in build")
    decoder = results["tests/parity/test_decoder_parity.py::test_decoders_agree"]
    assert any(f.endswith(" in decoder") for f in decoder.frames)
    assert "must match exactly" in decoder.message and decoder.exc_type == "ValueError"
    collect = results["packages/ptycho-tf/tests/test_tf_collect.py"]
    assert (collect.outcome, collect.phase, collect.exc_type) == ("error", "collect", "ModuleNotFoundError")
    assert "builtins.ImportError" in collect.exc_types and "tensorflow" in collect.message
    assert collect.frames[-1].startswith("packages/ptycho-tf/tests/test_tf_collect.py:4 in <module>")
