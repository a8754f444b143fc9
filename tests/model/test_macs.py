"""MACs per node from shapes, and the MAC ideal of prefix reuse, on models whose costs are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.engine.prefix import GraphSplitter
from onnxnoise.errors import GraphError
from onnxnoise.model.macs import node_macs, prefix_reuse_ideal
from tests._builders import image_classifier, tiny_cnn


def three_convs():
    """conv1 3->4 3x3 pad 1 (8x8 out), relu, conv2 4->8 3x3 stride 2 pad 1 (4x4 out), relu, conv3 8->10 1x1, pool."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name) for name, shape in
             (("w1", (4, 3, 3, 3)), ("w2", (8, 4, 3, 3)), ("w3", (10, 8, 1, 1)))]
    inits.append(numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat"))
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], name="conv3"),
        helper.make_node("GlobalAveragePool", ["c3"], ["p"], name="pool"),
        helper.make_node("Reshape", ["p", "flat"], ["logits"], name="flatten"),
    ]
    return image_classifier(nodes, inits, "three_convs", size=8, classes=10)


# conv1: 4 x 8 x 8 outputs x (3 x 3 x 3) = 6,912; conv2: 8 x 4 x 4 x (4 x 3 x 3) = 4,608; conv3: 10 x 4 x 4 x 8 = 1,280
CONV_MACS = [6912, 0, 4608, 0, 1280, 0, 0]


def test_node_macs_of_three_convs_are_the_hand_computed_ones():
    assert node_macs(three_convs()) == CONV_MACS


def test_the_mac_ideal_of_one_trial_per_conv_is_full_over_mean_suffix():
    model = three_convs()
    splitter = GraphSplitter(model, output_name="logits")
    positions = [splitter.position([w]) for w in ("w1", "w2", "w3")]
    assert positions == [0, 2, 4]
    macs = node_macs(model)
    # one group: suffixes 12,800 (the whole model) + 5,888 + 1,280 = 19,968 MACs, and the clean prefix up to
    # conv3 once (6,912 + 4,608 = 11,520): 3 x 12,800 / 31,488 = 1.219512
    assert prefix_reuse_ideal(macs, [positions]) == pytest.approx(3 * 12800 / 31488, rel=1e-12)
    # each trial alone (three groups of one): prefixes 0, 6,912 and 11,520 -> 38,400 / 38,400
    assert prefix_reuse_ideal(macs, [[p] for p in positions]) == pytest.approx(1.0, rel=1e-12)
    # 100 passes over the layers in one group: the shared prefix vanishes, 12,800 / mean suffix 6,656
    assert prefix_reuse_ideal(macs, [positions * 100]) == pytest.approx(300 * 12800 / (11520 + 100 * 19968))
    assert prefix_reuse_ideal(macs, [[0]]) == 1.0  # the full model: nothing to gain


def test_gemm_counts_its_reduced_dimension():
    # tiny_cnn: conv 4 x 8 x 8 x 27 = 6,912; fc (Gemm, transB) 10 outputs x K = 4
    assert node_macs(tiny_cnn()) == [6912, 0, 0, 0, 0, 0, 40]


def test_matmul_and_transposed_gemm():
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "m"], ["h"]),  # [N, 3] x [3, 6]: 6 x 3 = 18
             helper.make_node("Transpose", ["h"], ["ht"], perm=[1, 0]),
             helper.make_node("Gemm", ["ht", "g"], ["logits"], transA=1)]  # A^T [N, 6] x [6, 10]: 10 x 6 = 60
    inits = [numpy_helper.from_array(np.ones((3, 6), np.float32), "m"),
             numpy_helper.from_array(np.ones((6, 10), np.float32), "g")]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [5, 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [5, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert node_macs(model) == [0, 0, 18, 0, 60]


def test_unknown_spatial_shape_is_a_graph_error():
    model = three_convs()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    with pytest.raises(GraphError, match="shape of 'c1' is unknown"):
        node_macs(model)


@pytest.mark.parametrize(("macs", "groups", "message"), [(CONV_MACS, [[]], "no trial positions"),
                                                         (CONV_MACS, [[0], [7]], "outside the graph"),
                                                         ([0, 0], [[1]], "no multiply-accumulates")])
def test_ideal_refuses_what_has_no_meaning(macs, groups, message):
    with pytest.raises(ValueError, match=message):
        prefix_reuse_ideal(macs, groups)
