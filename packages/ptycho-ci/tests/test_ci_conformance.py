"""The conformance suite run against the in-process NumPy fake backend (what a backend's file looks like)."""

from ci_fake_backend import FakeBackend

from ptycho_ci.conformance import BackendConformance


class TestFakeBackendConformance(BackendConformance):
    backend_id = "fakebackend"
    plugin = FakeBackend()
