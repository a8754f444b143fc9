"""The noisiest strength that still passes the gate: bisection on the noise model's strength axis.

Which end of the axis is noisier comes from the noise model's declaration
(``NoiseModel.more_noise_when``: ``"lower"`` for an SNR or a number of conductance
levels, ``"higher"`` for a time or a fault rate), so ``--find-min-snr`` (gaussian-snr:
the lowest SNR), the longest drift time (pcm) and the highest fault rate (stuck-at)
are one search. Each point is a full sequential gate
(:meth:`onnxnoise.check.gate.CheckSession.gate`) with the same seeds, so the result is
re-checked exactly by ``onnxnoise check`` at the found strength.

Search (bisection assumes the drop grows with noise; a point that is not shown to pass,
FAIL or INCONCLUSIVE, counts as too noisy):

1. gate at the quiet end of ``[low, high]``: if it does not pass, nothing in range does;
2. gate at the noisy end: if it passes, the whole range does;
3. otherwise halve ``[passing, not passing]`` at its geometric mean (arithmetic mean for
   an axis in dB or with a bound <= 0), rounded to 4 significant digits (to a whole
   number on an axis of unit ``count``, e.g. conductance levels), until the ratio of its
   ends is at most ``1 + resolution`` (difference at most ``resolution`` times the range,
   on a linear axis; neighbouring whole numbers on a count axis) or ``max_steps`` points
   were tested.

When nothing passes, :func:`quieter_range` gives the range to search next: as wide as the
searched one (the same ratio, or the same difference on a linear axis), beyond its quiet end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from onnxnoise.check.gate import CheckSession, GateResult
from onnxnoise.check.sequential import PASS
from onnxnoise.errors import ConfigError, OnnxNoiseError

__all__ = ["RESOLUTION", "SearchResult", "check_resolution", "find_limit", "noisier_when", "quieter_range",
           "round_strength"]

#: The search stops when its bracket's ratio is at most ``1 + RESOLUTION`` (``--find-resolution``'s default).
RESOLUTION = 0.05


def noisier_when(noise_model: Any) -> str:
    """``"lower"`` or ``"higher"``: the direction of more noise on a model's strength axis.

    The model's ``more_noise_when`` (every built-in model declares it); the one place the
    search reads the axis's direction.
    """
    direction = getattr(noise_model, "more_noise_when", "higher")
    if direction not in ("lower", "higher"):
        msg = f"noise model {noise_model.name!r} declares more_noise_when={direction!r}; expected 'lower' or 'higher'"
        raise ConfigError(msg)
    return direction


def round_strength(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (``0`` stays ``0``)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def _unit(noise_model: Any) -> str:
    """The unit of the model's declared strength axis (``ratio``, ``s``, ``dB``, ``count``...), ``""`` if none."""
    return getattr(getattr(noise_model, "strength_axis", None), "unit", "") or ""


def _log_axis(noise_model: Any, low: float, high: float) -> bool:
    return low > 0 and high > 0 and _unit(noise_model) != "dB"


@dataclass
class SearchResult:
    """What :func:`find_limit` found.

    Attributes:
        found: The noisiest tested strength that passed, or ``None`` (none passed).
        bracket: ``(passing, not_passing)``: the found strength and the least noisy
            tested strength that did not pass (``None`` when the whole range passed).
        low, high: The range searched (strength values, ``low <= high``).
        more_noise_when: ``"lower"`` or ``"higher"``.
        log: Whether midpoints were geometric.
        resolution: The stopping ratio (or fraction of the range).
        steps: Every gate run, in order.
    """

    found: float | None
    bracket: tuple[float | None, float | None]
    low: float
    high: float
    more_noise_when: str
    log: bool
    resolution: float
    steps: list[GateResult] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``found``, ``none passes`` (the quiet end did not pass) or ``all pass`` (the noisy end passed)."""
        if self.found is None:
            return "none passes"
        return "all pass" if self.bracket[1] is None else "found"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with every step's strength, verdict, draws and bounds."""
        return {
            "outcome": self.outcome, "found": self.found, "bracket": list(self.bracket), "low": self.low,
            "high": self.high, "more_noise_when": self.more_noise_when, "log_scale": self.log,
            "resolution": self.resolution,
            "steps": [{"strength": g.strength, "verdict": g.verdict, "draws": len(g.draws),
                       "lower": g.decision.bounds.lower, "upper": g.decision.bounds.upper,
                       "mean": g.decision.bounds.mean, "error": g.error} for g in self.steps],
        }


def check_resolution(resolution: float) -> float:
    """Return ``resolution`` (the search's stopping ratio minus 1) if it is a finite number > 0.

    Raises:
        ConfigError: Otherwise, naming ``--find-resolution``.
    """
    if not (math.isfinite(resolution) and resolution > 0):
        raise ConfigError(f"`--find-resolution` must be > 0 (e.g. 0.05 for 5%), got {resolution!r}")
    return resolution


def find_limit(session: CheckSession, low: float, high: float, *, resolution: float = RESOLUTION,
               max_steps: int = 20) -> SearchResult:
    """Bisect ``[low, high]`` for the noisiest strength whose gate passes.

    Args:
        session: The check session (baseline, settings, engine).
        low, high: The range, strength values (either order); both validated by the model.
        resolution: Stop when the bracket's ratio is at most ``1 + resolution`` (> 0).
        max_steps: Most gates run (>= 2).

    Returns:
        The :class:`SearchResult`.

    Raises:
        ConfigError: On an empty range or a bad resolution.
        NoiseConfigError: A bound the noise model refuses.
    """
    low, high = sorted((session.check_strength(low), session.check_strength(high)))
    if not low < high:
        raise ConfigError(f"the search range needs two different strengths, got {low:g} and {high:g}")
    check_resolution(resolution)
    model = session.context.config.noise.noise_model
    direction = noisier_when(model)
    quiet, noisy = (high, low) if direction == "lower" else (low, high)
    log = _log_axis(model, low, high)
    result = SearchResult(None, (None, quiet), low, high, direction, log, resolution)

    def passes(strength: float) -> bool:
        gate = session.gate(strength)
        result.steps.append(gate)
        return gate.verdict == PASS

    if not passes(quiet):
        return result
    if passes(noisy):
        result.found, result.bracket = noisy, (noisy, None)
        return result
    good, bad = quiet, noisy
    whole = _unit(model) == "count"
    while len(result.steps) < max_steps and not _close(good, bad, log, resolution, high - low, whole):
        mid = _midpoint(good, bad, log, whole)
        if passes(mid):
            good = mid
        else:
            bad = mid
    result.found, result.bracket = good, (good, bad)
    return result


def quieter_range(search: SearchResult, noise_model: Any) -> tuple[float, float] | None:
    """The range to search after ``search`` found nothing that passes: as wide, beyond its quiet end.

    The quiet end ``q`` and noisy end ``n`` of the searched range give the new far end ``q^2 / n`` on a
    log axis (SNR ``[10, 100]`` -> ``[100, 1000]``, t ``[1 d, 10 d]`` -> ``[2.4 h, 1 d]``) and ``2q - n`` on a linear one
    (dB ``[10, 20]`` -> ``[20, 30]``), rounded to 4 significant digits (:func:`round_strength`; a whole number on a
    ``count`` axis). The searched quiet end is the new range's noisy end: its gate did not pass.

    Args:
        search: A :func:`find_limit` result.
        noise_model: The searched model; its ``check_strength`` must accept the new end.

    Returns:
        ``(low, high)``, or ``None`` when something passed or the model takes no quieter strength (a fault rate
        searched from 0, a time the model refuses).
    """
    if search.found is not None:
        return None
    quiet, noisy = ((search.high, search.low) if search.more_noise_when == "lower" else (search.low, search.high))
    far = quiet * quiet / noisy if search.log else 2.0 * quiet - noisy
    far = float(round(far)) if _unit(noise_model) == "count" else round_strength(far)
    try:
        far = float(noise_model.check_strength(far))
    except (OnnxNoiseError, ValueError):
        return None
    if not math.isfinite(far) or far == quiet:
        return None
    return (min(quiet, far), max(quiet, far))


def _close(a: float, b: float, log: bool, resolution: float, span: float, whole: bool) -> bool:
    if whole and abs(a - b) <= 1:
        return True
    if log:
        return max(a, b) / min(a, b) <= 1.0 + resolution + 1e-12
    return abs(a - b) <= resolution * span + 1e-12


def _midpoint(a: float, b: float, log: bool, whole: bool) -> float:
    exact = math.sqrt(a * b) if log else (a + b) / 2.0
    if whole:  # a count (conductance levels): the nearest whole number strictly inside
        return float(min(max(round(exact), min(a, b) + 1), max(a, b) - 1))
    rounded = round_strength(exact)
    return rounded if min(a, b) < rounded < max(a, b) else exact
