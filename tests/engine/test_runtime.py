"""runtime.py: perturbed sessions are exact; CUDA selection never silently falls back."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from onnxnoise.engine import runtime
from onnxnoise.engine.runtime import SessionFactory, resolve_providers
from onnxnoise.errors import SessionError
from onnxnoise.model import get_initializers, list_layers
from onnxnoise.noise import draw_noise, make_noise_model

from tests._builders import tiny_cnn

GAUSS = make_noise_model("gaussian-snr")


def _factory(model, names, device="cpu"):
    return SessionFactory(model, names, input_name="input", output_name="logits", device=device)


def _x():
    return np.random.default_rng(1).normal(size=(6, 3, 8, 8)).astype(np.float32)


def test_noisy_session_differs_from_clean_and_equals_reference_rewrite():
    model = tiny_cnn()
    layers = list_layers(model)
    names = [t for layer in layers for t in layer.tensors]
    factory = _factory(model, names)
    clean = factory.create().run(_x())
    reference_clean = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(clean, reference_clean.run(None, {"input": _x()})[0])

    noisy_arrays = draw_noise(GAUSS, 5.0, 0, layers, get_initializers(model)).arrays
    noisy = factory.create(noisy_arrays).run(_x())
    assert np.abs(noisy - clean).max() > 1e-3

    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    for tensor in rewritten.graph.initializer:
        if tensor.name in noisy_arrays:
            tensor.CopyFrom(numpy_helper.from_array(noisy_arrays[tensor.name], tensor.name))
    reference = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(noisy, reference.run(None, {"input": _x()})[0])


def test_weights_reach_ort_as_arrays_and_standalone_bytes_hold_them():
    model = tiny_cnn()
    layers = list_layers(model)
    names = [t for layer in layers for t in layer.tensors]
    factory = _factory(model, names)
    assert factory.external  # every model size: no weight serialized per session
    noisy = draw_noise(GAUSS, 2.0, 0, layers, get_initializers(model)).arrays
    skeleton = onnx.load_from_string(factory.model_bytes(noisy))
    assert {t.name for t in skeleton.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL} >= set(names)
    whole = factory.standalone_bytes(noisy)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in onnx.load_from_string(whole).graph.initializer)
    alone = ort.InferenceSession(whole, providers=["CPUExecutionProvider"]).run(None, {"input": _x()})[0]
    np.testing.assert_array_equal(factory.create(noisy).run(_x()), alone)


def test_untouched_initializers_are_bit_identical():
    model = tiny_cnn()
    layers = list_layers(model)
    factory = _factory(model, [t for layer in layers for t in layer.tensors])
    noisy = draw_noise(GAUSS, 2.0, 0, layers[:1], get_initializers(model)).arrays
    assert set(noisy) == {"conv.weight", "conv.bias"}
    merged = onnx.load_from_string(factory.standalone_bytes(noisy))
    got = {t.name: numpy_helper.to_array(t) for t in merged.graph.initializer}
    clean = get_initializers(model)
    assert set(got) == set(clean)
    for name, array in clean.items():
        if name in noisy:
            assert not np.array_equal(got[name], array)
        else:
            assert got[name].tobytes() == array.tobytes()


def test_cuda_requested_but_unavailable(monkeypatch):
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(SessionError, match="`--device cuda` but this onnxruntime has no CUDAExecutionProvider"):
        resolve_providers("cuda")
    assert resolve_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(SessionError, match="`--device` must be one of"):
        resolve_providers("tpu")


_RealSession = ort.InferenceSession


class _FakeSession:
    """Stands in for InferenceSession when the CUDA EP is 'available' but fails to load."""

    def __init__(self, data, options, providers, provider_options=None):
        self.providers, self.provider_options = providers, provider_options
        self.real = _RealSession(data, options, providers=["CPUExecutionProvider"])

    def get_providers(self):
        return ["CPUExecutionProvider"]

    def run(self, *args, **kwargs):
        return self.real.run(*args, **kwargs)


def test_cuda_silent_fallback_is_an_error(monkeypatch):
    monkeypatch.setattr(runtime.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(runtime.ort, "InferenceSession", _FakeSession)
    model = tiny_cnn()
    assert resolve_providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(SessionError, match="fell back to the CPU"):
        _factory(model, ["conv.weight"], device="cuda").create()
    # auto: runs, and reports the EP that actually ran.
    session = _factory(model, ["conv.weight"], device="auto").create()
    assert session.provider == "CPUExecutionProvider"


class _CudaSession(_FakeSession):
    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cuda_session_reports_cuda(monkeypatch):
    monkeypatch.setattr(runtime.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(runtime.ort, "InferenceSession", _CudaSession)
    session = _factory(tiny_cnn(), ["conv.weight"], device="cuda").create()
    assert session.provider == "CUDAExecutionProvider"
    assert session.session.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert session.run(_x()).shape == (6, 10)


@pytest.mark.parametrize("field, value, text", [
    ("opset", 40, "Opset 40"),
    ("ir", 20, "Unsupported model IR version: 20"),
])
def test_too_new_model_names_both_versions(field, value, text):
    model = tiny_cnn()
    if field == "opset":
        model.opset_import[0].version = value
    else:
        model.ir_version = value
    with pytest.raises(SessionError) as info:
        _factory(model, ["conv.weight"]).create()
    message = str(info.value)
    assert text in message
    assert f"onnxruntime {ort.__version__}" in message
    assert "/onnxruntime_src" not in message and "\n" not in message


class _RecordingBinding:
    def __init__(self, real):
        self.real, self.inputs, self.outputs = real, {}, []

    def bind_ortvalue_input(self, name, value):
        self.inputs[name] = value

    def bind_output(self, name, device):
        assert device == "cpu"  # only the small score output comes back to the host
        self.outputs.append(name)

    def copy_outputs_to_cpu(self):
        return self.result


class _FakeCudaOrtSession:
    """Runs on the CPU but looks like a CUDA session that is driven through IOBinding."""

    def __init__(self, real):
        self.real, self.bound_runs, self.plain_runs = real, 0, 0

    def io_binding(self):
        return _RecordingBinding(self.real)

    def run_with_iobinding(self, binding):
        self.bound_runs += 1
        feed = {name: value.numpy() for name, value in binding.inputs.items()}
        binding.result = self.real.run(binding.outputs, feed)

    def run(self, *args, **kwargs):
        self.plain_runs += 1
        return self.real.run(*args, **kwargs)


def test_cuda_path_uploads_inputs_once_and_binds_them(monkeypatch):
    from onnxnoise.data import resolve_data_config
    from onnxnoise.engine.evaluate import EvalSet, evaluate
    from onnxnoise.engine.runtime import Session

    uploads = []
    real_from_numpy = ort.OrtValue.ortvalue_from_numpy

    def fake_from_numpy(array, device="cpu", device_id=0):
        uploads.append((device, device_id, array.shape))
        return real_from_numpy(array)  # host memory stands in for the GPU here

    model = tiny_cnn()
    rng = np.random.default_rng(0)
    data = EvalSet(rng.integers(0, 256, size=(50, 8, 8, 3), dtype=np.uint8), np.arange(50) % 10,
                   resolve_data_config("raw"), batch_size=16)
    cpu = _factory(model, ["conv.weight"]).create()  # its weights are OrtValues too: built before counting uploads
    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy", staticmethod(fake_from_numpy))
    expected = evaluate(cpu, data)
    fake = _FakeCudaOrtSession(cpu.session)
    cuda = Session(fake, "input", "logits", "CUDAExecutionProvider")
    assert cuda.on_cuda and not cpu.on_cuda
    for _ in range(3):  # three trials on the same evaluation set
        assert evaluate(cuda, data) == expected
    assert fake.bound_runs == 3 * 4 and fake.plain_runs == 0
    assert [u[:2] for u in uploads] == [("cuda", 0)] * 4  # 4 batches, uploaded once, reused by every trial


def test_uncached_batches_prefetched_equal_cached():
    from onnxnoise.data import resolve_data_config
    from onnxnoise.engine.evaluate import EvalSet, evaluate

    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, size=(70, 8, 8, 3), dtype=np.uint8), np.arange(70) % 10
    cached = EvalSet(images, labels, resolve_data_config("raw"), batch_size=16)
    streamed = EvalSet(images, labels, resolve_data_config("raw"), batch_size=16, cache_limit_bytes=0)
    # A set within cache_limit_bytes keeps its normalized batches and hands out the same arrays on
    # every pass; a larger one is normalized again on every pass.
    assert all(a is b for (a, _), (b, _) in zip(cached.batches(), cached.batches(), strict=True))
    streamed_first = [x for x, _ in streamed.batches()]
    assert not any(a is b for a, (b, _) in zip(streamed_first, streamed.batches(), strict=True))
    pairs = list(zip(cached.batches(), streamed.batches(), strict=True))
    assert len(pairs) == 5
    for (x1, y1), (x2, y2) in pairs:
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    session = _factory(tiny_cnn(), ["conv.weight"]).create()
    assert evaluate(session, cached) == evaluate(session, streamed)


def test_arrays_handed_to_ort_are_never_written():
    # tiny_cnn's Conv + BatchNormalization are fused by ONNX Runtime: the fused weights are new
    # tensors, the arrays given as external initializers (clean and noisy) keep their bytes.
    model = tiny_cnn()
    layers = list_layers(model)
    factory = _factory(model, [t for layer in layers for t in layer.tensors])
    inits = get_initializers(model)
    noisy = draw_noise(GAUSS, 2.0, 3, layers, inits).arrays
    before = {name: a.tobytes() for name, a in noisy.items()}
    whole = factory.standalone_bytes()  # serialized from the factory's own clean arrays
    clean = factory.create().run(_x())
    factory.create(noisy).run(_x())
    np.testing.assert_array_equal(factory.create().run(_x()), clean)
    assert {name: a.tobytes() for name, a in noisy.items()} == before
    assert factory.standalone_bytes() == whole


def test_a_factory_of_an_external_skeleton_reads_no_weight_and_gives_the_same_scores(monkeypatch):
    model = tiny_cnn()
    layers = list_layers(model)
    names = [t for layer in layers for t in layer.tensors]
    light, arrays = runtime.external_skeleton(model, names)
    assert set(arrays) == set(names) and all(not a.flags.writeable for a in arrays.values())
    for name, array in get_initializers(model).items():
        if name in arrays:
            np.testing.assert_array_equal(arrays[name], array)
    assert {t.name for t in light.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL} == set(names)
    assert all(not t.raw_data for t in light.graph.initializer if t.name in arrays)
    parsed = []
    real = runtime.numpy_helper.to_array
    monkeypatch.setattr(runtime.numpy_helper, "to_array", lambda t, *a: parsed.append(t.name) or real(t, *a))
    factory = SessionFactory(light, names, input_name="input", output_name="logits", device="cpu", arrays=arrays)
    assert parsed == []  # every weight taken from `arrays`
    noisy = draw_noise(GAUSS, 5.0, 0, layers, get_initializers(model)).arrays
    np.testing.assert_array_equal(factory.create(noisy).run(_x()), _factory(model, names).create(noisy).run(_x()))
    np.testing.assert_array_equal(factory.create().run(_x()), _factory(model, names).create().run(_x()))
