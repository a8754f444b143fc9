#!/usr/bin/env python
"""Error rates and power of the ``onnxnoise check`` gate by simulation on documented populations.

Each replication samples ``n`` images from a population, draws up to 10 noise draws on them and
runs the gate's own rule (:func:`onnxnoise.check.sequential.decide_streams` on the per-look image
statistics :func:`onnxnoise.check.bounds.image_stats` would compute), then records the verdict.

Populations (docs/check.md, "Simulation"):

* ``resnet20``: the per-image flip rates measured on ResNet20 (akamaster, BN folded) on the
  10,000 CIFAR-10 test images at SNR 10 over 20 draws (``docs/data/resnet20-snr10-flips.npz``,
  written by ``scripts/measure_flip_rates.py``). Image ``i`` flips (lost if the clean model gets
  it right, gained if not) with probability ``p_i`` = its measured rate. Draws differ in severity:
  in draw ``s`` the probability is ``1 - (1 - p_i)^(lambda w_s)`` with ``w_s ~ Gamma(k, 1/k)``
  (mean 1); ``k`` is fitted so that the draw-to-draw variance of the drop on all 10,000 images
  matches the measured one. ``lambda`` scales the noise: the true drop is
  ``100 mean_i sign_i [1 - (1 + lambda (-ln(1 - p_i)) / k)^(-k)]`` (the Gamma Laplace transform),
  solved for each target drop.
* ``measured``: the measured outcomes themselves, as they are (class-structured draw effects and
  all): a replication samples ``n`` of the 10,000 images and up to 10 of the 20 measured draws, both
  with replacement, so images and draws are independent draws from that finite population. A
  smaller true drop is made by *thinning*: each discordant (image, draw) outcome is kept with
  probability ``lambda`` (lost and gained alike), so the true drop is exactly ``lambda`` times the
  population's (2.80 points), up to 2.8 times a 1-point budget.
* ``fixed``: a share ``f`` of the images (all right when clean, clean accuracy 92%) is lost in
  every draw and the rest never change (true drop ``100 f``): the draws carry no information,
  only the images do (the case where a normal image bound fails worst).

Common random numbers: every point of a curve uses the same image samples and uniforms.

Writes ``OUT/results.json`` (resumable: points already there are not recomputed), the power
figures ``OUT/power-<population>.png`` and prints the tables of docs/check.md.

Usage::

    python scripts/simulate_gate.py --out docs/simulation [--reps 2000]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from onnxnoise.check.bounds import ImageStats  # noqa: E402
from onnxnoise.check.sequential import MAX_DRAWS, decide_streams  # noqa: E402

IMAGES = (500, 2000, 10000)
#: True drops of the power curves, in units of the budget.
RATIOS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0)
#: The measured population's (its full drop is 2.80 points).
MEASURED_RATIOS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 2.5, 2.8)
#: Budgets and image counts of the "images needed" table (population resnet20).
TABLE_BUDGETS = (0.5, 1.0, 2.0, 5.0)
TABLE_IMAGES = (500, 1000, 2000, 5000, 10000)
#: Most draws (``--max-seeds``) of the "images needed" table.
TABLE_DRAWS = (MAX_DRAWS, 20)
CHUNK = 250  # replications per batch (half that above 2,000 images)


class Population:
    """Per-image flip probability ``p`` and sign (+1 lost, -1 gained), clean share, draw-severity shape ``k``."""

    def __init__(self, name: str, p: np.ndarray, sign: np.ndarray, clean: np.ndarray, shape: float) -> None:
        self.name, self.p, self.sign, self.clean, self.shape = name, p, sign, clean, shape
        self.h = -np.log1p(-np.minimum(p, 1.0 - 1e-15))  # hazard; p = 1 -> large

    def drop(self, lam: float) -> float:
        """True drop (points) at scale ``lam``."""
        if math.isinf(self.shape):
            flip = 1.0 - np.exp(-lam * self.h)
        else:
            flip = 1.0 - (1.0 + lam * self.h / self.shape) ** (-self.shape)
        return float(100.0 * np.mean(self.sign * flip))

    def scale_for(self, target: float) -> float:
        """``lambda`` whose true drop is ``target`` points."""
        if target <= 0:
            return 0.0
        return float(optimize.brentq(lambda lam: self.drop(lam) - target, 0.0, 1e4, xtol=1e-10))


class Measured:
    """The measured ``(draws, images)`` differences as the population; drops made smaller by thinning."""

    name = "measured"

    def __init__(self, path: Path) -> None:
        z = np.load(path)
        clean = z["clean"].astype(bool)
        self.diff = clean.astype(np.int8)[None, :] - z["noisy"].astype(np.int8)  # (20, N)
        self.clean = clean
        self.movable = np.flatnonzero(np.any(self.diff != 0, axis=0))
        self.full = float(100.0 * self.diff.mean())

    def scale_for(self, target: float) -> float:
        """Thinning probability whose true drop is ``target`` points (at most 1)."""
        return target / self.full


def simulate_measured(pop: Measured, n: int, lams: list[float], reps: int, seed: int, budget: float,
                      draws: int = MAX_DRAWS) -> list[dict]:
    """:func:`simulate` on the measured population (images and draws resampled, thinned by ``lams``)."""
    counts = [{"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0, "draws": 0.0} for _ in lams]
    rng = np.random.default_rng(seed)
    is_movable = np.zeros(pop.clean.size, bool)
    is_movable[pop.movable] = True
    chunk = CHUNK if n <= 2000 else CHUNK // 4
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        idx = rng.integers(0, pop.clean.size, size=(r, n))
        clean = pop.clean[idx].sum(axis=1) * 100.0 / n
        mov = is_movable[idx]
        width = max(int(mov.sum(axis=1).max()), 1)
        order = np.argsort(~mov, axis=1, kind="stable")[:, :width]
        sel = np.take_along_axis(idx, order, axis=1)
        live = np.take_along_axis(mov, order, axis=1)
        seeds = rng.integers(0, pop.diff.shape[0], size=(r, draws))
        base = pop.diff[seeds[:, :, None], sel[:, None, :]] * live[:, None, :]  # (r, draws, width)
        u = rng.random(base.shape, dtype=np.float32)
        for j, lam in enumerate(lams):
            d = np.where(u < lam, base, 0).astype(np.float64)
            verdict, used = decide_sample(d, n, clean, budget)
            for v in ("PASS", "FAIL", "INCONCLUSIVE"):
                counts[j][v] += int(np.count_nonzero(verdict == v))
            counts[j]["draws"] += float(used.sum())
    return [{k: (v / reps) for k, v in c.items()} for c in counts]


def resnet20(path: Path) -> Population:
    """The measured ResNet20 population, ``k`` fitted to the draw-to-draw variance."""
    z = np.load(path)
    clean, noisy = z["clean"].astype(bool), z["noisy"].astype(bool)
    flips = np.where(clean, clean & ~noisy, ~clean & noisy)  # (S, N)
    p = flips.mean(axis=0)
    sign = np.where(clean, 1.0, -1.0)
    measured = np.var(100.0 * (flips * sign).mean(axis=1), ddof=1)
    rng = np.random.default_rng(1)
    best, err = math.inf, math.inf
    for k in (0.5, 1, 2, 3, 5, 8, 13, 20, 35, 60, 100, math.inf):
        pop = Population("resnet20", p, sign, clean, k)
        w = np.ones(400) if math.isinf(k) else rng.gamma(k, 1.0 / k, 400)
        drops = [100.0 * np.mean(sign * (rng.random(p.size) < 1.0 - np.exp(-wi * pop.h))) for wi in w]
        gap = abs(math.log(np.var(drops, ddof=1) / measured))
        if gap < err:
            best, err = k, gap
    print(f"resnet20 population: {p.size} images, {np.count_nonzero(p)} ever flipped, clean {100 * clean.mean():.2f}%, "
          f"drop {100 * np.mean(sign * p):.2f}, draw sd measured {math.sqrt(measured):.3f} points, k = {best}")
    return Population("resnet20", p, sign, clean, best)


def simulate(pop: Population, n: int, lams: list[float], reps: int, seed: int, budget: float,
             draws: int = MAX_DRAWS) -> list[dict]:
    """Verdict shares at each scale of ``lams`` for ``reps`` samples of ``n`` images (fixed: lam = share f),
    at most ``draws`` draws (``--max-seeds``)."""
    counts = [{"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0, "draws": 0.0} for _ in lams]
    rng = np.random.default_rng(seed)
    chunk = CHUNK if n <= 2000 else CHUNK // 2
    fixed = pop.name == "fixed"
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        idx = rng.integers(0, pop.p.size, size=(r, n))
        clean = pop.clean[idx].sum(axis=1) * 100.0 / n
        uf = rng.random((r, n))
        mov = uf < max(lams) if fixed else pop.p[idx] > 0  # images that can ever move
        width = max(int(mov.sum(axis=1).max()), 1)
        order = np.argsort(~mov, axis=1, kind="stable")[:, :width]
        sel = np.take_along_axis(idx, order, axis=1)
        live = np.take_along_axis(mov, order, axis=1)
        uf = np.take_along_axis(uf, order, axis=1)
        u = rng.random((r, draws, width), dtype=np.float32)
        w = rng.gamma(pop.shape, 1.0 / pop.shape, (r, draws, 1)) if math.isfinite(pop.shape) else 1.0
        for j, lam in enumerate(lams):
            if fixed:
                d = np.broadcast_to((uf < lam)[:, None, :], (r, draws, width)).astype(np.float64)
                clean_r = np.full(r, 92.0)
            else:
                prob = 1.0 - np.exp(-lam * w * pop.h[sel][:, None, :])
                d = (u < prob) * live[:, None, :] * pop.sign[sel][:, None, :]
                clean_r = clean
            verdict, used = decide_sample(d, n, clean_r, budget)
            for v in ("PASS", "FAIL", "INCONCLUSIVE"):
                counts[j][v] += int(np.count_nonzero(verdict == v))
            counts[j]["draws"] += float(used.sum())
    return [{k: (v / reps) for k, v in c.items()} for c in counts]


def decide_sample(d: np.ndarray, n: int, clean: np.ndarray, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """The gate on ``d`` ``(R, S, F)`` differences of the ``F`` movable images of ``n`` (the rest are 0)."""
    r, s, _ = d.shape
    cum = np.cumsum(d, axis=1)
    looks = np.arange(1, s + 1)[None, :, None]
    m = cum / looks
    sum_m = m.sum(axis=2)
    var = 1e4 * ((m * m).sum(axis=2) - sum_m * sum_m / n) / (n - 1)
    fragile = np.maximum.accumulate(d != 0, axis=1).sum(axis=2).astype(np.float64)
    effect = np.where(fragile > 0, np.abs(m).sum(axis=2) / np.maximum(fragile, 1), 1.0)
    drops = 100.0 * d.sum(axis=2) / n
    verdict, used, _, _ = decide_streams(drops, budget, image=ImageStats(var, fragile, effect), images=n,
                                         clean=clean)
    return verdict, used


def run(args: argparse.Namespace) -> dict:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    pops = {"resnet20": resnet20(args.population), "measured": Measured(args.population),
            "fixed": Population("fixed", np.ones(10000), np.ones(10000), np.ones(10000), math.inf)}
    jobs = [(name, n, 1.0, MEASURED_RATIOS if name == "measured" else RATIOS, MAX_DRAWS) for name in pops
            for n in IMAGES]
    jobs += [("resnet20", n, b, (0.5, 2.0), draws) for draws in TABLE_DRAWS for b in TABLE_BUDGETS
             for n in TABLE_IMAGES]
    for name, n, budget, ratios, draws in jobs:
        key = f"{name}/{n}/{budget:g}/{args.reps}" + (f"/{draws}" if draws != MAX_DRAWS else "")
        if key in results and all(f"{x:g}" in results[key] for x in ratios):
            continue
        pop = pops[name]
        drops = [x * budget for x in ratios]
        lams = [d / 100.0 if name == "fixed" else pop.scale_for(d) for d in drops]
        started = time.perf_counter()
        run_one = simulate_measured if name == "measured" else simulate
        rates = run_one(pop, n, lams, args.reps, seed=n, budget=budget, draws=draws)
        results.setdefault(key, {}).update({f"{x:g}": {"drop": d, **rate} for x, d, rate in zip(ratios, drops, rates)})
        path.write_text(json.dumps(results, indent=1, sort_keys=True))
        print(f"{key}: {time.perf_counter() - started:.1f} s", flush=True)
    return results


def tables(results: dict, reps: int) -> str:
    lines = ["Error rates at a true drop equal to the budget (1 point), "
             f"{reps} replications per point (binomial standard error of 5%: "
             f"{100 * math.sqrt(0.05 * 0.95 / reps):.2f}):", "",
             "| population | images | P(PASS) at drop = budget | P(FAIL) at drop = budget | max P(PASS), drop >= budget "
             "| max P(FAIL), drop <= budget | P(PASS) at drop 0.5 | P(FAIL) at drop 2 | mean draws at drop 2 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in ("resnet20", "measured", "fixed"):
        for n in IMAGES:
            res = results[f"{name}/{n}/1/{reps}"]
            above = max(v["PASS"] for v in res.values() if v["drop"] >= 1.0 - 1e-9)
            below = max(v["FAIL"] for v in res.values() if v["drop"] <= 1.0 + 1e-9)
            lines.append(f"| {name} | {n:,} | {100 * res['1']['PASS']:.2f}% | {100 * res['1']['FAIL']:.2f}% | "
                         f"{100 * above:.2f}% | {100 * below:.2f}% | {100 * res['0.5']['PASS']:.1f}% | "
                         f"{100 * res['2']['FAIL']:.1f}% | {res['2']['draws']:.1f} |")
    lines += ["", "Images needed (population resnet20): P(PASS) at half the budget / P(FAIL) at twice the budget:", "",
              "| budget (points) | --max-seeds | " + " | ".join(f"{n:,} images" for n in TABLE_IMAGES) + " |",
              "|---|---|" + "---|" * len(TABLE_IMAGES)]
    for b in TABLE_BUDGETS:
        for draws in TABLE_DRAWS:
            cells = []
            for n in TABLE_IMAGES:
                res = results[f"resnet20/{n}/{b:g}/{reps}" + (f"/{draws}" if draws != MAX_DRAWS else "")]
                cells.append(f"{100 * res['0.5']['PASS']:.0f}% / {100 * res['2']['FAIL']:.0f}%")
            lines.append(f"| {b:g} | {draws} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figures(results: dict, reps: int, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for name in ("resnet20", "measured", "fixed"):
        fig, axes = plt.subplots(1, len(IMAGES), figsize=(4 * len(IMAGES), 3.4), sharey=True)
        for ax, n in zip(axes, IMAGES):
            res = sorted(results[f"{name}/{n}/1/{reps}"].values(), key=lambda v: v["drop"])
            x = [v["drop"] for v in res]
            for verdict, color in (("PASS", "tab:green"), ("FAIL", "tab:red"), ("INCONCLUSIVE", "tab:orange")):
                ax.plot(x, [v[verdict] for v in res], marker="o", ms=3, color=color, label=verdict)
            ax.axvline(1.0, color="grey", lw=0.8, ls="--")
            ax.axhline(0.05, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{n:,} images")
            ax.set_xlabel("true drop (points), budget 1")
        axes[0].set_ylabel("probability of verdict")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"check --max-drop 1: population {name}, {reps} replications per point")
        fig.tight_layout()
        fig.savefig(out / f"power-{name}.png", dpi=90)
        plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "simulation")
    parser.add_argument("--population", type=Path, default=ROOT / "docs" / "data" / "resnet20-snr10-flips.npz")
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()
    results = run(args)
    figures(results, args.reps, args.out)
    text = tables(results, args.reps)
    (args.out / "tables.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
