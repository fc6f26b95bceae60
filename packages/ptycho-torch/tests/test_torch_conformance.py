"""The shared backend conformance suite of ptycho-ci, run against the PyTorch backend."""

from ptycho_ci.conformance import BackendConformance


class TestTorchConformance(BackendConformance):
    backend_id = "pytorch"
    model_overrides = {"n_filters_scale": 1}
