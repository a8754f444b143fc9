"""The time ideal of prefix reuse from measured per-node costs, on a built model whose costs are set by hand."""

from __future__ import annotations

import pytest

from onnxnoise.engine.prefix import GraphSplitter
from onnxnoise.model.macs import node_macs, prefix_reuse_ideal
from onnxnoise.model.node_cost import measured_ideal
from tests.model.test_macs import three_convs

# three_convs: conv1, relu1, conv2, relu2, conv3, pool, flatten. Run A: relu1 (8x8, the high-resolution layer)
# costs 6 s; run B: 2 s.
RUN_A = [4.0, 6.0, 3.0, 1.0, 1.0, 0.5, 0.5]
RUN_B = [4.0, 2.0, 3.0, 1.0, 1.0, 0.5, 0.5]


def _positions():
    splitter = GraphSplitter(three_convs(), output_name="logits")
    return [splitter.position([w]) for w in ("w1", "w2", "w3")]


def test_the_time_ideal_per_run_and_for_the_mean_costs():
    positions = _positions()
    assert positions == [0, 2, 4]
    spread = measured_ideal([RUN_A, RUN_B], [positions])
    # run A: total 16; clean prefix up to conv3 once: 4 + 6 + 3 + 1 = 14; suffixes 16 + 6 + 2 = 24 -> 48 / 38
    # run B: total 12; prefix 10; suffixes 12 + 6 + 2 = 20 -> 36 / 30 = 1.2
    # mean costs 4, 4, 3, 1, 1, .5, .5: total 14; prefix 12; suffixes 14 + 6 + 2 = 22 -> 42 / 34
    assert spread.per_run == pytest.approx((48 / 38, 1.2), rel=1e-12)
    assert spread.mean == pytest.approx(42 / 34, rel=1e-12)
    assert (spread.low, spread.high) == (pytest.approx(1.2), pytest.approx(48 / 38))


def test_time_spent_outside_macs_in_early_layers_puts_the_limit_above_the_mac_ideal():
    positions = _positions()
    mac = prefix_reuse_ideal(node_macs(three_convs()), [positions])  # 3 x 12,800 / 31,488 = 1.2195
    assert mac == pytest.approx(1.219512, rel=1e-6)
    timed = measured_ideal([RUN_A], [positions]).mean
    assert timed == pytest.approx(1.263158, rel=1e-6) and timed > mac
    # time proportional to MACs gives the MAC ideal back
    assert measured_ideal([node_macs(three_convs())], [positions]).mean == pytest.approx(mac, rel=1e-12)


def test_the_docstring_example():
    spread = measured_ideal([[1, 2, 3], [3, 2, 1]], [[0, 1, 2]])
    assert spread.per_run == pytest.approx((18 / 17, 1.2)) and spread.mean == pytest.approx(1.125)


@pytest.mark.parametrize(("runs", "message"), [([], "no measured run"),
                                               ([[1.0, 2.0], [1.0]], "runs of different lengths"),
                                               ([[1.0, -2.0]], "negative node cost"),
                                               ([[0.0, 0.0]], "costs sum to 0")])
def test_measured_ideal_refuses_what_has_no_meaning(runs, message):
    with pytest.raises(ValueError, match=message):
        measured_ideal(runs, [[1]])
