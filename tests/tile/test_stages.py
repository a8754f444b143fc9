"""DAC, ADC, tile split and read noise on built one-op models whose right outputs are known in advance."""

import numpy as np
import pytest
from onnx import helper, numpy_helper

from onnxnoise.tile import TileSettings, noise_seed, step
from onnxnoise.tile.rewrite import analog_ops
from onnxnoise.model import list_layers
from tests.tile._tile_models import fixed, one_op, run, session, staged, weights_of


def test_step_is_aihwkit_full_range_resolution():
    # aihwkit inp_res = 1 / (2**8 - 2): 254 steps over [-r, r], 255 levels.
    assert step(1.0, 8) == pytest.approx(2 / 254)
    assert step(3.0, 3) == pytest.approx(1.0)


def test_dac_rounds_to_the_grid_and_counts_clips():
    model = one_op("MatMul", {"w": np.eye(4, dtype=np.float32)}, ["x", "w"], ["N", 4])
    x = np.array([[0.1, 0.2, 0.45, -0.9], [1.5, -2.0, 0.7, -0.3]], np.float32)
    result = staged(model, TileSettings(dac_bits=3), fixed("op", 1.0, [[0.0]]))
    out = run(result.model, x)
    # 3 bits, x_max 1: step 1/3, levels k/3 for k = -3..3; x/step = .3 .6 1.35 -2.7 | clip 3, clip -3, 2.1 -0.9
    k = np.array([[0, 1, 1, -3], [3, -3, 2, -1]], np.float32)
    assert np.array_equal(out["y"], k * np.float32(1 / 3))
    assert out["onnxnoise.tile/op/dac_clipped"] == 2 and out["onnxnoise.tile/op/dac_values"] == 8
    assert result.counters == {"onnxnoise.tile/op/dac_clipped": "dac_clipped",
                               "onnxnoise.tile/op/dac_values": "dac_values"}
    assert result.totals(out) == {"dac_clipped": 2, "dac_values": 8, "adc_clipped": 0, "adc_values": 0}


def test_a_layer_of_1000_rows_is_4_tiles_and_the_adc_clips_each_partial_sum():
    w = np.zeros((1000, 2), np.float32)
    w[:, 0] = np.repeat([1.0, -1.0, 1.0, -1.0, 0.0], [250, 250, 250, 230, 20])  # partial sums 250, -250, 250, -230
    w[:, 1] = 0.1                                                            # 25 in every tile
    model = one_op("MatMul", {"w": w}, ["x", "w"], ["N", 1000])
    settings = TileSettings(adc_bits=8, tile_rows=256)
    (site,) = analog_ops(model, list_layers(model), 256, weights_of(model))
    assert [site.op.rows(t) for t in range(site.op.tiles)] == [250, 250, 250, 250]  # ceil(1000 / 256) equal parts
    out = run(staged(model, settings, fixed("op", 1.0, [[240.0]] * 4, tile_rows=256)).model,
              np.ones((1, 1000), np.float32))
    grid, inverse = np.float32(step(240.0, 8)), np.float32(1 / step(240.0, 8))
    q = lambda p: np.round(np.float32(min(max(p, -240), 240)) * inverse) * grid  # noqa: E731
    expected = [q(250) + q(-250) + q(250) + q(-230), 4 * q(np.float32(25.0))]
    assert out["y"][0] == pytest.approx(expected, rel=1e-6)  # the tiles' sum in float32
    assert out["y"][0, 0] != pytest.approx(20.0, abs=1.0)  # the full sum (20) would not have clipped
    assert out["onnxnoise.tile/op/adc_clipped"] == 3 and out["onnxnoise.tile/op/adc_values"] == 8


def test_column_scope_quantizes_each_column_on_its_own_range_and_a_zero_range_stays_exact():
    w = np.eye(3, dtype=np.float32)
    model = one_op("MatMul", {"w": w}, ["x", "w"], ["N", 3])
    x = np.array([[0.26, 0.26, 0.26]], np.float32)
    cal = fixed("op", 1.0, [[1.0, 0.5, 0.0]], adc_scope="column")
    out = run(staged(model, TileSettings(adc_bits=2, adc_scope="column"), cal).model, x)
    # 2 bits: levels -r, 0, r; 0.26 -> 0 on range 1, -> 0.5 on range 0.5, exact on range 0.
    assert out["y"][0].tolist() == pytest.approx([0.0, 0.5, 0.26])
    # 0.6 clips column 1 (range 0.5) only: 2 of 6 values
    wide = run(staged(model, TileSettings(adc_bits=2, adc_scope="column"), cal).model, np.full((2, 3), 0.6, np.float32))
    assert wide["onnxnoise.tile/op/adc_clipped"] == 2 and wide["onnxnoise.tile/op/adc_values"] == 6
    assert cal.dead == ("op: tile 0 ADC, 1 of 3 columns",)


def _noise_model(k=64, n=32, seed=3):
    w = np.random.default_rng(seed).normal(size=(k, n)).astype(np.float32)
    return one_op("MatMul", {"w": w}, ["x", "w"], ["N", k]), w


def test_read_noise_is_new_per_image_and_per_run_and_repeats_in_a_fresh_session():
    model, _ = _noise_model()
    stagedm = staged(model, TileSettings(read_noise=0.1), fixed("op", 1.0, [[0.0]])).model
    x = np.repeat(np.random.default_rng(0).normal(size=(1, 64)).astype(np.float32), 2, axis=0)
    first = session(stagedm)
    a, b = first.run(["y"], {"x": x})[0], first.run(["y"], {"x": x})[0]
    assert not np.allclose(a[0], a[1])      # two identical images in one batch
    assert not np.allclose(a, b)            # a second run of the session
    again = session(stagedm)
    assert np.array_equal(again.run(["y"], {"x": x})[0], a) and np.array_equal(again.run(["y"], {"x": x})[0], b)
    other = session(staged(model, TileSettings(read_noise=0.1), fixed("op", 1.0, [[0.0]]), seed=1).model)
    assert not np.allclose(other.run(["y"], {"x": x})[0], a)  # another seed


@pytest.mark.parametrize("scope", ["layer", "column"])
def test_read_noise_std_is_read_noise_times_x_max_times_w_max_per_tile(scope):
    model, w = _noise_model()
    x_max, sigma = 2.0, 0.05
    settings = TileSettings(read_noise=sigma, tile_rows=16, adc_scope=scope)
    width = 32 if scope == "column" else 1
    noisy = run(staged(model, settings, fixed("op", x_max, [[0.0] * width] * 4, tile_rows=16, adc_scope=scope)).model,
                np.zeros((4000, 64), np.float32))["y"]   # zero inputs: the output is the noise alone
    w_max = np.abs(w).reshape(4, 16, 32).max(axis=1)     # (tiles, columns)
    if scope == "layer":
        w_max = np.broadcast_to(w_max.max(axis=1, keepdims=True), w_max.shape)
    expected = sigma * x_max * np.sqrt((w_max.astype(np.float64) ** 2).sum(axis=0))  # 4 independent tiles
    # 4000 draws per column: the std's relative standard error is 1/sqrt(8000) = 1.1%; allow 5%.
    assert noisy.std(axis=0) == pytest.approx(expected, rel=0.05)
    assert noisy.mean() == pytest.approx(0.0, abs=3 * expected.mean() / np.sqrt(noisy.size))


def test_noise_seeds_are_24_bit_and_depend_on_seed_layer_and_tile():
    seeds = {noise_seed(s, layer, t) for s in (0, 1) for layer in ("a", "b") for t in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**24 for s in seeds)
    assert noise_seed(0, "a", 0) == noise_seed(0, "a", 0)


def test_off_settings_return_the_model_itself_and_missing_calibration_is_refused():
    model, _ = _noise_model()
    result = staged(model, TileSettings(), None)
    assert result.model is model and result.counters == {}
    with pytest.raises(ValueError, match="need a calibration"):
        staged(model, TileSettings(dac_bits=8), None)
    with pytest.raises(ValueError, match="made with tile_rows = 0, the stages have 16"):
        staged(model, TileSettings(adc_bits=8, tile_rows=16), fixed("op", 1.0, [[1.0]]))
    with pytest.raises(ValueError, match="made with adc_scope = 'layer', the stages have 'column'"):
        staged(model, TileSettings(adc_bits=8, adc_scope="column"), fixed("op", 1.0, [[1.0]]))
    with pytest.raises(ValueError, match="recalibrate with the same tile_rows"):  # ranges of another tiling
        staged(model, TileSettings(adc_bits=8, tile_rows=16), fixed("op", 1.0, [[1.0]], tile_rows=16))
    old = one_op("MatMul", {"w": np.eye(2, dtype=np.float32)}, ["x", "w"], ["N", 2], opset=9)
    with pytest.raises(ValueError, match="need opset 11 or later, the model has 9"):
        staged(old, TileSettings(tile_rows=1), None)


@pytest.mark.parametrize("opset", [11, 17])
def test_clip_counts_are_exact_on_a_4d_output_and_a_1d_input(opset):
    """The count sums float32 along the last axis, then float64: known counts at both ReduceSum forms."""
    x = np.random.default_rng(5).uniform(-1.0, 1.0, size=(3, 2, 5, 7)).astype(np.float32)
    x.reshape(-1)[::4] = 2.0                                   # 53 of 210 inputs above x_max = 1.5
    model = one_op("Conv", {"w": np.ones((1, 2, 1, 1), np.float32)}, ["x", "w"], [3, 2, 5, 7], opset=opset)
    out = run(staged(model, TileSettings(dac_bits=8, adc_bits=8), fixed("op", 1.5, [[2.5]])).model, x)
    assert out["onnxnoise.tile/op/dac_clipped"] == 53 and out["onnxnoise.tile/op/dac_values"] == 210
    grid, inverse = np.float32(step(1.5, 8)), np.float32(1 / step(1.5, 8))
    dac = np.round(np.clip(x, -1.5, 1.5) * inverse) * grid    # the DAC's output, the 1x1 conv sums its 2 channels
    expected_adc = int((np.abs(dac.sum(axis=1)) > 2.5).sum())
    assert out["onnxnoise.tile/op/adc_clipped"] == expected_adc > 0
    quiet = run(staged(model, TileSettings(dac_bits=8, adc_bits=8), fixed("op", 2.5, [[5.0]])).model, x)
    assert quiet["onnxnoise.tile/op/dac_clipped"] == 0 and quiet["onnxnoise.tile/op/adc_clipped"] == 0
    vector = one_op("MatMul", {"w": np.eye(5, dtype=np.float32)}, ["x", "w"], [5], opset=opset)
    out = run(staged(vector, TileSettings(dac_bits=4), fixed("op", 1.0, [[0.0]])).model,
              np.array([0.5, -3.0, 1.0, 1.01, -0.2], np.float32))
    assert out["onnxnoise.tile/op/dac_clipped"] == 2 and out["onnxnoise.tile/op/dac_values"] == 5


def test_one_noise_std_is_the_generators_scale_bit_for_bit_the_unit_draw_times_the_std():
    """Layer scope: RandomNormalLike(scale = s) equals RandomNormalLike(scale = 1) * float32(s), every bit."""
    model, w = _noise_model()
    x_max, sigma = 2.0, 0.05
    out = session(staged(model, TileSettings(read_noise=sigma), fixed("op", x_max, [[0.0]])).model)
    zeros = np.zeros((7, 64), np.float32)
    draws = [out.run(["y"], {"x": zeros})[0] for _ in range(2)]
    unit = one_op("RandomNormalLike", {}, ["x"], [7, 32], seed=float(noise_seed(0, "op", 0)))
    reference = session(unit)
    s = np.float32(sigma * x_max * np.abs(w.astype(np.float64)).max())
    for draw in draws:
        assert np.array_equal(draw, reference.run(["y"], {"x": np.zeros((7, 32), np.float32)})[0] * s)


def test_a_relu_fed_dac_counts_without_abs_and_the_same_clips_as_abs():
    """After a Relu the DAC counter is ``x > r`` (no Abs node); other inputs keep ``|x| > r``: known counts."""
    relu = one_op("Relu", {}, ["x"], ["N", 4], name="act")
    relu.graph.node[0].output[0] = "h"
    relu.graph.node.append(helper.make_node("MatMul", ["h", "w"], ["y"], name="op"))
    relu.graph.initializer.append(numpy_helper.from_array(np.eye(4, dtype=np.float32), "w"))
    x = np.array([[-3.0, 0.5, 1.5, 2.0], [-0.5, -1.2, 0.9, np.nan]], np.float32)  # relu: 0 .5 1.5 2 | 0 0 .9 nan
    settings, ranges = TileSettings(dac_bits=8), fixed("op", 1.0, [[0.0]])
    fed = staged(relu, settings, ranges).model
    assert not any(n.op_type == "Abs" for n in fed.graph.node)
    assert run(fed, x)["onnxnoise.tile/op/dac_clipped"] == 2      # 1.5 and 2.0; NaN > 1 is false, as |NaN| > 1
    plain = one_op("MatMul", {"w": np.eye(4, dtype=np.float32)}, ["x", "w"], ["N", 4])
    direct = staged(plain, settings, ranges).model
    assert sum(n.op_type == "Abs" for n in direct.graph.node) == 1
    assert run(direct, x)["onnxnoise.tile/op/dac_clipped"] == 4   # -3, 1.5, 2.0, -1.2
