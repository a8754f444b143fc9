"""Calibration: ranges equal numpy's on the same activations; lossless dict; fingerprint; dead layers."""

import importlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxnoise.model import list_layers
from onnxnoise.model.tiles import tile_chunks
from onnxnoise.tile.calibrate import MARGIN
from onnxnoise.tile import BINS, COLUMN_BINS, Calibration, TileSettings, calibrate
from tests.tile._tile_models import one_op, run, staged, weights_of

RNG = np.random.default_rng(11)
W1 = RNG.normal(size=(20, 6)).astype(np.float32)
W2 = RNG.normal(size=(6, 3)).astype(np.float32)
X = RNG.standard_t(3, size=(300, 20)).astype(np.float32)  # heavy tails: percentile and max differ


def _two_layers(w2=W2) -> onnx.ModelProto:
    """``y = relu(x @ W1) @ W2``, layers ``l1``, ``l2``."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="l1"), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="l2")]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _calibrate(settings, model=None):
    model = model or _two_layers()
    return calibrate(model, list_layers(model), [X[:128], X[128:256], X[256:]], input_name="x", settings=settings,
                     weights=weights_of(model))


#: Every measured range carries the calibration's margin (onnxnoise.tile.calibrate.MARGIN).
M = 1.0 + MARGIN


def _activations(w2=W2):
    h = X @ W1
    return {"l1": (X, W1), "l2": (np.maximum(h, 0), w2)}


def test_max_ranges_equal_numpy_per_layer_and_tile():
    cal = _calibrate(TileSettings(adc_bits=8, tile_rows=8))
    assert cal.images == 300 and cal.dead == ()
    for name, (x, w) in _activations().items():
        assert cal.layers[name].x_max == pytest.approx(np.abs(x).max() * M, rel=1e-6)  # l2: ORT's float32 matmul
        tiles = tile_chunks(w.shape[0], 1, 8)  # 20 rows: 7 + 7 + 6
        expected = [np.abs(x[:, a:b] @ w[a:b]).max() * M for a, b in tiles]
        assert [t[0] for t in cal.layers[name].adc] == pytest.approx(expected, rel=1e-6)


def test_column_scope_has_one_range_per_output_column():
    cal = _calibrate(TileSettings(adc_bits=8, adc_scope="column"))
    x, w = _activations()["l1"]
    assert cal.layers["l1"].adc[0] == pytest.approx(np.abs(x @ w).max(axis=0) * M, rel=1e-6)


@pytest.mark.parametrize("scope", ["layer", "column"])
def test_percentile_is_numpys_within_one_histogram_bin(scope):
    p = 99.0
    cal = _calibrate(TileSettings(adc_bits=8, calibration="percentile", percentile=p, adc_scope=scope))
    for name, (x, w) in _activations().items():
        values = np.abs(x).astype(np.float64)
        ours, exact, peak = cal.layers[name].x_max, np.percentile(values, p, method="inverted_cdf"), values.max()
        assert exact * M * (1 - 1e-6) <= ours <= (exact * (1 + 1e-6) + peak / BINS) * M and ours < peak
        out = np.abs((x @ w).astype(np.float64))
        out = out.reshape(-1, 1) if scope == "layer" else out
        for column, got in enumerate(cal.layers[name].adc[0]):
            ref = np.percentile(out[:, column], p, method="inverted_cdf")
            bins = BINS if scope == "layer" else COLUMN_BINS
            assert ref * M * (1 - 1e-6) <= got <= (ref * (1 + 1e-6) + out[:, column].max() / bins) * M


def test_fixed_adc_bound_is_bound_times_x_max_times_w_max():
    cal = _calibrate(TileSettings(adc_bits=8, adc_bound=10.0, tile_rows=8))
    x, w = _activations()["l1"]
    expected = [10.0 * float(np.abs(x).max()) * M * float(np.abs(w[a:b]).max()) for a, b in tile_chunks(20, 1, 8)]
    assert [t[0] for t in cal.layers["l1"].adc] == pytest.approx(expected, rel=1e-12)


def test_dict_round_trip_is_bit_for_bit_and_the_fingerprint_follows_the_ranges():
    cal = _calibrate(TileSettings(adc_bits=8, calibration="percentile", tile_rows=8))
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal and back.fingerprint() == cal.fingerprint()
    d = cal.to_dict()
    d["layers"]["l2"]["adc"][0][0] = np.nextafter(d["layers"]["l2"]["adc"][0][0], np.inf)
    assert Calibration.from_dict(d).fingerprint() != cal.fingerprint()
    with pytest.raises(ValueError, match="not a tile calibration"):
        Calibration.from_dict({"method": "max"})


def test_a_dead_layer_is_listed_and_stays_exact():
    model = _two_layers()
    dead_w1 = -np.abs(W1)  # x @ dead_w1 with x >= 0 ... make h <= 0 on every image: relu(h) = 0
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(dead_w1, "w1"))
    positive = np.abs(X)
    cal = calibrate(model, list_layers(model), [positive], input_name="x",
                    settings=TileSettings(dac_bits=8, adc_bits=8), weights=weights_of(model))
    assert cal.dead == ("l2: DAC input", "l2: tile 0 ADC")
    out = run(staged(model, TileSettings(dac_bits=8, adc_bits=8), cal).model, positive)
    assert np.array_equal(out["y"], np.zeros((300, 3), np.float32))
    assert out["onnxnoise.tile/l2/dac_clipped"] == 0 and out["onnxnoise.tile/l2/adc_clipped"] == 0


def test_no_images_is_refused():
    model = _two_layers()
    with pytest.raises(ValueError, match="at least one image"):
        calibrate(model, list_layers(model), [], input_name="x", settings=TileSettings(dac_bits=8),
                  weights=weights_of(model))


def test_batches_cut_to_bound_memory_give_the_same_ranges(monkeypatch):
    calibrate_module = importlib.import_module("onnxnoise.tile.calibrate")
    whole = _calibrate(TileSettings(adc_bits=8, calibration="percentile", percentile=99.0, tile_rows=8))
    monkeypatch.setattr(calibrate_module, "OBSERVE_BYTES", 1)  # one image per run
    assert _calibrate(TileSettings(adc_bits=8, calibration="percentile", percentile=99.0, tile_rows=8)) == whole


def _eye_model(rows=4):
    """``y = x @ I``: the staged output is the DAC's quantized input itself."""
    return one_op("MatMul", {"w": np.eye(rows, dtype=np.float32)}, ["x", "w"], ["N", rows])


def test_dac_bound_fixes_x_max_without_a_calibration_run():
    model = _eye_model()
    settings = TileSettings(dac_bits=8, dac_bound=3.0)
    cal = calibrate(model, list_layers(model), [], input_name="x", settings=settings, weights=weights_of(model))
    assert settings.measures is False and cal.images == 0  # no images needed: nothing measured
    assert cal.layers["op"].x_max == 3.0 and cal.dac_bound == 3.0 and cal.to_dict()["dac_bound"] == 3.0
    x = np.array([[-5.0, -3.0, 0.1, 4.0], [2.9, 3.5, -3.01, 0.0]], np.float32)
    out = run(staged(model, settings, cal).model, x)
    # clipped: |x| > 3 -> -5, 4, 3.5, -3.01 (the boundary -3.0 is inside)
    assert out["onnxnoise.tile/op/dac_clipped"] == 4 and out["onnxnoise.tile/op/dac_values"] == 8
    step = 2 * 3.0 / (2**8 - 2)  # 254 levels over [-3, 3]
    expected = np.round(np.clip(x.astype(np.float64), -3.0, 3.0) / step) * step
    assert out["y"] == pytest.approx(expected, abs=1e-6)
    assert out["y"][0, 2] == pytest.approx(4 * step, abs=1e-7)  # 0.1 / (6/254) = 4.23 -> 4 steps
    other = calibrate(model, list_layers(model), [], input_name="x", settings=TileSettings(dac_bits=8, dac_bound=2.5),
                      weights=weights_of(model))
    assert other.fingerprint() != cal.fingerprint()
    with pytest.raises(ValueError, match="dac_bound = 3.0"):
        staged(model, TileSettings(dac_bits=8), cal)  # ranges made for another DAC range


def test_dac_bound_sets_the_fixed_adc_bound_and_the_read_noise_scale():
    w = np.random.default_rng(5).normal(size=(8, 3)).astype(np.float32)
    model = one_op("MatMul", {"w": w}, ["x", "w"], ["N", 8])
    settings = TileSettings(adc_bits=8, adc_bound=10.0, read_noise=0.05, tile_rows=4, dac_bound=3.0)
    cal = calibrate(model, list_layers(model), [], input_name="x", settings=settings, weights=weights_of(model))
    w_max = np.abs(w).reshape(2, 4, 3).max(axis=(1, 2)).astype(np.float64)  # per tile
    assert [t[0] for t in cal.layers["op"].adc] == pytest.approx(10.0 * 3.0 * w_max, rel=1e-12)
    noise_only = TileSettings(read_noise=0.05, tile_rows=4, dac_bound=3.0)
    cal = calibrate(model, list_layers(model), [], input_name="x", settings=noise_only, weights=weights_of(model))
    y = run(staged(model, noise_only, cal).model, np.zeros((4000, 8), np.float32))["y"]  # the noise alone
    expected = 0.05 * 3.0 * np.sqrt((w_max ** 2).sum())  # two independent tiles
    # 4000 draws per column, 3 columns: the std's relative standard error is 1/sqrt(24000) = 0.65%; allow 5%.
    assert y.std(axis=0) == pytest.approx(np.full(3, expected), rel=0.05)


def test_dac_bound_with_a_calibrated_adc_measures_only_the_adc():
    fixed_dac = _calibrate(TileSettings(adc_bits=8, tile_rows=8, dac_bound=3.0))
    measured = _calibrate(TileSettings(adc_bits=8, tile_rows=8))
    assert fixed_dac.images == 300 and fixed_dac.dac_bound == 3.0
    for name in ("l1", "l2"):
        assert fixed_dac.layers[name].x_max == 3.0 and fixed_dac.layers[name].adc == measured.layers[name].adc
    assert "dac_bound" not in measured.to_dict()  # 0: the dict and fingerprint of earlier calibrations
