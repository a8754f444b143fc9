"""The gate: baseline, then noisy draws through the trial engine until the sequential rule decides.

A :class:`CheckSession` holds one prepared :class:`~onnxnoise.engine.context.RunContext`,
runs its clean baseline once (checked against ``--expect-top1`` before any noisy
trial), and then answers :meth:`CheckSession.gate` for any strength and any set of
noised layers: noisy trials of seeds ``first_seed, first_seed + 1, ...`` with noise in
those layers (a trial of mode ``all`` whose ``layers`` tuple is the set), each
executed by :class:`~onnxnoise.engine.executor.LocalExecutor` and
:func:`~onnxnoise.engine.trial.run_trial` like every bench and sweep trial, recorded
in memory (a trial asked for twice runs once), and turned into a
:class:`~onnxnoise.check.sequential.Draw` from its paired counts (``lost_top1`` /
``gained_top1`` or the top-5 pair: images right when clean and wrong under noise, and
the opposite). :func:`~onnxnoise.check.sequential.run_sequential` decides when to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxnoise.check.sequential import (
    INCONCLUSIVE, MAX_DRAWS, MIN_DRAWS, Decision, Draw, decide, run_sequential,
)
from onnxnoise.engine.baseline_checks import chance_classes, check_baseline
from onnxnoise.engine.executor import LocalExecutor, MemoryRecorder, Progress
from onnxnoise.engine.metrics import fixed_top5
from onnxnoise.engine.plan import Trial, plan_trial
from onnxnoise.errors import ConfigError, DataError, NoiseConfigError
from onnxnoise.options import MAX_SEED, MAX_SEEDS
from onnxnoise.report.paired import collapse_hint_line, collapsed, mcnemar_p
from onnxnoise.settings import GATE, option

__all__ = ["METRICS", "IDENTICAL_NOTE", "GateSettings", "GateResult", "CheckSession", "collapse_flags", "identical_draws"]


class _TrialFailed(Exception):
    """A noisy trial of a gate ended with an error row."""

#: Metrics a gate can bound: top-1 or top-5 accuracy.
METRICS: tuple[str, ...] = ("top1", "top5")


#: What the gate's settings share: ``check``'s options, in the gate section of its ``--help``.
_GATE = {"commands": ("check",), "group": GATE}


@dataclass(frozen=True)
class GateSettings:
    """What a gate tests.

    Each field but ``min_draws`` is an option of ``onnxnoise check`` (:mod:`onnxnoise.settings`).

    Attributes:
        budget: Largest allowed accuracy drop, percentage points (``--max-drop``).
        metric: ``top1`` or ``top5``.
        confidence: ``1 - alpha``: bound of the false-PASS and of the false-FAIL rate.
        max_draws: Most noisy draws (``--max-seeds``, at most :data:`~onnxnoise.options.MAX_SEEDS`),
            then INCONCLUSIVE.
        min_draws: Fewest draws before a verdict (:data:`MIN_DRAWS`).
        first_seed: Seed of the first draw; draw ``i`` uses ``first_seed + i``, so the last
            one, ``first_seed + max_draws - 1``, must be at most :data:`~onnxnoise.options.MAX_SEED`.

    Raises:
        ConfigError: On a value out of range (one line naming the option).
    """

    budget: float = option(key="max_drop", flag="--max-drop", type=float, metavar="POINTS", required=True,
                           **_GATE, unit="percentage points",
                           help="largest allowed accuracy drop, percentage points (e.g. 1.0)")
    metric: str = option("top1", flag="--metric", choices=METRICS, **_GATE, help="top1 or top5 (default {default})")
    confidence: float = option(0.95, flag="--confidence", type=float, metavar="C", **_GATE,
                               help="confidence of each bound (default {default}: false-pass rate at most 1 - C)")
    max_draws: int = option(MAX_DRAWS, key="max_seeds", flag="--max-seeds", type=int, metavar="N", **_GATE,
                            help=f"most noisy draws before INCONCLUSIVE (default {{default}}, {MIN_DRAWS} to "
                            f"{MAX_SEEDS})")
    min_draws: int = MIN_DRAWS
    first_seed: int = option(0, flag="--first-seed", type=int, metavar="S", **_GATE,
                             help="seed of the first draw (default {default}; its last draw at most 2**63 - 1); re-run "
                             "with another to check that a verdict holds for other draws")

    def __post_init__(self) -> None:
        if not (isinstance(self.budget, (int, float)) and np.isfinite(self.budget) and 0 <= self.budget <= 100):
            raise ConfigError(f"`--max-drop` must be percentage points from 0 to 100, got {self.budget!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"`--metric` must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not (isinstance(self.confidence, (int, float)) and 0.5 <= self.confidence < 1):
            raise ConfigError(f"`--confidence` must be at least 0.5 and below 1 (e.g. 0.95), got {self.confidence!r}")
        if not isinstance(self.max_draws, int) or not self.min_draws <= self.max_draws <= MAX_SEEDS:
            raise ConfigError(f"`--max-seeds` must be an integer from {self.min_draws} (the minimum number of draws) "
                              f"to {MAX_SEEDS}, got {self.max_draws!r}")
        last = MAX_SEED - self.max_draws + 1  # draw i uses seed first_seed + i; the store holds 64-bit seeds
        seed = self.first_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= last:
            raise ConfigError(f"`--first-seed` must be an integer from 0 to {last} (2**63 - 1 less --max-seeds "
                              f"{self.max_draws} plus 1: seeds are 64-bit), got {self.first_seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class GateResult:
    """One gate: a strength, a set of noised layers, its draws and its verdict.

    Attributes:
        verdict: ``PASS``, ``FAIL`` or ``INCONCLUSIVE``.
        decision: The rule's last :class:`~onnxnoise.check.sequential.Decision`.
        strength: The noise model's strength (for ``gaussian-snr`` the linear SNR).
        layers: Names of the noised layers.
        kept: Selected layers kept noise-free (protection plans), graph order.
        seeds: Seeds of the draws taken.
        draws: The draws, seed order.
        rows: Their trial rows (trial-table columns).
        baseline: Clean accuracy of the metric, percent.
        error: A failed trial's error (verdict INCONCLUSIVE), else None.
    """

    verdict: str
    decision: Decision
    strength: float
    layers: tuple[str, ...]
    kept: tuple[str, ...]
    seeds: list[int]
    draws: list[Draw]
    rows: list[dict[str, Any]]
    baseline: float
    error: str | None = None

    @property
    def collapsed(self) -> int:
        """Draws flagged by the collapse rule."""
        return sum(d.collapsed for d in self.draws)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN possible: write it with strict JSON that maps NaN to null)."""
        n = [row.get("images") for row in self.rows]
        return {
            "verdict": self.verdict,
            "strength": self.strength,
            "layers_noised": len(self.layers),
            "layers_kept": list(self.kept),
            "draws": len(self.draws),
            "seeds": self.seeds,
            "baseline_acc": self.baseline,
            "bounds": self.decision.to_dict(),
            "collapsed": self.collapsed,
            "collapse_rate": self.collapsed / len(self.draws) if self.draws else None,
            "mcnemar_significant": sum(mcnemar_p(d.lost, d.gained) < 0.05 for d in self.draws if d.paired),
            "flip_rate": (float(np.mean([r["flips"] / r["images"] for r in self.rows if r.get("flips") is not None]))
                          if any(r.get("flips") is not None for r in self.rows) else None),
            "per_draw": [
                {"seed": s, "images": images, "top1_acc": 100.0 * row["top1_correct"] / images, "drop": d.drop,
                 "lost": d.lost, "gained": d.gained, "flips": row.get("flips"),
                 "mcnemar_p": mcnemar_p(d.lost, d.gained), "collapsed": d.collapsed}
                for s, d, row, images in zip(self.seeds, self.draws, self.rows, n)
            ],
            "error": self.error,
        }


def collapse_flags(top1: Sequence[float], *, clean: float, chance: float) -> list[bool]:
    """Which draws collapsed (fell far below the others): :func:`onnxnoise.report.paired.collapsed`.

    Args:
        top1: Top-1 accuracy of each draw so far, percent.
        clean: The clean model's top-1, percent.
        chance: Chance top-1, percent (``100 / classes``).
    """
    return [bool(x) for x in collapsed(np.asarray(top1, dtype=np.float64), clean=clean, chance=chance)]


#: Said (check.json ``warnings``, terminal) when the gate takes one draw because every draw is the same trial.
IDENTICAL_NOTE: str = ("--noise none without --read-noise draws nothing at random: every seed gives the same trial, so "
                       "the gate took one draw and bounds the drop over the images alone (one look at the full "
                       "1 - confidence); more images narrow the bounds, more draws cannot")


def identical_draws(config) -> bool:
    """Whether every noisy draw of a run is the same trial by construction, whatever its seed.

    True for the ``none`` noise model (weights exact, :mod:`onnxnoise.noise.none`) without read noise
    (``config.tile.read_noise == 0``): the DAC and ADC stages quantize deterministically with ranges
    calibrated once on the clean model, so nothing depends on the seed.

    Args:
        config: A :class:`~onnxnoise.config.RunConfig`.
    """
    return config.noise.noise_model.name == "none" and not config.tile.read_noise


class CheckSession:
    """One model on one evaluation set, ready to run gates at any strength and layer set.

    Args:
        context: The prepared :class:`~onnxnoise.engine.context.RunContext`.
        settings: What a gate tests.
        progress: Progress receiver for every trial (default silent).
        on_look: Called after every noisy draw with ``(GateResult so far)``.

    Raises:
        DataError: Fewer than 2 images (no paired drop can be bounded on one).
        ConfigError: ``settings.metric`` is ``top5`` and the model has five outputs or fewer
            (:func:`onnxnoise.engine.metrics.fixed_top5`: such a gate would pass any noise).
    """

    def __init__(self, context, settings: GateSettings, *, progress: Progress | None = None,
                 on_look: Callable[[GateResult], None] | None = None) -> None:
        if len(context.data) < 2:  # a paired drop has no variance on one image (Draw.from_counts)
            raise DataError(f"check needs at least 2 images to bound a drop, got {len(context.data)}; evaluate more "
                            "images (a larger --limit or dataset)")
        fixed = fixed_top5(context.score_width) if settings.metric == "top5" else None
        if fixed:  # a gate on a metric that cannot move passes any noise
            raise ConfigError(f"--metric top5 cannot gate this model: {fixed.split('; ')[0]}; use --metric top1")
        self.context = context
        self.settings = settings
        self.progress = progress or Progress()
        self.on_look = on_look
        self.recorder = MemoryRecorder()
        self.executor = LocalExecutor(prefix_reuse=True)
        self.fields = context.key_fields()
        self.warnings: list[str] = list(context.warnings)
        self.identical = identical_draws(context.config)  # one draw settles it: see IDENTICAL_NOTE
        if self.identical:
            self.warnings.append(IDENTICAL_NOTE)
        self._baseline: dict[str, Any] | None = None
        self.chance = 0.0  # chance top-1 in percent, set with the baseline
        self._fresh: list[tuple[dict[str, Any], np.ndarray]] = []  # (row, hits) of the trials that just ran
        self._hits: dict[str, np.ndarray] = {}  # trial key -> (N,) bool hits of the metric
        context.outcome_sink = self._keep

    def _keep(self, row: dict[str, Any], outcomes) -> None:
        """The context's ``outcome_sink``: keep the per-image hits of a trial that just ran."""
        self._fresh.append((row, getattr(outcomes, f"{self.settings.metric}_hit").copy()))

    # ------------------------------------------------------------------ trials

    def run(self, trial: Trial) -> dict[str, Any]:
        """Run one trial through the executor (once: a recorded key is not run again); its row."""
        planned = plan_trial(self.context, trial, self.fields)
        key = planned.key
        self._fresh = []
        self.executor.run(self.context, [planned], self.recorder, self.progress)
        if self._fresh:
            self._hits[key] = self._fresh[-1][1]
        return next(row for row in self.recorder.rows if row["key"] == key)

    def hits(self, row: dict[str, Any]) -> np.ndarray | None:
        """``(N,) bool``: which images a noisy trial run by :meth:`run` got right (the gate's metric), or None."""
        return self._hits.get(row.get("key"))

    def baseline(self) -> dict[str, Any]:
        """The clean baseline row, run first and checked before any noisy trial.

        Raises:
            BaselineError: The baseline trial failed.
            BaselineExpectationError: Its top-1 is outside ``--expect-top1 +- --tolerance``.
        """
        if self._baseline is None:
            row = self.run(Trial("baseline", None, (), None, None))
            config = self.context.config
            classes = chance_classes(self.context.data.labels)
            self.chance = 100.0 / classes if classes > 0 else 0.0
            self.warnings += check_baseline(row, classes, config.expect_top1, config.tolerance, self.context.io)
            self._baseline = row
        return self._baseline

    def check_strength(self, strength: float) -> float:
        """``strength`` validated by the noise model.

        Raises:
            NoiseConfigError: The model refuses it.
        """
        return float(self.context.config.noise.noise_model.check_strength(strength))

    def _draw(self, row: dict[str, Any]) -> Draw:
        metric = self.settings.metric
        base = self.baseline()
        lost, gained = row.get(f"lost_{metric}"), row.get(f"gained_{metric}")
        if lost is None or gained is None:
            raise ConfigError(f"trial rows carry no paired counts (lost_{metric} / gained_{metric}); "
                              "this onnxnoise cannot run `check`")
        drop = base[f"{metric}_correct"] - row[f"{metric}_correct"]
        if lost - gained != drop:
            raise RuntimeError(f"paired counts disagree with the accuracies: lost {lost} - gained {gained} "
                               f"!= clean - noisy {drop} (a bug: please report it)")
        hits = self.hits(row)
        clean = getattr(self.context.clean_outcomes, f"{metric}_hit", None)
        diff = None if hits is None or clean is None else clean.astype(np.int8) - hits.astype(np.int8)
        return Draw.from_counts(row["images"], lost, gained, clean=base[f"{metric}_correct"], diff=diff)

    # ------------------------------------------------------------------ the gate

    def layer_names(self, kept: Sequence[str] = ()) -> tuple[str, ...]:
        """Selected layers minus ``kept``, graph order."""
        keep = set(kept)
        return tuple(layer.name for layer in self.context.selected if layer.name not in keep)

    def gate(self, strength: float, *, kept: Sequence[str] = (), first_seed: int | None = None,
             budget: float | None = None) -> GateResult:
        """Draw at ``strength`` with noise in every selected layer except ``kept`` until decided.

        When every draw is the same trial (:func:`identical_draws`), one draw decides, at one look
        (``min_draws = max_draws = 1``: the bounds are the images' alone).

        Args:
            strength: The noise model's strength (validated by the model).
            kept: Selected layers left noise-free.
            first_seed: Seed of the first draw (default ``settings.first_seed``).
            budget: Budget in points (default ``settings.budget``; the protection search
                tests a tighter one).

        Returns:
            The :class:`GateResult`. A failed noisy trial stops the gate with verdict
            ``INCONCLUSIVE`` and ``error`` set.

        Raises:
            NoiseConfigError: Invalid strength, or every selected layer kept.
        """
        strength = self.check_strength(strength)
        layers = self.layer_names(kept)
        if not layers:
            raise NoiseConfigError("every selected layer is kept noise-free; nothing is left to noise")
        kept_in_order = tuple(layer.name for layer in self.context.selected if layer.name in set(kept))
        s = self.settings
        first = s.first_seed if first_seed is None else first_seed
        budget = s.budget if budget is None else float(budget)
        base = self.baseline()
        base_acc = 100.0 * base[f"{s.metric}_correct"] / base["images"]
        rows: list[dict[str, Any]] = []
        looks = (1, 1) if self.identical else (s.min_draws, s.max_draws)  # (min, max) draws
        result = GateResult(INCONCLUSIVE, decide([], budget, confidence=s.confidence, min_draws=looks[0],
                                                  max_draws=looks[1]),
                            strength, layers, kept_in_order, [], [], rows, base_acc)

        def next_draw(i: int) -> Draw:
            row = self.run(Trial("all", None, layers, strength, first + i))
            if row["error"] is not None:
                result.error = f"seed {first + i}: {row['error']}"
                raise _TrialFailed
            rows.append(row)
            result.seeds.append(first + i)
            return self._draw(row)

        clean_top1 = 100.0 * base["top1_correct"] / base["images"]

        def flag(draws: list[Draw]) -> list[bool]:  # the collapse rule reads top-1, whatever the metric
            return collapse_flags([100.0 * r["top1_correct"] / r["images"] for r in rows[: len(draws)]],
                                  clean=clean_top1, chance=self.chance)

        def on_look(decision: Decision, draws: list[Draw]) -> None:
            result.decision, result.draws = decision, draws
            if self.on_look is not None:
                self.on_look(result)

        try:
            decision, draws = run_sequential(next_draw, budget, confidence=s.confidence, min_draws=looks[0],
                                             max_draws=looks[1], flag=flag, on_look=on_look)
        except _TrialFailed:
            return result
        result.verdict, result.decision, result.draws = decision.verdict, decision, draws
        self._hint_collapse(result)
        return result

    def _hint_collapse(self, result: GateResult) -> None:
        """Add the noise model's advice to :attr:`warnings` the first time a gate's draws collapse."""
        model = self.context.config.noise.noise_model
        line = collapse_hint_line(model, result.collapsed, len(result.draws), model.format_strength(result.strength))
        if line and not any(w.startswith(f"{model.name}: ") and "collapsed" in w for w in self.warnings):
            self.warnings.append(line)

    def per_layer(self, strength: float, seeds: Sequence[int]) -> dict[str, list[Draw]]:
        """Draws with noise in one selected layer at a time: layer name -> its draws over ``seeds``.

        Per-layer trials (mode ``per-layer``) run with prefix reuse, walking the layers
        forward for each seed (the order prefix reuse computes cheapest); each draw carries
        its per-image differences (:class:`~onnxnoise.check.sequential.Draw`). A failed trial
        counts as every clean hit lost (the layer cannot be noised).
        """
        strength = self.check_strength(strength)
        base = self.baseline()
        metric = self.settings.metric
        clean = getattr(self.context.clean_outcomes, f"{metric}_hit")
        out: dict[str, list[Draw]] = {layer.name: [] for layer in self.context.selected}
        for seed in seeds:  # one pass over the layers per seed: the executor runs it in lockstep
            trials = [Trial("per-layer", layer.index, (layer.name,), strength, seed) for layer in self.context.selected]
            planned = [plan_trial(self.context, trial, self.fields) for trial in trials]
            keys = [p.key for p in planned]
            self._fresh = []
            self.executor.run(self.context, planned, self.recorder, self.progress)
            fresh = {(tuple(row["layers"]), row["seed"]): hits for row, hits in self._fresh}
            for trial, key in zip(trials, keys):
                if (trial.layers, seed) in fresh:
                    self._hits[key] = fresh[(trial.layers, seed)]
                row = self.recorder.find(key)
                if row["error"] is not None:
                    n, hit = base["images"], int(base[f"{metric}_correct"])
                    draw = Draw.from_counts(n, hit, 0, clean=hit, diff=clean.astype(np.int8))
                else:
                    draw = self._draw(row)
                out[trial.layers[0]].append(draw)
        return out

    def frame(self):
        """Every trial run so far as a trial table (:meth:`MemoryRecorder.frame`)."""
        return self.recorder.frame()
