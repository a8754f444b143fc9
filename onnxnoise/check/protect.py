"""Protection plan: which layers to keep noise-free (digital) so the gate passes.

``--protect auto``:

1. rank the selected layers by their own drop: per-layer trials with prefix reuse
   (:data:`RANK_SEEDS` seeds, the same trials as ``sweep --mode per-layer``), each layer's mean
   drop with a two-sided :data:`RANK_CONFIDENCE` interval from the same paired bounds as the gate
   (:func:`onnxnoise.check.bounds.paired_bounds` on its per-image outcomes), most sensitive first;
2. keep the ``k`` most sensitive layers noise-free and run a gate on exactly that
   configuration; the search finds the smallest ``k`` that passes by bisection over
   ``1 .. n - 1`` (more layers kept, less noise: the drop falls as ``k`` grows), starting with
   ``n - 1``. Its gates test a tighter budget, :data:`SEARCH_MARGIN` times ``--max-drop``: a
   search that stopped where the bound just met the budget would pick a plan whose true drop sits
   at the budget, which an independent re-check then passes only half the time;
3. the boundary is *decided* when the configuration with one layer fewer kept (or the
   unprotected gate) FAILs. When it is not (INCONCLUSIVE below the passing ``k``: the images
   cannot tell those configurations apart) and the plan would keep more than :data:`WITHHOLD_SHARE`
   of the layers, no plan is proposed: the verdict is INCONCLUSIVE and the report names the undecided range of
   ``k`` and asks for more images, instead of proposing to keep almost everything;
4. otherwise verify the plan with a fresh gate at the real budget on the same configuration
   with independent seeds (``first_seed + VERIFY_SEED_OFFSET``, ...): the search tried several
   configurations and kept one that passed, so that pass is selected; the verification is not.

``--protect REGEX`` keeps the selected layers whose name or op type matches ``REGEX``
(``re.search``); ``--protect-file FILE`` keeps the layers named in ``FILE``, one per line (what
``--protect auto`` writes, :func:`write_layers_file`). Either runs one gate on that
configuration. Every plan reports the kept layers, their parameters and their share of all the
model's parameters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxnoise.check.bounds import paired_bounds
from onnxnoise.check.gate import CheckSession, GateResult
from onnxnoise.check.sequential import FAIL, INCONCLUSIVE, PASS, Draw, stream_stats
from onnxnoise.errors import ConfigError
from onnxnoise.files import write_text

__all__ = ["RANK_SEEDS", "RANK_CONFIDENCE", "VERIFY_SEED_OFFSET", "SEARCH_MARGIN", "WITHHOLD_SHARE", "LAYERS_FILE",
           "LayerRank", "ProtectionPlan", "plan_protection", "protected_layers", "layer_interval",
           "write_layers_file", "read_layers_file"]

#: Seeds per layer for the sensitivity ranking.
RANK_SEEDS: int = 3
#: Two-sided confidence of each layer's drop interval in the ranking.
RANK_CONFIDENCE: float = 0.95
#: The verification gate's first seed is the gate's first seed plus this.
VERIFY_SEED_OFFSET: int = 1000
#: The search's gates test this fraction of ``--max-drop`` (a margin for the verification).
SEARCH_MARGIN: float = 0.75
#: An undecided plan (fewer kept layers inconclusive) keeping more than this share of the layers is not proposed.
WITHHOLD_SHARE: float = 0.75
#: File name of the kept layers ``--protect auto`` writes next to the reports.
LAYERS_FILE: str = "protect-layers.txt"


@dataclass(frozen=True)
class LayerRank:
    """One layer's own drop (noise in that layer alone), points.

    Attributes:
        layer: Layer name.
        drop: Mean drop over the ranking draws.
        lower, upper: Two-sided :data:`RANK_CONFIDENCE` interval (:func:`layer_interval`).
    """

    layer: str
    drop: float
    lower: float
    upper: float


def layer_interval(draws: list[Draw], confidence: float = RANK_CONFIDENCE) -> tuple[float, float, float]:
    """``(mean, lower, upper)`` drop of one layer's draws, points: the gate's paired bounds at ``(1 - confidence) / 2``
    per side (:func:`onnxnoise.check.bounds.paired_bounds`; NaN bounds with fewer than 2 draws)."""
    drops = np.array([[d.drop for d in draws]], dtype=np.float64)
    mean = float(drops.mean())
    if len(draws) < 2:
        return mean, math.nan, math.nan
    first = draws[0]
    clean = 100.0 * first.clean / first.images if first.clean is not None and first.images else math.nan
    b = paired_bounds(drops, stream_stats(draws), first.images, clean, (1.0 - confidence) / 2.0)
    return mean, float(b["lower"][0]), float(b["upper"][0])


def write_layers_file(path: Path, names) -> Path:
    """Write ``names`` one per line (the ``--protect-file`` format; its folder created); returns ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(Path(path), "".join(f"{name}\n" for name in names))
    return Path(path)


def read_layers_file(path: Path, selected) -> tuple[str, ...]:
    """The selected layers named in ``path`` (one name per line; blank lines and ``#`` comments ignored), model order.

    Raises:
        ConfigError: The file cannot be read, names a layer that is not selected, names none, or all.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"`--protect-file` {path}: cannot read it ({exc}); give a text file of layer names") from None
    names = {line.strip() for line in lines if line.strip() and not line.strip().startswith("#")}
    known = {layer.name for layer in selected}
    unknown = sorted(names - known)
    if unknown:
        raise ConfigError(f"`--protect-file` {path} names {len(unknown)} layer(s) that are not noised, e.g. "
                          f"{unknown[0]!r}; `onnxnoise layers MODEL` lists them")
    kept = tuple(layer.name for layer in selected if layer.name in names)
    if not kept:
        raise ConfigError(f"`--protect-file` {path} names no layer; write one layer name per line")
    if len(kept) == len(selected):
        raise ConfigError(f"`--protect-file` {path} names every noised layer; nothing would be left to noise")
    return kept


@dataclass
class ProtectionPlan:
    """A set of layers kept noise-free, and whether the gate passes with them kept.

    Attributes:
        spec: ``auto``, the regular expression given, or ``file PATH``.
        kept: Kept layer names, graph order (empty when no plan is proposed).
        kept_params: Parameters of the kept layers.
        total_params: Parameters of every parameter layer of the model.
        ranking: :class:`LayerRank` of every selected layer, most sensitive first (``auto`` only).
        steps: The search's gates (``auto`` only), in order.
        search_budget: The budget the search's gates tested (``auto`` only), points.
        verification: The gate on exactly the plan's configuration, or ``None`` when no plan is proposed.
        undecided: ``(fewest, most)`` kept layers whose configurations the search could not decide
            (INCONCLUSIVE) below the smallest passing one, or ``None``.
        note: Why no plan is proposed, or ``""``.
    """

    spec: str
    kept: tuple[str, ...]
    kept_params: int
    total_params: int
    ranking: list[LayerRank] = field(default_factory=list)
    steps: list[GateResult] = field(default_factory=list)
    search_budget: float | None = None
    verification: GateResult | None = None
    undecided: tuple[int, int] | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        """The verification's verdict; without one INCONCLUSIVE when a search gate was, else FAIL."""
        if self.verification is not None:
            return self.verification.verdict
        return INCONCLUSIVE if self.undecided or any(g.verdict == INCONCLUSIVE for g in self.steps) else FAIL

    @property
    def kept_percent(self) -> float:
        """Kept parameters in percent of all the model's parameters."""
        return 100.0 * self.kept_params / self.total_params if self.total_params else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "spec": self.spec, "verdict": self.verdict, "kept": list(self.kept), "kept_params": self.kept_params,
            "total_params": self.total_params, "kept_percent": self.kept_percent,
            "ranking": [{"layer": r.layer, "drop": r.drop, "lower": r.lower, "upper": r.upper} for r in self.ranking],
            "rank_confidence": RANK_CONFIDENCE if self.ranking else None,
            "search_budget": self.search_budget,
            "steps": [{"kept": len(g.kept), "verdict": g.verdict, "draws": len(g.draws), "mean": g.decision.bounds.mean,
                       "upper": g.decision.bounds.upper, "lower": g.decision.bounds.lower} for g in self.steps],
            "undecided": None if self.undecided is None else list(self.undecided), "note": self.note,
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


def plan_protection(session: CheckSession, strength: float, spec: str, *, kept: tuple[str, ...] | None = None,
                    unprotected: GateResult | None = None) -> ProtectionPlan:
    """Find (``auto``) or test (a regular expression, or ``kept`` layers read from a file) layers to keep noise-free.

    Args:
        session: The check session.
        strength: The gate's strength.
        spec: ``auto``, a regular expression over selected layer names / op types, or a label
            (``file PATH``) when ``kept`` is given.
        kept: The layers to keep (``--protect-file``), overriding ``spec``.
        unprotected: The gate without protection, if run (its verdict decides the boundary at ``k = 0``).

    Returns:
        The :class:`ProtectionPlan`.

    Raises:
        ConfigError: A regular expression that does not compile, matches no selected
            layer, or matches all of them.
    """
    total = _params(session, [layer.name for layer in session.context.layers])
    if kept is not None or spec != "auto":
        kept = kept if kept is not None else protected_layers(session.context.selected, spec)
        return ProtectionPlan(spec, kept, _params(session, kept), total,
                              verification=session.gate(strength, kept=kept))
    first = session.settings.first_seed
    draws = session.per_layer(strength, range(first, first + RANK_SEEDS))
    ranking = sorted((LayerRank(name, *layer_interval(d)) for name, d in draws.items()), key=lambda r: -r.drop)
    plan = ProtectionPlan("auto", (), 0, total, ranking=ranking, search_budget=SEARCH_MARGIN * session.settings.budget)
    names = [r.layer for r in ranking]
    verdicts: dict[int, str] = {0: unprotected.verdict} if unprotected is not None else {}

    def passes(k: int) -> GateResult | None:
        gate = session.gate(strength, kept=names[:k], budget=plan.search_budget)
        plan.steps.append(gate)
        verdicts[k] = gate.verdict
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
    if best is None:
        last = plan.steps[-1] if plan.steps else None
        if last is not None and last.verdict == INCONCLUSIVE:
            b = last.decision.bounds
            plan.note = (f"the gate cannot decide on {len(session.context.data)} images: even keeping {len(names) - 1} "
                         f"of {len(names)} layers noise-free, the drop {b.mean:.2f} has bounds [{b.lower:.2f}, "
                         f"{b.upper:.2f}] against the search's {plan.search_budget:g} points; no plan proposed: "
                         "evaluate more images (a larger --limit or dataset), allow more draws (--max-seeds) or check "
                         "a larger --max-drop")
        else:
            plan.note = (f"no configuration passes: even keeping {len(names) - 1} of {len(names)} layers noise-free "
                         f"fails {plan.search_budget:g} points")
        return plan
    k = len(best.kept)
    failing = max((j for j, v in verdicts.items() if j < k and v == FAIL), default=None)
    open_ = [j for j, v in verdicts.items() if j < k and v != FAIL and v != PASS and (failing is None or j > failing)]
    if open_:
        plan.undecided = ((failing + 1) if failing is not None else min(open_), k - 1)
    if plan.undecided is not None and k > WITHHOLD_SHARE * len(names):
        images = len(session.context.data)
        tried = ", ".join(str(j) for j in sorted(open_))
        plan.note = (f"the gate cannot decide on {images} images which layers suffice: keeping {plan.undecided[0]} to "
                     f"{plan.undecided[1]} of {len(names)} layers is undecided (inconclusive with {tried} kept), and "
                     f"only keeping {k} passed; no plan proposed: evaluate more images (a larger --limit or dataset) "
                     "or allow more draws (--max-seeds)")
        return plan
    plan.kept = best.kept
    plan.kept_params = _params(session, best.kept)
    plan.verification = session.gate(strength, kept=best.kept, first_seed=first + VERIFY_SEED_OFFSET)
    return plan
