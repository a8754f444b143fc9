"""scripts/simulate_gate.py: its populations have the true drops it claims, and it runs the gate's own rule."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxnoise.check.bounds import image_stats
from onnxnoise.check.sequential import MAX_DRAWS, decide_streams

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
FLIPS = SCRIPTS.parent / "docs" / "data" / "resnet20-snr10-flips.npz"


@pytest.fixture(scope="module")
def sim():
    spec = importlib.util.spec_from_file_location("simulate_gate", SCRIPTS / "simulate_gate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["simulate_gate"] = module
    spec.loader.exec_module(module)
    return module


def test_parametric_true_drop_is_the_gamma_laplace_transform(sim):
    """drop(lambda) = 100 mean sign [1 - E_w (1-p)^(lambda w)], w ~ Gamma(k, 1/k): checked by Monte Carlo."""
    rng = np.random.default_rng(0)
    p = np.array([0.0, 0.1, 0.5, 0.9])
    sign = np.array([1.0, 1.0, -1.0, 1.0])
    pop = sim.Population("t", p, sign, np.ones(4), 3.0)
    w = rng.gamma(3.0, 1 / 3.0, 400_000)
    mc = 100 * np.mean([s * np.mean(1 - (1 - pi) ** (0.7 * w)) for pi, s in zip(p, sign)])
    assert pop.drop(0.7) == pytest.approx(mc, abs=0.05)
    assert pop.drop(pop.scale_for(1.25)) == pytest.approx(1.25, abs=1e-8) and pop.scale_for(0) == 0.0


@pytest.mark.skipif(not FLIPS.exists(), reason="docs/data/resnet20-snr10-flips.npz is committed with the repository")
def test_measured_population_thins_to_the_asked_drop(sim):
    pop = sim.Measured(FLIPS)
    assert pop.full == pytest.approx(2.7955) and pop.movable.size == 2960
    assert pop.scale_for(1.0) * pop.full == pytest.approx(1.0)
    rates = sim.simulate_measured(pop, 500, [0.0, pop.scale_for(1.0)], 40, 1, 1.0)
    # thinned to nothing, 500 unchanged images: U is the rule of three, 0.74 < 1, so every sample PASSes at draw 5
    assert rates[0] == {"PASS": 1.0, "FAIL": 0.0, "INCONCLUSIVE": 0.0, "draws": 5.0}
    assert all(abs(sum(r[v] for v in ("PASS", "FAIL", "INCONCLUSIVE")) - 1) < 1e-12 for r in rates)


def test_decide_sample_is_the_gates_rule_on_image_stats(sim):
    """The simulation's per-look statistics from the movable images equal image_stats of the whole sample."""
    rng = np.random.default_rng(2)
    n, moving = 300, 40
    d = np.zeros((2, MAX_DRAWS, n))
    d[:, :, :moving] = (
        (rng.random((2, MAX_DRAWS, moving)) < 0.3).astype(int) - (rng.random((2, MAX_DRAWS, moving)) < 0.05))
    verdict, used = sim.decide_sample(d[:, :, :moving], n, np.array([90.0, 90.0]), 1.0)
    looks = [image_stats(d[:, :s, :]) for s in range(1, MAX_DRAWS + 1)]
    stats = type(looks[0])(*(np.stack([getattr(x, f) for x in looks], axis=1)
                             for f in ("variance", "fragile", "effect")))
    expected, used_expected, _, _ = decide_streams(100 * d.mean(axis=2), 1.0, image=stats, images=n, clean=90.0)
    assert verdict.tolist() == expected.tolist() and used.tolist() == used_expected.tolist()
    assert math.isfinite(float(used.mean()))
