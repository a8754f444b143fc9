"""Execution providers: ``--device`` unchanged, ``--provider`` by name or from a plugin library, node shares,
and the refusal when the provider asked for runs no node (in process and through the CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import onnx
import onnxruntime as ort
import polars as pl
import pytest

from onnxnoise.engine import providers
from onnxnoise.engine.providers import (
    CPU, RECORD_ASSIGNMENT, NodeShare, ProviderChoice, check_node_share, choose_providers, node_share,
    plugin_version, register_library,
)
from onnxnoise.errors import SessionError
from onnxnoise.provider_config import ProviderConfig
from tests._builders import labeled_npz, tiny_cnn
from tests._checks import one_line, run_cli

#: A library in every onnxruntime wheel that is not a plugin EP library (no ``CreateEpFactories``).
NOT_A_PLUGIN = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_shared.so"

#: ``tiny_cnn``: Conv, BatchNormalization, Relu, Mul, GlobalAveragePool, Reshape, Gemm = 7 nodes; with every
#: graph optimization ONNX Runtime folds BatchNormalization and the constant Mul into the Conv: 5 nodes.
TINY_NODES, TINY_OPTIMIZED_NODES = 7, 5


def _session(model: onnx.ModelProto, choice: ProviderChoice, *, optimize: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.add_session_config_entry(RECORD_ASSIGNMENT, "1")
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return choice.session(model.SerializeToString(), options)


def test_device_choices_are_what_they_were():
    assert choose_providers("cpu") == ProviderChoice((CPU,), ({},))
    assert choose_providers("auto", ProviderConfig(), tf32=True).names[-1] == CPU
    with pytest.raises(SessionError, match="`--device` must be one of auto, cpu, cuda, got 'tpu'"):
        choose_providers("tpu")


def test_cuda_by_name_gets_exact_float32_unless_an_option_says_otherwise(monkeypatch):
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", CPU])
    cuda = ProviderConfig(name="CUDAExecutionProvider")
    assert choose_providers("auto", cuda).options == ({"use_tf32": "0"}, {})
    assert choose_providers("auto", cuda, tf32=True).options == ({"use_tf32": "1"}, {})
    given = ProviderConfig(name="CUDAExecutionProvider", options={"use_tf32": "1", "device_id": "1"})
    choice = choose_providers("auto", given)
    assert choice.options == ({"use_tf32": "1", "device_id": "1"}, {})
    assert choice.given == {"use_tf32": "1", "device_id": "1"} and choice.requested == "CUDAExecutionProvider"


def test_cpu_by_name_runs_every_node():
    choice = choose_providers("auto", ProviderConfig(name=CPU))
    assert choice == ProviderChoice((CPU,), ({},), requested=CPU)
    share = node_share(_session(tiny_cnn(), choice), CPU)
    assert (share.nodes, share.total, share.share) == (TINY_OPTIMIZED_NODES, TINY_OPTIMIZED_NODES, 1.0)
    assert share.describe() == "CPUExecutionProvider runs 5 of 5 nodes (100.0%)"
    unoptimized = node_share(_session(tiny_cnn(), choice, optimize=False), CPU)
    assert (unoptimized.nodes, unoptimized.total) == (TINY_NODES, TINY_NODES)
    check_node_share(share, CPU)  # no refusal


def test_the_per_device_path_runs_a_model_on_the_cpu_device():
    """The plugin path (``add_provider_for_devices`` with ONNX Runtime's ``OrtEpDevice`` s) on the one device
    every onnxruntime offers: the CPU provider's."""
    choice = ProviderChoice((CPU,), ({},), requested=CPU, plugin=True)
    session = _session(tiny_cnn(), choice)
    assert session.get_providers() == [CPU]
    assert node_share(session, CPU).to_dict() == {"provider": CPU, "nodes": 5, "total": 5, "share": 1.0,
                                                  "by_provider": {CPU: 5}}


def test_a_session_without_recorded_placement_is_an_error():
    session = ort.InferenceSession(tiny_cnn().SerializeToString(), providers=[CPU])
    with pytest.raises(SessionError, match="the session recorded no node placement"):
        node_share(session, CPU)


def test_a_provider_that_runs_no_node_is_refused():
    share = NodeShare("OpenVINOExecutionProvider", 0, 5, {CPU: 5})
    with pytest.raises(SessionError) as info:
        check_node_share(share, "OpenVINOExecutionProvider")
    assert str(info.value) == ("`OpenVINOExecutionProvider` runs none of the model's 5 nodes (they run on: "
                               "CPUExecutionProvider 5); choose a provider that supports this model's operators, "
                               "or drop --provider")
    check_node_share(share, None)  # --device auto / cpu: nothing asked for by name
    partial = NodeShare("XEP", 3, 4, {"XEP": 3, CPU: 1})
    assert partial.describe() == "XEP runs 3 of 4 nodes (75.0%); CPUExecutionProvider 1"


def test_an_unknown_provider_lists_the_available_ones(monkeypatch):
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [CPU])
    with pytest.raises(SessionError) as info:
        choose_providers("auto", ProviderConfig(name="TensorrtExecutionProvider"))
    assert str(info.value) == (f"`--provider TensorrtExecutionProvider` is not a provider of this onnxruntime "
                               f"{ort.__version__} (available: CPUExecutionProvider); a plugin provider needs "
                               "`--provider-library PATH`")


@pytest.mark.skipif(not NOT_A_PLUGIN.is_file(), reason="this onnxruntime wheel has no providers_shared library")
def test_a_library_that_is_not_a_plugin_is_refused(monkeypatch):
    monkeypatch.setattr(providers, "_REGISTERED", {})
    with pytest.raises(SessionError) as info:
        register_library(NOT_A_PLUGIN, "NotAPluginEP")
    text = str(info.value)
    assert text.startswith(f"onnxruntime {ort.__version__} could not register `--provider-library {NOT_A_PLUGIN}`: ")
    assert "CreateEpFactories" in text and "[ONNXRuntimeError]" not in text and "\n" not in text
    assert providers._REGISTERED == {}


class _FakeOrt:
    """The part of onnxruntime's module surface plugin registration uses; ``plugin_devices`` are the
    ``OrtEpDevice`` s the registered library adds (none: a plugin that supports none of the hardware)."""

    __version__ = "1.32.0"

    def __init__(self, plugin_devices: list) -> None:
        self.plugin_devices, self.registered = plugin_devices, []
        cpu_hw = SimpleNamespace(type="OrtHardwareDeviceType.CPU", vendor="AMD", vendor_id=0x1022)
        self.cpu = SimpleNamespace(ep_name=CPU, device=cpu_hw, ep_metadata={"version": "1.32.0"})

    def get_available_providers(self) -> list[str]:
        return ["AzureExecutionProvider", CPU]

    def register_execution_provider_library(self, name: str, path: str) -> None:
        self.registered.append((name, path))

    def get_ep_devices(self) -> list:
        return [self.cpu, *(self.plugin_devices if self.registered else [])]


def _library(tmp_path: Path) -> Path:
    library = tmp_path / "libonnxruntime_providers_openvino_plugin.so"
    library.write_bytes(b"\x7fELF")
    return library


def test_a_registered_plugin_without_a_device_for_this_machine_is_refused(monkeypatch, tmp_path):
    fake = _FakeOrt(plugin_devices=[])
    monkeypatch.setattr(providers, "ort", fake)
    monkeypatch.setattr(providers, "_REGISTERED", {})
    library = _library(tmp_path)
    with pytest.raises(SessionError) as info:
        choose_providers("auto", ProviderConfig(name="OpenVINOExecutionProvider", library=library))
    assert fake.registered == [("OpenVINOExecutionProvider", str(library.resolve()))]
    assert str(info.value) == (
        f"`--provider-library {library}` registered, but it offers no device of this machine for "
        "`OpenVINOExecutionProvider` (devices offered: CPUExecutionProvider on CPU (AMD, vendor id 0x1022)); "
        "the plugin supports none of this hardware, see docs/providers.md")


def test_a_plugin_with_a_device_is_chosen_per_device(monkeypatch, tmp_path):
    gpu_hw = SimpleNamespace(type="OrtHardwareDeviceType.GPU", vendor="Intel", vendor_id=0x8086)
    device = SimpleNamespace(ep_name="OpenVINOExecutionProvider", device=gpu_hw, ep_metadata={"version": "1.8.1"})
    fake = _FakeOrt(plugin_devices=[device])
    monkeypatch.setattr(providers, "ort", fake)
    monkeypatch.setattr(providers, "_REGISTERED", {})
    library = _library(tmp_path)
    config = ProviderConfig(name="OpenVINOExecutionProvider", options={"device_type": "GPU"}, library=library)
    choice = choose_providers("auto", config)
    assert choice == ProviderChoice(("OpenVINOExecutionProvider", CPU), ({"device_type": "GPU"}, {}),
                                    requested="OpenVINOExecutionProvider", plugin=True,
                                    given={"device_type": "GPU"}, library=library)
    assert plugin_version(choice) == {"OpenVINOExecutionProvider": "1.8.1"}
    assert plugin_version(choose_providers("cpu")) == {}
    choose_providers("auto", config)  # the same library again: registered once
    assert len(fake.registered) == 1
    # once registered, the provider is known by name alone
    assert choose_providers("auto", ProviderConfig(name="OpenVINOExecutionProvider")).plugin
    # a process that has not registered it (a Ray worker) registers it before its first session
    monkeypatch.setattr(providers, "_REGISTERED", {})
    options = SimpleNamespace(added=[], add_provider_for_devices=lambda d, o: options.added.append((d, o)))
    monkeypatch.setattr(fake, "InferenceSession", lambda model, opts: ("session", model), raising=False)
    assert choice.session(b"model", options) == ("session", b"model")
    assert len(fake.registered) == 2 and options.added == [([device], {"device_type": "GPU"})]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("providers")
    model = tiny_cnn()
    onnx.save(model, folder / "tiny.onnx")
    labeled_npz(model, folder / "data.npz", n=60)
    return folder


def _bench(capsys, folder: Path, out: str, *flags):
    return run_cli(capsys, "bench", folder / "tiny.onnx", "--data", folder / "data.npz", "--snr", "10",
                   "--seeds", "1", "--out", folder / out, *flags)


def test_cpu_by_name_keeps_the_keys_and_counts_of_device_cpu(capsys, tiny_run):
    assert _bench(capsys, tiny_run, "device")[0] == 0
    assert _bench(capsys, tiny_run, "named", "--provider", CPU)[0] == 0
    columns = ["key", "provider", "top1_correct", "top5_correct"]
    device = pl.read_parquet(tiny_run / "device" / "trials.parquet").select(columns)
    named = pl.read_parquet(tiny_run / "named" / "trials.parquet").select(columns)
    assert device.height == 2 and device.equals(named)
    assert named["provider"].to_list() == [CPU, CPU]
    facts = json.loads((tiny_run / "named" / "bench.json").read_text(encoding="utf-8"))
    assert facts["provider_nodes"] == {"provider": CPU, "nodes": 5, "total": 5, "share": 1.0, "by_provider": {CPU: 5}}


def _contexts(rows: pl.DataFrame) -> list[dict]:
    """The ``context`` column as dicts (JSON text, or a struct column: an object empty in every row, here
    ``provider_options`` without options, has no field to type and is left out, docs/outputs.md)."""
    return [{"provider_options": {}, **(json.loads(c) if isinstance(c, str) else c)} for c in rows["context"].to_list()]


def test_provider_options_enter_the_key_and_the_rows(capsys, tiny_run):
    assert _bench(capsys, tiny_run, "plain", "--provider", CPU)[0] == 0
    code, out, err = _bench(capsys, tiny_run, "opts", "--provider", CPU, "--provider-option", "some_option=1")
    assert code == 0
    # ONNX Runtime drops an option the CPU provider does not know without a word: onnxnoise says so (fresh22 #12)
    assert ("CPUExecutionProvider does not report the option(s) 'some_option' given with --provider-option: ONNX "
            "Runtime ignores an option a provider does not know") in " ".join((out + err).split())
    plain = pl.read_parquet(tiny_run / "plain" / "trials.parquet")
    rows = pl.read_parquet(tiny_run / "opts" / "trials.parquet")
    assert [(c["provider"], c["provider_options"]) for c in _contexts(rows)] == [(CPU, {"some_option": "1"})] * 2
    assert [(c["provider"], c["provider_options"]) for c in _contexts(plain)] == [(CPU, {})] * 2
    assert set(rows["key"]).isdisjoint(set(plain["key"]))
    assert rows["top1_correct"].to_list() == plain["top1_correct"].to_list()  # an option the CPU provider ignores


@pytest.mark.skipif("AzureExecutionProvider" not in ort.get_available_providers(),
                    reason="this onnxruntime build has no AzureExecutionProvider")
def test_a_provider_that_runs_no_node_exits_2_with_one_line(capsys, tiny_run):
    """The Azure provider of the CPU onnxruntime wheel runs no standard operator: all 5 nodes go to the CPU."""
    code, _, err = _bench(capsys, tiny_run, "azure", "--provider", "AzureExecutionProvider")
    assert code == 2
    assert one_line(err) == ("onnxnoise: error: `AzureExecutionProvider` runs none of the model's 5 nodes (they "
                             "run on: CPUExecutionProvider 5); choose a provider that supports this model's "
                             "operators, or drop --provider")


def test_the_demo_runs_10_nodes_as_docs_providers_md_says(capsys, demo_files, tmp_path):
    """fresh22 finding 14: docs/providers.md gave only the tiny test CNN's 5 nodes; a newcomer runs the demo, whose
    optimized graph has 10, all on the CPU provider. The doc quotes the demo's numbers; this holds them."""
    model, data = demo_files
    code, _, err = run_cli(capsys, "bench", model, "--data", data, "--provider", CPU, "--snr", "10", "--seeds", "1",
                           "--limit", "20", "--out", tmp_path / "demo")
    assert code == 0, err
    nodes = json.loads((tmp_path / "demo" / "bench.json").read_text())["provider_nodes"]
    assert nodes == {"provider": CPU, "nodes": 10, "total": 10, "share": 1.0, "by_provider": {CPU: 10}}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text(encoding="utf-8")
    assert '`"nodes": 10, "total": 10, "share": 1.0`' in doc and "runs none of the model's 10 nodes" in doc
