"""Backend conformance suite: base test classes a backend subclasses in a few lines (fsspec style).

In the backend's ``tests/test_conformance.py``::

    from ptycho_ci.conformance import BackendConformance

    class TestTorchConformance(BackendConformance):
        backend_id = "pytorch"
        model_overrides = {"n_filters_scale": 1}

The base class is not collected (its name has no ``Test`` prefix and ``__test__`` is
False); every subclass is (``__test__`` turns True unless the subclass sets it). The
checks run through :mod:`ptycho_core.backends` against the core contracts and the NumPy
reference: backend info, build, forward (shapes, dtypes, loss, and the physics against
:func:`ptycho_core.reference.physics_forward`), a one-epoch train, inference (patch count
and positions; at gridsize > 1 the merged group objects at the centroids), bundle save/load
(directory and zip), reassembly against the reference
(random sub-pixel patches and the "F" marker orientation round trip), canonical weight
export/import, and refusal of another backend's bundle.

Class attributes: ``backend_id`` (required); ``plugin`` (an in-process plugin object to
register under ``backend_id``, for backends without an installed entry point);
``model_overrides`` / ``training_overrides`` (keep the model small); ``gridsize``,
``n_groups``; ``skip`` (names of checks the backend opts out of, each reported as a skip).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

import numpy as np
import pytest

from ptycho_ci import conformance_data as cdata
from ptycho_core import backends, bundle, reference
from ptycho_core.config import InferenceConfig, ModelConfig, TrainingConfig, effective_nphotons
from ptycho_core.contracts import BackendInfo, ForwardOutput, InferenceResult, ModelHandle, TrainResult
from ptycho_core.errors import BundleError

FOREIGN_BACKEND = "conformance-foreign"
CHECKS = ("info", "build", "forward", "forward_physics", "train", "infer", "bundle", "reassemble",
          "marker", "weights", "canonical_weights", "foreign_bundle")


class BackendConformance:
    """Base class of a backend's conformance tests (see the module docstring)."""

    __test__ = False
    backend_id: ClassVar[str] = ""
    plugin: ClassVar[Any] = None
    model_overrides: ClassVar[dict] = {"n_filters_scale": 1}
    training_overrides: ClassVar[dict] = {}
    gridsize: ClassVar[int] = 2
    n_groups: ClassVar[int] = 4
    skip: ClassVar[frozenset] = frozenset()
    atol: ClassVar[float] = 1e-5

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    def _maybe_skip(self, check: str) -> None:
        if check in self.skip:
            pytest.skip(f"backend {self.backend_id!r} opts out of the {check!r} check")

    # -- fixtures (class scope: one model and one training per backend) ---------------
    @pytest.fixture(scope="class")
    @classmethod
    def conformance_backend(cls) -> backends.Backend:
        if not cls.backend_id:
            pytest.fail(f"{cls.__name__}: set the class attribute backend_id")
        if cls.plugin is not None:
            backends.register_plugin_for_tests(cls.plugin, cls.backend_id)
        yield backends.get(cls.backend_id)
        if cls.plugin is not None:
            backends.unregister_for_tests(cls.backend_id)

    @pytest.fixture(scope="class")
    @classmethod
    def model_config(cls, conformance_backend) -> ModelConfig:
        return ModelConfig(N=64, gridsize=cls.gridsize, **cls.model_overrides)

    @pytest.fixture(scope="class")
    @classmethod
    def training_config(cls, model_config, tmp_path_factory) -> TrainingConfig:
        base = {"model": model_config, "nepochs": 1, "batch_size": cls.n_groups, "seed": 0, "backend": cls.backend_id,
                "accelerator": "cpu", "output_dir": tmp_path_factory.mktemp(f"conformance-{cls.backend_id}")}
        return TrainingConfig(**{**base, **cls.training_overrides})

    @pytest.fixture(scope="class")
    @classmethod
    def inference_config(cls, model_config, training_config) -> InferenceConfig:
        return InferenceConfig(model=model_config, backend=cls.backend_id, accelerator="cpu",
                               batch_size=cls.n_groups, output_dir=training_config.output_dir / "inference")

    @pytest.fixture(scope="class")
    @classmethod
    def grouped(cls, model_config):
        return cdata.synthetic_grouped(model_config, n_groups=cls.n_groups)

    @pytest.fixture(scope="class")
    @classmethod
    def trained(cls, conformance_backend, model_config, training_config, grouped) -> TrainResult:
        model = conformance_backend.build_model(model_config, training_config)
        return conformance_backend.train(model, grouped, training_config)

    # -- checks -------------------------------------------------------------------------
    def test_backend_info(self, conformance_backend):
        self._maybe_skip("info")
        info = conformance_backend.info
        assert isinstance(info, BackendInfo)
        assert info.id == self.backend_id == conformance_backend.id
        for field in ("distribution", "version", "framework"):
            value = getattr(info, field)
            assert isinstance(value, str) and value.strip(), f"BackendInfo.{field} must be a non-empty string"
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.framework_versions.items())
        assert info.devices and all(isinstance(d, str) for d in info.devices), "BackendInfo.devices is empty"

    def test_build_model(self, conformance_backend, model_config, training_config):
        self._maybe_skip("build")
        model = conformance_backend.build_model(model_config, training_config)
        assert isinstance(model, ModelHandle)
        assert model.backend == self.backend_id
        assert model.model_config == model_config

    def test_forward_shapes_and_loss(self, conformance_backend, model_config, training_config, grouped):
        self._maybe_skip("forward")
        model = conformance_backend.build_model(model_config, training_config)
        out = conformance_backend.forward(model, grouped, training_config)
        assert isinstance(out, ForwardOutput)
        assert out.patches.shape == grouped.X.shape and out.patches.dtype == np.complex64
        assert out.amplitude.shape == grouped.X.shape and out.amplitude.dtype == np.float32
        assert np.isfinite(out.patches).all() and np.isfinite(out.amplitude).all()
        assert (out.amplitude >= 0).all()
        assert np.isfinite(out.loss)

    def test_forward_matches_reference_physics(self, conformance_backend, model_config, training_config, grouped):
        self._maybe_skip("forward_physics")
        model = conformance_backend.build_model(model_config, training_config)
        out = conformance_backend.forward(model, grouped, training_config)
        mc, tc = model_config, training_config
        s0 = reference.physics_scale(effective_nphotons(tc), mc.N)
        probe_n = reference.normalize_probe(grouped.probe, mc.probe_scale, mc.probe_mask, mc.gaussian_smoothing_sigma)
        ref = reference.physics_forward(out.patches, grouped.offsets, probe_n, gridsize=mc.gridsize,
                                        object_big=mc.object_big, scale=s0)
        peak = float(ref["amplitude"].max())
        np.testing.assert_allclose(out.amplitude, ref["amplitude"], rtol=1e-3, atol=1e-3 * peak)
        loss = reference.total_loss(ref["lam"], grouped.X, s0, patches=out.patches, Y=grouped.Y,
                                    nll_weight=tc.nll_weight, mae_weight=tc.mae_weight,
                                    realspace_weight=tc.realspace_weight)
        np.testing.assert_allclose(out.loss, loss, rtol=1e-3, atol=1e-3)

    def test_train_one_epoch(self, trained, training_config):
        self._maybe_skip("train")
        assert isinstance(trained, TrainResult)
        assert trained.model.backend == self.backend_id
        assert trained.epochs == training_config.nepochs
        assert len(trained.history["loss"]) == training_config.nepochs
        assert np.isfinite(trained.history["loss"]).all()

    def test_infer_patches_and_positions(self, conformance_backend, trained, grouped, inference_config,
                                         training_config):
        self._maybe_skip("infer")
        result = conformance_backend.infer(trained.model, grouped, inference_config)
        assert isinstance(result, InferenceResult)
        B, N, _, C = grouped.X.shape
        mc = trained.model.model_config
        if mc.stitches_group_object:  # gridsize > 1: one merged object per group, at its centroid (physics.md s6)
            np.testing.assert_allclose(result.positions, grouped.centroids, atol=1e-9,
                                       err_msg="positions != group centroids (gridsize > 1 stitches the merged "
                                       "group object, physics.md s6)")
            assert result.patches.shape == (B, N, N) and result.patches.dtype == np.complex64
            raw = conformance_backend.forward(trained.model, grouped, training_config).patches
            expected = reference.merge_patches(raw, grouped.offsets, mc.gridsize, mc.window_side)[1]
            peak = float(np.abs(expected).max())
            np.testing.assert_allclose(result.patches, expected, rtol=1e-3, atol=1e-3 * peak,
                                       err_msg="patches != reference.merge_patches of the network's patches")
            return
        assert result.patches.shape == (B * C, N, N) and result.patches.dtype == np.complex64
        assert np.isfinite(result.patches).all()
        expected = (grouped.centroids[:, None, :] + grouped.offsets).reshape(-1, 2)
        np.testing.assert_allclose(result.positions, expected, atol=1e-9, err_msg="positions != centroid + offset "
                                   "in group-major order (patch b*C + c)")

    @pytest.mark.parametrize("suffix", ["", ".zip"], ids=["directory", "zip"])
    def test_bundle_round_trip(self, conformance_backend, trained, grouped, inference_config, tmp_path, suffix):
        self._maybe_skip("bundle")
        path = bundle.save_bundle(trained.model, tmp_path / f"bundle{suffix}")
        assert bundle.read_manifest(path)["backend"] == self.backend_id
        loaded = bundle.load_bundle(path)
        assert loaded.backend == self.backend_id
        before = conformance_backend.infer(trained.model, grouped, inference_config).patches
        after = conformance_backend.infer(loaded, grouped, inference_config).patches
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=self.atol)

    def test_reassemble_matches_reference(self, conformance_backend):
        self._maybe_skip("reassemble")
        patches, positions = cdata.random_patches(64)
        shape, origin = reference.canvas_geometry(positions, 20)
        out = conformance_backend.reassemble(patches, positions, 20, shape, origin)
        expected = reference.reassemble(patches, positions, 20, shape, origin)
        assert out.shape == tuple(shape) and out.dtype == np.complex64
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=self.atol)

    def test_reassemble_marker_orientation(self, conformance_backend):
        self._maybe_skip("marker")
        obj = cdata.marker_object()
        positions, patches = cdata.marker_scan()
        out = conformance_backend.reassemble(patches, positions, 16, obj.shape, (0, 0))
        _, coverage = reference.reassemble(patches, positions, 16, obj.shape, (0, 0), return_coverage=True)
        covered = coverage > 0.5
        np.testing.assert_allclose(out[covered], obj[covered], atol=self.atol, err_msg="marker not returned in place")
        a, b = np.abs(out) * covered, np.abs(obj) * covered
        a, b = a - a[covered].mean() * covered, b - b[covered].mean() * covered
        corr = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real
        assert np.unravel_index(np.argmax(corr), corr.shape) == (0, 0), "marker correlation peak is not at zero shift"

    def test_weights_round_trip(self, conformance_backend, trained, model_config, training_config, grouped,
                                inference_config):
        self._maybe_skip("weights")
        weights = conformance_backend.export_weights(trained.model)
        assert weights and all(isinstance(k, str) for k in weights)
        for name, array in weights.items():
            assert isinstance(array, np.ndarray) and array.dtype == np.float32, f"{name}: expected float32 ndarray"
            assert np.isfinite(array).all(), f"{name}: non-finite values"
        rebuilt = conformance_backend.import_weights(model_config, training_config, weights)
        again = conformance_backend.export_weights(rebuilt)
        assert sorted(again) == sorted(weights)
        for name in weights:
            np.testing.assert_array_equal(again[name], weights[name], err_msg=name)
        before = conformance_backend.infer(trained.model, grouped, inference_config).patches
        after = conformance_backend.infer(rebuilt, grouped, inference_config).patches
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=self.atol)

    def test_canonical_weight_names(self, conformance_backend, trained, model_config):
        self._maybe_skip("canonical_weights")
        weights = conformance_backend.export_weights(trained.model)
        N = model_config.N
        assert weights["intensity_scale"].shape == ()
        assert weights["probe.real"].shape == (N, N) and weights["probe.imag"].shape == (N, N)

    def test_foreign_bundle_rejected(self, conformance_backend, model_config, training_config, tmp_path):
        self._maybe_skip("foreign_bundle")
        from ptycho_core.serialize import to_dict

        directory = tmp_path / "foreign"
        directory.mkdir()
        (directory / "model.foreign").write_bytes(b"weights of another backend")
        (directory / "config.json").write_text(json.dumps({"model": to_dict(model_config)}))
        files = {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in ("model.foreign", "config.json")}
        manifest = {"format": bundle.FORMAT_NAME, "format_version": bundle.FORMAT_VERSION, "backend": FOREIGN_BACKEND,
                    "versions": {}, "weights": ["model.foreign"], "files": files}
        (directory / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(BundleError):
            bundle.load_bundle(directory, backend=self.backend_id)
        with pytest.raises(BundleError):
            conformance_backend.load_model(directory, manifest, model_config, training_config)
