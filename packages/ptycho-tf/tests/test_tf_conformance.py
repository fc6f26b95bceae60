"""The shared backend conformance suite of ptycho-ci, run against the TensorFlow backend."""

from ptycho_ci.conformance import BackendConformance


class TestTfConformance(BackendConformance):
    backend_id = "tensorflow"
    model_overrides = {"n_filters_scale": 1}
