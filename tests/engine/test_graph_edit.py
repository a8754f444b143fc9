"""graph_edit.py + the factory and session it feeds: a rewritten skeleton per key, counters fetched and summed."""

from __future__ import annotations

import pickle

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from onnxnoise.engine.graph_edit import GraphEdit, StagedSkeletons
from onnxnoise.engine.runtime import SessionFactory
from onnxnoise.model import get_initializers

from tests._builders import tiny_cnn

#: The test rewrite's counter: inputs above 0.5 (a stand-in for a DAC's clip count).
COUNTER = "test.above"


def _count_above(model: onnx.ModelProto, threshold: float = 0.5) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A tiny rewrite: an extra int64 output counting input values above ``threshold``."""
    graph = model.graph
    graph.initializer.append(helper.make_tensor("test.t", TensorProto.FLOAT, [], [threshold]))
    graph.node.extend([helper.make_node("Greater", ["input", "test.t"], ["test.gt"]),
                       helper.make_node("Cast", ["test.gt"], ["test.i"], to=TensorProto.INT64),
                       helper.make_node("ReduceSum", ["test.i"], [COUNTER], keepdims=0)])
    graph.output.append(helper.make_tensor_value_info(COUNTER, TensorProto.INT64, []))
    return model, {COUNTER: "dac_clipped"}


def _factory() -> tuple[onnx.ModelProto, SessionFactory]:
    model = tiny_cnn()
    return model, SessionFactory(model, ["conv.weight", "fc.weight"], input_name="input", output_name="logits",
                                 device="cpu")


def _x(n: int = 5) -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 1, (n, 3, 8, 8)).astype(np.float32)


def test_an_edited_session_gives_the_same_scores_and_tallies_its_counter_per_run():
    model, factory = _factory()
    x = _x()
    clean = factory.create()
    edit = GraphEdit(key="above", apply=_count_above)
    staged = factory.create(edit=edit)
    assert staged.counters == {COUNTER: "dac_clipped"} and clean.counters == {}
    np.testing.assert_array_equal(staged.run(x), clean.run(x))  # the rewrite leaves the scores alone
    staged.run(x[:2])
    assert edit.tally == {"dac_clipped": int((x > 0.5).sum() + (x[:2] > 0.5).sum())}
    assert clean.tally == {}
    bound = factory.create(edit=GraphEdit(key="above", apply=_count_above))  # IOBinding path (CUDA's), on the CPU
    np.testing.assert_array_equal(bound.run_bound(ort.OrtValue.ortvalue_from_numpy(x)), clean.run(x))
    assert bound.tally == {"dac_clipped": int((x > 0.5).sum())}


def test_replacements_land_in_the_edited_skeleton():
    model, factory = _factory()
    weights = get_initializers(model)
    noisy = {"fc.weight": weights["fc.weight"] * 2.0}
    x = _x()
    plain = factory.create(noisy).run(x)
    edited = factory.create(noisy, edit=GraphEdit(key="above", apply=_count_above)).run(x)
    np.testing.assert_array_equal(edited, plain)
    assert not np.array_equal(plain, factory.create().run(x))  # the doubled weight is in effect


def test_skeletons_are_rewritten_once_per_key_and_the_oldest_dropped():
    calls = []

    def apply(model):
        calls.append(1)
        return _count_above(model)

    skeletons = StagedSkeletons(tiny_cnn().SerializeToString(), kept=2)
    for key in ("a", "a", "b", "a", "c", "b"):
        skeletons.get(GraphEdit(key=key, apply=apply))
    # a (rewrite), a (kept), b (rewrite), a (kept, now newest), c (rewrite, drops b), b (rewrite again)
    assert len(calls) == 4 and len(skeletons) == 2


def test_a_session_factory_with_staged_skeletons_pickles_for_ray_workers():
    """A Ray worker receives the run context, its factory and this cache with it: the cache's thread lock must not
    travel (it made every `sweep --executor ray` fail with "cannot pickle '_thread.lock' object")."""
    model, factory = _factory()
    x = _x()
    edit = GraphEdit(key="above", apply=_count_above)
    before = factory.create(edit=edit).run(x)  # the cache now holds a rewritten skeleton
    copy = pickle.loads(pickle.dumps(factory))
    again = GraphEdit(key="above", apply=_count_above)
    np.testing.assert_array_equal(copy.create(edit=again).run(x), before)
    assert again.tally == {"dac_clipped": int((x > 0.5).sum())}
