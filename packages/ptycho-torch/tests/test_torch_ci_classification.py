"""ptycho-ci classifies the real torch failures of its trigger table (FAIL-003, PARITY-001, CONFIG-001).

A pytest subprocess with recording on runs test files laid out like this repository whose
tests fail the way real code fails: Lightning's ``load_from_checkpoint`` on a checkpoint without
``hyper_parameters`` (``PtychoLightningModule.__init__() missing 1 required positional argument:
'model_config'``, a message without the word "checkpoint"), and ``torch.cat`` of a decoder's
mismatched feature maps in a parity test and outside one. The numpy-only cases are in
``packages/ptycho-ci/tests/test_ci_classification.py``.
"""

from __future__ import annotations

import pytest

from ptycho_ci.trial import classification, latest_results, run_recorded_suite

pytestmark = pytest.mark.pytorch

FILES = {
    "packages/ptycho-torch/tests/test_resume_checkpoint.py": """
        import torch

        from ptycho_core.config import ModelConfig
        from ptycho_torch.io import checkpoint_dict
        from ptycho_torch.module import PtychoLightningModule
        from ptycho_torch.pinn import config_to_dict

        def test_resume_from_checkpoint(tmp_path):
            module = PtychoLightningModule(model_config=config_to_dict(ModelConfig(n_filters_scale=1)))
            ckpt = checkpoint_dict(module)
            del ckpt["hyper_parameters"]  # a writer that forgot them
            torch.save(ckpt, tmp_path / "last.ckpt")
            PtychoLightningModule.load_from_checkpoint(tmp_path / "last.ckpt")
        """,
    "tests/parity/test_torch_decoder_parity.py": """
        import torch

        def decoder(features, skip):
            return torch.cat([features, skip], dim=1)

        def test_decoder_matches_tensorflow():
            decoder(torch.zeros(1, 64, 8, 8), torch.zeros(1, 32, 16, 16))
        """,
    "packages/ptycho-core/tests/test_torch_stack.py": """
        import torch

        def test_channels_stack():
            torch.cat([torch.zeros(2, 4, 64, 64), torch.zeros(2, 1, 74, 74)], dim=1)
        """,
}

EXPECTED = {
    "packages/ptycho-torch/tests/test_resume_checkpoint.py::test_resume_from_checkpoint": "FAIL-003",
    "tests/parity/test_torch_decoder_parity.py::test_decoder_matches_tensorflow": "PARITY-001",
    "packages/ptycho-core/tests/test_torch_stack.py::test_channels_stack": "CONFIG-001",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The history of the suite of :data:`FILES`, run with recording on."""
    return run_recorded_suite(FILES, tmp_path_factory.mktemp("repo"))


def test_torch_failures_are_classified_like_the_trigger_table(recorded):
    results = latest_results(recorded)
    assert set(results) == set(EXPECTED), sorted(results)
    assert classification(recorded) == EXPECTED
    ckpt = results["packages/ptycho-torch/tests/test_resume_checkpoint.py::test_resume_from_checkpoint"]
    assert ckpt.exc_type == "TypeError" and "missing 1 required positional argument: 'model_config'" in ckpt.message
    assert "checkpoint" not in ckpt.message.lower()  # only the traceback says where it came from
    assert any(f.endswith("load_from_checkpoint") and "lightning/" in f for f in ckpt.frames)
    assert ckpt.frames[0].startswith("packages/ptycho-torch/tests/test_resume_checkpoint.py:")
