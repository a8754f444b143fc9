"""Confidence intervals used at every layer: a Student t mean interval and a binomial proportion interval.

The lowest statistics module (numpy and scipy only): the engine (stopping rules, baseline checks),
the reports and the gate all import it; :mod:`onnxnoise.report.stats` re-exports both functions.
"""

from __future__ import annotations

import math

import numpy as np

from onnxnoise.lazy import lazy_module

_sps = lazy_module("scipy.stats")

__all__ = ["t_half_width", "binomial_interval", "check_level", "scalar_or_array"]


def t_half_width(std: np.ndarray | float, n: np.ndarray | float, level: float = 0.95) -> np.ndarray:
    """Half-width of the two-sided Student t confidence interval of a mean.

    ``h = t_{(1 + level) / 2, n - 1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (``ddof = 1``) of ``n`` values; quantiles from ``scipy.stats.t``.

    Args:
        std: Sample standard deviation(s).
        n: Number(s) of values.
        level: Confidence level in (0, 1).

    Returns:
        The half-width(s), float64; NaN where ``n < 2`` or ``std`` is NaN.

    Raises:
        ValueError: If ``level`` is not in (0, 1).
    """
    check_level(level)
    std = np.asarray(std, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = _sps.t.ppf((1.0 + level) / 2.0, np.where(n >= 2, n - 1.0, np.nan))
        return q * std / np.sqrt(n)


def binomial_interval(
    correct: np.ndarray | int,
    n: np.ndarray | int,
    level: float = 0.95,
    *,
    method: str = "wilson",
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Confidence interval of an accuracy ``correct / n`` seen as a binomial proportion.

    ``wilson``: Wilson score interval (E. B. Wilson, JASA 22, 1927; method 3 of
    R. G. Newcombe, Stat. Med. 17, 1998; recommended by Brown, Cai & DasGupta,
    Stat. Sci. 16, 2001)::

        p = k/n, z = Phi^-1((1 + level)/2)
        center = (p + z^2/(2n)) / (1 + z^2/n)
        half   = z sqrt(p(1-p)/n + z^2/(4n^2)) / (1 + z^2/n)

    ``clopper-pearson``: the exact interval (Clopper & Pearson, Biometrika 26, 1934)
    from beta quantiles, ``[B(a/2; k, n-k+1), B(1-a/2; k+1, n-k)]``, ``a = 1 - level``,
    with 0 / 1 at ``k = 0`` / ``k = n``. Both match
    ``scipy.stats.binomtest(k, n).proportion_ci(level, method)``.

    Args:
        correct: Correct predictions ``k`` (integer, ``0 <= k <= n``), scalar or array.
        n: Images evaluated (integer > 0), broadcast against ``correct``.
        level: Confidence level in (0, 1).
        method: ``"wilson"`` or ``"clopper-pearson"``.

    Returns:
        ``(low, high)`` as fractions in [0, 1] (multiply by 100 for percent): floats
        for scalar input, else float64 arrays of the broadcast shape.

    Raises:
        ValueError: On an unknown method, a level outside (0, 1), ``n < 1`` or
            ``correct`` outside ``[0, n]``.
    """
    check_level(level)
    k = np.asarray(correct, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n) or np.any(k != np.round(k)):
        msg = f"`correct` must be integers in [0, n] with `n` >= 1, got correct={correct!r}, n={n!r}"
        raise ValueError(msg)
    k, n = np.broadcast_arrays(k, n)
    alpha = 1.0 - level
    if method == "wilson":
        z = _sps.norm.ppf(1.0 - alpha / 2.0)
        p = k / n
        denom = 1.0 + z * z / n
        center = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
        # The score interval reaches 0 at k = 0 and 1 at k = n exactly; avoid rounding residue.
        low = np.where(k == 0, 0.0, np.clip(center - half, 0.0, 1.0))
        high = np.where(k == n, 1.0, np.clip(center + half, 0.0, 1.0))
        return scalar_or_array(low), scalar_or_array(high)
    if method == "clopper-pearson":
        with np.errstate(invalid="ignore"):
            low = np.where(k == 0, 0.0, _sps.beta.ppf(alpha / 2.0, k, n - k + 1.0))
            high = np.where(k == n, 1.0, _sps.beta.ppf(1.0 - alpha / 2.0, k + 1.0, n - k))
        return scalar_or_array(low), scalar_or_array(high)
    msg = f"`method` must be 'wilson' or 'clopper-pearson', got {method!r}"
    raise ValueError(msg)


def scalar_or_array(x: np.ndarray) -> np.ndarray | float:
    """``x`` as a Python float when it is 0-d, else as a float64 array."""
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def check_level(level: float) -> None:
    """Raise ``ValueError`` unless ``level`` is a confidence level in (0, 1)."""
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0) or math.isnan(level):
        msg = f"`level` must be in (0, 1), e.g. 0.95, got {level!r}"
        raise ValueError(msg)
