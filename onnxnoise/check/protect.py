"""Protection plan: which layers to keep noise-free (digital) so the gate passes.

``--protect auto``:

1. rank the selected layers by sensitivity: the mean drop with noise in that layer
   alone (per-layer trials with prefix reuse, :data:`RANK_SEEDS` seeds, the same trials
   as ``sweep --mode per-layer``), most sensitive first;
2. keep the ``k`` most sensitive layers noise-free and run a gate on exactly that
   configuration (every other selected layer noised: a trial whose ``layers`` tuple is
   the selected layers minus the kept ones); the search finds the smallest ``k`` that
   passes by bisection over ``1 .. n - 1`` (more layers kept, less noise: the drop falls
   as ``k`` grows), starting with ``n - 1``. Its gates test a tighter budget,
   :data:`SEARCH_MARGIN` times ``--max-drop``: a search that stopped where the bound
   just met the budget would pick a plan whose true drop sits at the budget, which an
   independent re-check then passes only half the time;
3. verify the plan with a fresh gate at the real budget on the same configuration with
   independent seeds (``first_seed + VERIFY_SEED_OFFSET``, ...): the search tried several
   configurations and kept the one that passed, so that pass is selected; the
   verification is not. Its command line (``--protect`` with the kept layers' names,
   ``--first-seed``) is reported, so anyone can re-run exactly that gate.

``--protect REGEX`` keeps the selected layers whose name or op type matches ``REGEX``
(``re.search``) and runs one gate on that configuration (no search, so no separate
verification). Either way the plan reports the kept layers, their parameters and
their share of all the model's parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxnoise.check.gate import CheckSession, GateResult
from onnxnoise.check.sequential import PASS
from onnxnoise.errors import ConfigError

__all__ = ["RANK_SEEDS", "VERIFY_SEED_OFFSET", "SEARCH_MARGIN", "ProtectionPlan", "plan_protection", "protected_layers",
           "layers_regex"]

#: Seeds per layer for the sensitivity ranking.
RANK_SEEDS: int = 2
#: The verification gate's first seed is the gate's first seed plus this.
VERIFY_SEED_OFFSET: int = 1000
#: The search's gates test this fraction of ``--max-drop`` (a margin for the verification).
SEARCH_MARGIN: float = 0.75


@dataclass
class ProtectionPlan:
    """A set of layers kept noise-free, and whether the gate passes with them kept.

    Attributes:
        spec: ``auto`` or the regular expression given.
        kept: Kept layer names, graph order (empty when the search found nothing).
        kept_params: Parameters of the kept layers.
        total_params: Parameters of every parameter layer of the model.
        ranking: ``(layer, mean drop in points)``, most sensitive first (``auto`` only).
        steps: The search's gates (``auto`` only), in order.
        search_budget: The budget the search's gates tested (``auto`` only), points.
        verification: The gate on exactly the plan's configuration, or ``None`` when
            no plan was found.
    """

    spec: str
    kept: tuple[str, ...]
    kept_params: int
    total_params: int
    ranking: list[tuple[str, float]] = field(default_factory=list)
    steps: list[GateResult] = field(default_factory=list)
    search_budget: float | None = None
    verification: GateResult | None = None

    @property
    def verdict(self) -> str:
        """The verification's verdict; ``FAIL`` when no plan was found."""
        return self.verification.verdict if self.verification is not None else "FAIL"

    @property
    def kept_percent(self) -> float:
        """Kept parameters in percent of all the model's parameters."""
        return 100.0 * self.kept_params / self.total_params if self.total_params else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "spec": self.spec, "verdict": self.verdict, "kept": list(self.kept), "kept_params": self.kept_params,
            "total_params": self.total_params, "kept_percent": self.kept_percent,
            "ranking": [{"layer": name, "drop": drop} for name, drop in self.ranking],
            "search_budget": self.search_budget,
            "steps": [{"kept": len(g.kept), "verdict": g.verdict, "draws": len(g.draws), "mean": g.decision.bounds.mean,
                       "upper": g.decision.bounds.upper, "lower": g.decision.bounds.lower} for g in self.steps],
            "verification": None if self.verification is None else self.verification.to_dict(),
        }


def _params(session: CheckSession, names) -> int:
    by_name = {layer.name: layer for layer in session.context.layers}
    return int(sum(by_name[n].num_params for n in names))


def protected_layers(selected, spec: str) -> tuple[str, ...]:
    """The selected layers a ``--protect REGEX`` keeps noise-free (checked before any trial runs).

    Args:
        selected: The noised layers (``RunContext.selected``), each with ``name`` and ``op_type``.
        spec: A regular expression over layer names / op types (``auto`` is not one).

    Returns:
        Names of the matching layers, in model order.

    Raises:
        ConfigError: If ``spec`` does not compile, matches no selected layer, or matches all of them.
    """
    try:
        pattern = re.compile(spec)
    except re.error as exc:
        raise ConfigError(f"`--protect` {spec!r} is not a regular expression ({exc}); give auto or a REGEX") from None
    kept = tuple(layer.name for layer in selected if pattern.search(layer.name) or pattern.search(layer.op_type))
    if not kept:
        raise ConfigError(f"`--protect` {spec!r} matches no noised layer; `onnxnoise layers MODEL` lists them")
    if len(kept) == len(selected):
        raise ConfigError(f"`--protect` {spec!r} matches every noised layer; nothing would be left to noise")
    return kept


def layers_regex(names) -> str:
    """A ``--protect`` regular expression matching exactly the layers ``names`` (``^(?:a|b)$``, escaped)."""
    return "^(?:" + "|".join(re.escape(name) for name in names) + ")$"


def plan_protection(session: CheckSession, strength: float, spec: str) -> ProtectionPlan:
    """Find (``auto``) or test (a regular expression) layers to keep noise-free at ``strength``.

    Args:
        session: The check session.
        strength: The gate's strength.
        spec: ``auto`` or a regular expression over selected layer names / op types.

    Returns:
        The :class:`ProtectionPlan`.

    Raises:
        ConfigError: A regular expression that does not compile, matches no selected
            layer, or matches all of them.
    """
    total = _params(session, [layer.name for layer in session.context.layers])
    if spec != "auto":
        kept = protected_layers(session.context.selected, spec)
        return ProtectionPlan(spec, kept, _params(session, kept), total,
                              verification=session.gate(strength, kept=kept))
    first = session.settings.first_seed
    drops = session.per_layer(strength, range(first, first + RANK_SEEDS))
    ranking = sorted(((name, float(np.mean(d))) for name, d in drops.items()), key=lambda item: -item[1])
    plan = ProtectionPlan("auto", (), 0, total, ranking=ranking, search_budget=SEARCH_MARGIN * session.settings.budget)
    names = [name for name, _ in ranking]

    def passes(k: int) -> GateResult | None:
        gate = session.gate(strength, kept=names[:k], budget=plan.search_budget)
        plan.steps.append(gate)
        return gate if gate.verdict == PASS else None

    best = passes(len(names) - 1) if len(names) > 1 else None
    low, high = 0, len(names) - 1  # k = low does not pass (the failed gate), k = high does
    while best is not None and high - low > 1:
        mid = (low + high) // 2
        gate = passes(mid)
        if gate is not None:
            best, high = gate, mid
        else:
            low = mid
    if best is not None:
        plan.kept = best.kept
        plan.kept_params = _params(session, best.kept)
        plan.verification = session.gate(strength, kept=best.kept, first_seed=first + VERIFY_SEED_OFFSET)
    return plan
