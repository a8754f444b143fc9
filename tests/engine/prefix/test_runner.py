"""Prefix reuse (onnxnoise.engine.prefix): split points, cuts, and equality with full-model evaluation."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.config import NoiseConfig, RunConfig
from onnxnoise.data import resolve_data_config
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine import runtime
from onnxnoise.engine.evaluate import EvalSet, evaluate
from onnxnoise.engine.metrics import count_correct
from onnxnoise.engine.prefix import GraphSplitter, PrefixRunner
from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.model import list_layers
from onnxnoise.noise import draw_noise, make_noise_model

from tests._builders import tiny_cnn

GAUSS = make_noise_model("gaussian-snr")

#: Max |logit difference| / max |logit| allowed between prefix reuse and the full model.
REL_TOL = 1e-5


def _residual_mlp(seed: int = 0, *, image_input: bool = False) -> onnx.ModelProto:
    """x -> MatMul W1 -> h1 -> Relu -> h2 -> MatMul W2 -> h3; Add(h3, h1) -> MatMul W3 -> logits.

    ``h1`` is a residual branch: split at the W2 MatMul, it lives across the cut. With
    ``image_input`` the graph input is ``image`` (N, 1, 6, 1), an NHWC one-channel image that a
    leading Flatten turns into ``x``, so an :class:`EvalSet` can feed it as it is.
    """
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)
             for name, shape in [("w1", (6, 8)), ("w2", (8, 8)), ("w3", (8, 4))]]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="mm2"),
        helper.make_node("Add", ["h3", "h1"], ["h4"], name="residual"),
        helper.make_node("MatMul", ["h4", "w3"], ["logits"], name="mm3"),
    ]
    graph_input = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
    if image_input:
        nodes.insert(0, helper.make_node("Flatten", ["image"], ["x"], name="flatten", axis=1))
        graph_input = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 6, 1])
    graph = helper.make_graph(
        nodes, "residual_mlp",
        [graph_input],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _eval_set(images: np.ndarray, labels: np.ndarray, batch_size: int) -> EvalSet:
    config = resolve_data_config("cifar", resize=None, crop=None, channels=images.shape[-1], layout="NHWC",
                                 mean=(0.0,), std=(1.0,), scale=1.0)
    return EvalSet(images, labels, config, batch_size=batch_size)


def test_residual_branch_crosses_the_cut():
    model = _residual_mlp()
    splitter = GraphSplitter(model, output_name="logits")
    assert splitter.position(["w2"]) == 2
    assert splitter.cut(2) == ("h1", "h2")  # the residual h1 and the MatMul input h2
    assert splitter.cut(0) == ("x",)
    assert splitter.position(["w1", "w3"]) == 0
    assert splitter.position([]) == len(splitter)
    suffix = splitter.submodel(2, len(splitter), ["logits"])
    assert sorted(i.name for i in suffix.graph.input) == ["h1", "h2"]
    assert [t.name for t in suffix.graph.initializer] == ["w2", "w3"]
    onnx.checker.check_model(suffix)


def test_residual_mlp_prefix_equals_full():
    model = _residual_mlp(image_input=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (37, 1, 6, 1), dtype=np.uint8)  # (N, H, W, C), flattened by the model
    labels = rng.integers(0, 4, 37)
    data = _eval_set(images, labels, batch_size=8)
    layers = list_layers(model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    factory = SessionFactory(model, inits, input_name="image", output_name="logits", device="cpu")
    runner = PrefixRunner(model, data, "image", "logits", device="cpu")
    for layer in [*layers, *reversed(layers)]:  # forward (advances) then backward (rebuilds)
        rep = draw_noise(GAUSS, 2.0, 3, [layer], inits).arrays
        full = np.concatenate([factory.create(rep).run(x)[: len(y)] for x, y in data.batches()])
        split = np.concatenate([s for s, _ in runner.iter_scores(rep)])
        np.testing.assert_allclose(split, full, rtol=0, atol=REL_TOL * np.abs(full).max())
        assert runner.evaluate(rep) == evaluate(factory.create(rep), data)
    assert runner.stats.advances >= 1 and runner.stats.rebuilds >= 1


def test_suffix_factories_read_no_weight_from_the_model(monkeypatch):
    """Each split position's factory takes the clean arrays parsed once (VGG16: 3.9 s per position before)."""
    model = _residual_mlp(image_input=True)
    rng = np.random.default_rng(1)
    data = _eval_set(rng.integers(0, 256, (9, 1, 6, 1), dtype=np.uint8), rng.integers(0, 4, 9), batch_size=8)
    runner = PrefixRunner(model, data, "image", "logits", device="cpu")
    parsed = []
    real = runtime.numpy_helper.to_array
    monkeypatch.setattr(runtime.numpy_helper, "to_array", lambda t, *a: parsed.append(t.name) or real(t, *a))
    for position in range(1, len(runner.splitter)):
        factory = runner.sessions.suffix_factory(position)
        assert all(n in factory._external for n in ("w2", "w3") if position <= 2)
    assert parsed == []


def test_batchnorm_split_moves_before_its_conv():
    model = tiny_cnn()
    splitter = GraphSplitter(model, output_name="logits")
    assert splitter.position(["bn.var"]) == 0  # conv (node 0) feeds bn only: keep Conv+BN fusable
    assert splitter.position(["fc.weight"]) == 6


def test_memory_limit_spills_the_cut_to_disk(tmp_path):
    """A 1-byte bound keeps nothing in memory: every batch of the cut goes to disk, counts unchanged."""
    model = tiny_cnn()
    rng = np.random.default_rng(0)
    data = _eval_set(rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8), rng.integers(0, 10, 20), 8)
    data = EvalSet(data.images, data.labels, resolve_data_config("cifar", resize=None, crop=None), batch_size=8)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    factory = SessionFactory(model, inits, input_name="input", output_name="logits", device="cpu")
    runner = PrefixRunner(model, data, "input", "logits", device="cpu", memory_limit_bytes=1, spill_dir=tmp_path)
    fc = list_layers(model)[-1]
    rep = draw_noise(GAUSS, 5.0, 0, [fc], inits).arrays
    assert runner.evaluate(rep) == evaluate(factory.create(rep), data)
    assert (runner.stats.spilled_batches, runner.stats.kept_batches, runner.stats.fallbacks) == (3, 0, 0)
    assert runner.stats.peak_kept_bytes == 0


@pytest.mark.parametrize("keep_batchnorm, snrs", [(False, (10.0, 2.0)), (True, (2.0,))])
def test_resnet20_every_layer_equals_full(keep_batchnorm, snrs, cifar_resnet_onnx, shared_data):
    """Every layer of ResNet20 (BN folded and kept), CIFAR-10 subset: counts equal, logits within 1e-5."""
    model = cifar_resnet_onnx(20, keep_batchnorm=keep_batchnorm)
    config = RunConfig(model=model, data=shared_data("cifar-10-batches-py"), device="cpu", limit=200,
                       batch_size=100, noise=NoiseConfig(strengths=snrs, seeds=(7,)))
    context = prepare_context(config)
    runner = context.prefix_runner()
    assert context.prefix_runner() is runner  # built once per run
    noise = config.noise
    worst = 0.0
    for layer in context.selected:
        for snr in snrs:
            rep = draw_noise(noise.noise_model, snr, 7, [layer], context.initializers, noise.policies).arrays
            session = context.factory.create(rep)
            full = np.concatenate([session.run(x)[: len(y)] for x, y in context.data.batches()])
            split = np.concatenate([s for s, _ in runner.iter_scores(rep)])
            rel = float(np.abs(split - full).max() / np.abs(full).max())
            worst = max(worst, rel)
            assert (split.argmax(1) == full.argmax(1)).all(), (layer.name, snr)
            assert rel <= REL_TOL, (layer.name, snr, rel)
            labels = context.data.labels
            assert count_correct(split, labels) == count_correct(full, labels), layer.name
            assert runner.evaluate(rep) == evaluate(session, context.data), layer.name
    assert runner.stats.fallbacks == 0
    assert runner.stats.advances >= len(context.selected) // 2 - 1
