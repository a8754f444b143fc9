"""scripts/_bench_stages_extras.py: per-op profile sums, the fed-noise prototype model and its table noise."""

from __future__ import annotations

import numpy as np
import pytest

from onnxnoise.tile import TileSettings
from tests.tile._tile_models import fixed, one_op, session, staged


@pytest.fixture(scope="module")
def extras(load_script):
    return load_script("_bench_stages_extras")


def _event(node: str, op: str, dur: float) -> dict:
    return {"cat": "Node", "name": f"{node}_kernel_time", "dur": dur, "args": {"op_name": op}}


def test_op_times_sum_per_op_type_without_the_warm_up_runs(extras):
    events = [_event("a", "Mul", 100), _event("b", "Mul", 50), _event("c", "Conv", 900),   # run 1 (warm-up)
              _event("a", "Mul", 7), _event("b", "Mul", 3), _event("c", "Conv", 20),       # run 2
              _event("a", "Mul", 5), _event("b", "Mul", 1), _event("c", "Conv", 30),       # run 3
              {"cat": "Session", "name": "model_run", "dur": 999}, _event("c", "Conv", 1)]  # ... a 4th Conv run
    assert extras.op_times(events, skip_runs=1) == {"Mul": 16.0, "Conv": 51.0}
    assert extras.op_times(events, skip_runs=0) == {"Mul": 166.0, "Conv": 951.0}


def test_table_noise_is_unit_variance_quantiles_new_per_draw_and_seeded(extras):
    noise = extras.TableNoise({"n": ((3, 4), 0.5)}, seed=7)
    table = noise.tables["n"].astype(np.float64) / 0.5
    assert np.mean(table**2) == pytest.approx(1.0, abs=1e-6) and np.mean(table) == pytest.approx(0.0, abs=1e-7)
    assert np.max(np.abs(table)) == pytest.approx(4.325, abs=1e-3)        # Phi^-1(1 - 0.5 / 2**16), rescaled
    assert np.mean(table**4) == pytest.approx(2.9992, abs=1e-4)           # a normal's kurtosis is 3
    first, second = noise.draw(2)["n"], noise.draw(2)["n"]
    assert first.shape == (2, 3, 4) and first.dtype == np.float32 and not np.array_equal(first, second)
    assert np.array_equal(first, extras.TableNoise({"n": ((3, 4), 0.5)}, seed=7).draw(2)["n"])
    big = extras.TableNoise({"n": ((1000,), 0.5)}, seed=1).draw(400)["n"].astype(np.float64)
    assert big.std() == pytest.approx(0.5, rel=0.005)                     # 400,000 values: sd of the std 0.11%


def test_fed_noise_model_feeds_the_noise_where_random_normal_like_was(extras):
    w = np.array([[1.0, -2.0], [0.5, 1.0]], np.float32)
    model = one_op("MatMul", {"w": w}, ["x", "w"], ["N", 2])
    noisy = staged(model, TileSettings(read_noise=0.1), fixed("op", 1.0, [[0.0]])).model
    fed, specs = extras.fed_noise_model(noisy, "x", np.ones((1, 2), np.float32))
    assert not any(n.op_type == "RandomNormalLike" for n in fed.graph.node)
    ((name, (shape, std)),) = specs.items()
    assert shape == (2,) and std == pytest.approx(0.1 * 1.0 * 2.0)       # read_noise * x_max * max|w|
    x = np.array([[1.0, 2.0], [0.0, -1.0]], np.float32)
    y = session(fed).run(["y"], {"x": x, name: np.array([[0.25, 0.0], [0.0, -0.5]], np.float32)})[0]
    assert np.array_equal(y, x @ w + np.array([[0.25, 0.0], [0.0, -0.5]], np.float32))
