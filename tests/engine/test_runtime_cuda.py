"""The CUDA path without a GPU: TF32 off by default, recorded in rows and keys; prefix-reuse cuts on the device.

``onnxruntime.InferenceSession`` is replaced by :class:`_FakeCudaSession`, a real CPU session that
reports the CUDA execution provider and the provider options it was given, and only runs through
``IOBinding``; ``OrtValue.ortvalue_from_numpy`` makes :class:`_DeviceValue` s (host arrays labelled
with their device). A value read on the host (``.numpy()``) is counted, so a test can tell that
kept activations never left the "GPU".
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.data import resolve_data_config
from onnxnoise.data.npz import load_npz
from onnxnoise.engine import runtime
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.evaluate import EvalSet, evaluate
from onnxnoise.engine.plan import Trial, plan_trials
from onnxnoise.engine.prefix import PrefixRunner
from onnxnoise.engine.prefix.cut_store import DISK, MEMORY
from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.engine.trial import run_trial
from onnxnoise.model import get_initializers, get_model_io, list_layers, load_model
from onnxnoise.noise import draw_noise, make_noise_model

from tests._builders import conv_bn_resnet, labeled_npz

_RealSession = ort.InferenceSession
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class _DeviceValue:
    """An ``OrtValue`` on a device: the array stays inside; ``numpy()`` is a counted copy to the host."""

    host_copies = 0

    def __init__(self, array: np.ndarray, device: str) -> None:
        self.array, self.device = np.array(array), device

    def device_name(self) -> str:
        return self.device

    def numpy(self) -> np.ndarray:
        _DeviceValue.host_copies += 1
        return self.array.copy()

    def tensor_size_in_bytes(self) -> int:
        return self.array.nbytes


class _Binding:
    def __init__(self) -> None:
        self.inputs, self.outputs, self.results = {}, [], []

    def bind_ortvalue_input(self, name, value):
        assert isinstance(value, _DeviceValue) and value.device == "cuda", (name, type(value))
        self.inputs[name] = value

    def bind_output(self, name, device="cpu", device_id=0):
        self.outputs.append((name, device))

    def copy_outputs_to_cpu(self):
        return [r.array.copy() if isinstance(r, _DeviceValue) else r for r in self.results]

    def get_outputs(self):
        return list(self.results)


class _FakeCudaSession:
    """A CPU session that says it runs on the CUDA EP; plain ``run`` is refused (CUDA runs bind)."""

    created: list[_FakeCudaSession] = []
    run_threads: set[int] = set()  # idents of the threads that ran any fake CUDA session
    report_tf32 = True

    def __init__(self, data, options, providers=None, provider_options=None):
        self.providers, self.provider_options = providers, provider_options
        self.real = _RealSession(data, options, providers=[CPU])
        self.bound_outputs: list[tuple[str, str]] = []
        _FakeCudaSession.created.append(self)

    def get_providers(self):
        return [CUDA, CPU]

    def get_provider_options(self):
        cuda = dict(self.provider_options[0])
        if not self.report_tf32:
            cuda.pop("use_tf32")
        return {CUDA: cuda, CPU: {}}

    def get_provider_graph_assignment_info(self):
        """The nodes the CPU session placed, reported on the CUDA EP (where a real CUDA session puts them)."""
        placed = self.real.get_provider_graph_assignment_info()
        return [SimpleNamespace(ep_name=CUDA, get_nodes=s.get_nodes) for s in placed]

    def run(self, *args, **kwargs):
        raise AssertionError("a CUDA session must be run through IOBinding")

    def io_binding(self):
        return _Binding()

    def run_with_iobinding(self, binding):
        _FakeCudaSession.run_threads.add(threading.get_ident())
        names = [name for name, _ in binding.outputs]
        outs = self.real.run(names, {n: v.array for n, v in binding.inputs.items()})
        binding.results = [out if device == "cpu" else _DeviceValue(out, device)
                           for (_, device), out in zip(binding.outputs, outs)]
        self.bound_outputs.extend(binding.outputs)


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA EP 'available', sessions faked, uploads make device values; returns the upload log."""
    uploads = []
    real_from_numpy = ort.OrtValue.ortvalue_from_numpy

    def from_numpy(array, device="cpu", device_id=0):
        if device == "cpu":  # the weights a session gets as external initializers: real host OrtValues
            return real_from_numpy(array)
        uploads.append((device, device_id, array.shape))
        return _DeviceValue(array, device)

    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(runtime.ort, "InferenceSession", _FakeCudaSession)
    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy", staticmethod(from_numpy))
    monkeypatch.setattr(_FakeCudaSession, "created", [])
    monkeypatch.setattr(_FakeCudaSession, "run_threads", set())
    monkeypatch.setattr(_DeviceValue, "host_copies", 0)
    return uploads


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cuda-mock")
    path = tmp / "conv_bn_resnet.onnx"
    onnx.save(conv_bn_resnet(), path)
    return path, labeled_npz(load_model(path), tmp / "data.npz", n=80)


@pytest.mark.parametrize("tf32, expected", [(False, "0"), (True, "1")])
def test_cuda_provider_options_turn_tf32_off_by_default(fake_cuda, model_and_data, tf32, expected):
    path, _ = model_and_data
    model = load_model(path)
    io = get_model_io(model)
    factory = SessionFactory(model, [], input_name=io.input_name, output_name=io.output_name, device="cuda",
                             tf32=tf32)
    session = factory.create()
    assert session.on_cuda
    fake = _FakeCudaSession.created[-1]
    assert fake.providers == [CUDA, CPU]
    assert fake.provider_options == [{"use_tf32": expected}, {}]


def test_cpu_sessions_get_no_cuda_options():
    model = conv_bn_resnet()
    factory = SessionFactory(model, [], input_name="input", output_name="logits", device="cpu", tf32=True)
    assert factory.providers == [CPU] and factory.provider_options == [{}]


def _config(path: Path, data: Path, **kw) -> RunConfig:
    return RunConfig(model=path, data=data, preset="raw", batch_size=32, noise=NoiseConfig(strengths=(2.0,), seeds=1),
                     **kw)


@pytest.mark.parametrize("reported", [True, False], ids=["ort-reports-use_tf32", "ort-silent"])
def test_trial_rows_and_keys_record_tf32(fake_cuda, model_and_data, monkeypatch, reported):
    path, labeled = model_and_data
    monkeypatch.setattr(_FakeCudaSession, "report_tf32", reported)
    contexts = {tf32: prepare_context(_config(path, labeled.path, device="cuda", tf32=tf32)) for tf32 in (False, True)}
    for tf32, context in contexts.items():
        assert context.provider == CUDA
        assert context.key_fields()["provider_options"]["use_tf32"] == ("1" if tf32 else "0")
        row = run_trial(context, Trial("baseline", None, (), None, None))
        assert row["error"] is None and row["provider"] == CUDA
        assert row["context"]["provider_options"]["use_tf32"] == ("1" if tf32 else "0")
        assert row["top1_correct"] == labeled.top1_correct  # the fake 'GPU' computes on the CPU: exact
    keys = {tf32: {p.key for p in plan_trials(context, ("per-layer",))} for tf32, context in contexts.items()}
    assert not keys[False] & keys[True]  # a TF32 run never reuses float32 rows, nor the other way round


def test_tf32_flag_does_not_change_cpu_keys(model_and_data):
    path, labeled = model_and_data
    keys = [{p.key for p in plan_trials(prepare_context(_config(path, labeled.path, device="cpu", tf32=tf32)),
                                        ("all",))} for tf32 in (False, True)]
    assert keys[0] == keys[1]


def _runner_setup(path: Path, labeled, *, limit: int, **settings):
    model = load_model(path)
    stored = load_npz(labeled.path)
    data = EvalSet(stored.images, stored.labels, resolve_data_config("raw"), batch_size=16)
    io = get_model_io(model)
    layers = list_layers(model)
    runner = PrefixRunner(model, data, io.input_name, io.output_name, device="cuda", memory_limit_bytes=limit,
                          **settings)
    return model, data, io, layers, runner


def _cpu_counts(model, io, layers, data, rep):
    factory = SessionFactory(model, [t for layer in layers for t in layer.tensors], input_name=io.input_name,
                             output_name=io.output_name, device="cpu")
    return evaluate(factory.create(rep), data)


def test_prefix_cuts_stay_on_the_device(fake_cuda, model_and_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXNOISE_CACHE_DIR", str(tmp_path))
    path, labeled = model_and_data
    model, data, io, layers, runner = _runner_setup(path, labeled, limit=1 << 30)
    inits = get_initializers(model)
    noise = make_noise_model("gaussian-snr")
    expected = {}
    with pytest.MonkeyPatch.context() as cpu_only:  # the reference runs on the real CPU EP
        cpu_only.setattr(runtime.ort, "get_available_providers", lambda: [CPU])
        cpu_only.setattr(runtime.ort, "InferenceSession", _RealSession)
        for layer in layers:
            rep = draw_noise(noise, 2.0, 0, [layer], inits).arrays
            expected[layer.name] = (rep, _cpu_counts(model, io, layers, data, rep))
    _FakeCudaSession.created.clear()
    for layer in [*layers, *reversed(layers)]:
        rep, counts = expected[layer.name]
        assert runner.evaluate(rep) == counts, layer.name
        assert runner.provider == CUDA
        if runner.kept_cut is not None:
            for slot in runner.kept_cut.slots:
                assert slot.kind == MEMORY
                assert all(isinstance(v, _DeviceValue) and v.device == "cuda" for v in slot.values.values())
    assert _DeviceValue.host_copies == 0  # no kept activation ever crossed to the host
    assert runner.stats.spilled_batches == 0 and runner.stats.kept_batches > 0
    outputs = [device for fake in _FakeCudaSession.created for _, device in fake.bound_outputs]
    assert "cuda" in outputs  # segments leave their outputs on the device
    assert set(outputs) == {"cuda", "cpu"}  # ... and only scores come back
    assert all(fake.provider_options[0] == {"use_tf32": "0"} for fake in _FakeCudaSession.created)
    # inputs were uploaded once per batch (5 batches), then reused by every rebuild and position-0 trial
    assert [u[:2] for u in fake_cuda] == [("cuda", 0)] * 5


def test_lockstep_on_the_device_runs_one_suffix_at_a_time(fake_cuda, model_and_data):
    """A lockstep pass on the CUDA EP: counts equal the CPU's, activations never cross to the host, and the
    suffix sessions take turns on the device (``parallel`` applies to the CPU only)."""
    path, labeled = model_and_data
    model, data, io, layers, runner = _runner_setup(path, labeled, limit=1 << 30, parallel=2)
    inits = get_initializers(model)
    noise = make_noise_model("gaussian-snr")
    reps = [draw_noise(noise, 2.0, 1, [layer], inits).arrays for layer in layers]
    with pytest.MonkeyPatch.context() as cpu_only:
        cpu_only.setattr(runtime.ort, "get_available_providers", lambda: [CPU])
        cpu_only.setattr(runtime.ort, "InferenceSession", _RealSession)
        expected = [_cpu_counts(model, io, layers, data, rep) for rep in reps]
    results = runner.evaluate_lockstep(reps)
    for got, want, layer in zip(results, expected, layers):
        assert got == want, layer.name
    # every session (segments and suffixes) ran on this thread, one after another
    assert _FakeCudaSession.run_threads == {threading.get_ident()}
    assert _DeviceValue.host_copies == 0 and runner.provider == CUDA


def test_prefix_cuts_beyond_the_bound_spill_from_the_device(fake_cuda, model_and_data, tmp_path):
    path, labeled = model_and_data
    model, data, io, layers, runner = _runner_setup(path, labeled, limit=300_000,  # 1-2 of 5 batches
                                                    spill_dir=tmp_path, overflow="disk")
    inits = get_initializers(model)
    layer = layers[4]
    rep = draw_noise(make_noise_model("gaussian-snr"), 2.0, 0, [layer], inits).arrays
    with pytest.MonkeyPatch.context() as cpu_only:
        cpu_only.setattr(runtime.ort, "get_available_providers", lambda: [CPU])
        cpu_only.setattr(runtime.ort, "InferenceSession", _RealSession)
        counts = _cpu_counts(model, io, layers, data, rep)
    uploads_before = len(fake_cuda)
    assert runner.evaluate(rep) == counts
    kinds = [slot.kind for slot in runner.kept_cut.slots]
    assert MEMORY in kinds and DISK in kinds
    spilled = kinds.count(DISK)
    assert 0 < runner.stats.peak_kept_bytes <= 300_000
    # each spilled batch was copied to the host once (per cut tensor) and uploaded again to be used
    tensors = len(runner.sessions.cut_names(runner.kept_cut.position))
    assert _DeviceValue.host_copies == spilled * tensors
    assert len(fake_cuda) - uploads_before == 5 + spilled * tensors  # 5 input batches + read-backs


def test_cuts_kept_nowhere_are_recomputed_on_the_device(fake_cuda, model_and_data):
    """No memory, no disk: each trial recomputes the cut on the 'GPU' from inputs uploaded once."""
    path, labeled = model_and_data
    model, data, io, layers, runner = _runner_setup(path, labeled, limit=1, spill_dir=False)
    inits = get_initializers(model)
    reps = [draw_noise(make_noise_model("gaussian-snr"), 2.0, 0, [layer], inits).arrays for layer in layers[4:6]]
    with pytest.MonkeyPatch.context() as cpu_only:
        cpu_only.setattr(runtime.ort, "get_available_providers", lambda: [CPU])
        cpu_only.setattr(runtime.ort, "InferenceSession", _RealSession)
        expected = [_cpu_counts(model, io, layers, data, rep) for rep in reps]
    for _ in range(2):
        for rep, counts in zip(reps, expected):
            assert runner.evaluate(rep) == counts
    assert runner.stats.fallbacks == 4 and runner.stats.kept_batches == 0
    assert _DeviceValue.host_copies == 0
    assert [u[:2] for u in fake_cuda] == [("cuda", 0)] * 5  # 5 input batches, uploaded once for all trials
