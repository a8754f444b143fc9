"""Does the answer depend on the scope of sigma? Per tensor against per output channel, same draws, same images.

``bench --scope-check N`` re-runs the ``N`` strengths where noise in all layers lost the most
top-1 with ``scope=channel`` (one sigma per output channel: :mod:`onnxnoise.noise.scope`) and
compares with the run's own scope (``tensor`` by default). ``gaussian-snr`` draws the same
``z`` in every scope (common random numbers; :class:`onnxnoise.noise.gaussian.GaussianSnr`), so
seed ``s`` of both runs differs only by the sigma each channel gets, and the per-seed
difference ``d_s = a_channel,s - a_tensor,s`` (top-1 points, same images) is paired: its
interval is the paired Student t interval with the images' term where the trials carry their
image count (:func:`onnxnoise.report.versus.paired_difference` with ``images``: the fewest images
that can differ, so a difference of the same one image in every seed is not a "depends").
The answer *depends on the scope* when that 95% interval excludes 0 (the issue 21 case:
MobileNetV2 with BatchNorm folded into depthwise kernels, 21.4% top-1 per tensor vs 65.6% per
channel at 1% noise).
"""

from __future__ import annotations

from onnxnoise.lazy import lazy_module
from onnxnoise.report.versus import paired_difference

pl = lazy_module("polars")

__all__ = ["scope_effect", "scope_sentence"]


def scope_effect(tensor: pl.DataFrame, channel: pl.DataFrame, *, level: float = 0.95) -> pl.DataFrame:
    """Per strength, top-1 with the run's scope against ``scope=channel``, paired by seed.

    Args:
        tensor: Noisy trials (mode ``all``) of the run's own scope: ``strength``, ``seed``, ``top1_acc``
            (percent), ``error`` and optionally ``images`` (adds the images' term to the interval); the
            strengths of ``channel`` are compared.
        channel: The same strengths and seeds re-run with ``scope=channel``.
        level: Confidence level.

    Returns:
        One row per strength of ``channel`` (in its order): ``strength``, ``seeds`` (seeds both have),
        ``top1_scope`` and ``top1_channel`` (means over those seeds, percent), ``difference`` (channel minus
        the run's scope, points), ``ci_half`` (half-width at ``ci_level``; null with fewer than two seeds) and ``depends``
        (the interval excludes 0; null without an interval).
    """
    def ok(frame: pl.DataFrame) -> pl.DataFrame:
        valid = pl.col("top1_acc").is_not_null() & (pl.col("mode") == "all")
        return frame.filter(valid & pl.col("error").is_null() if "error" in frame.columns else valid)

    tensor, channel = ok(tensor), ok(channel)
    rows = []
    for strength in channel["strength"].unique(maintain_order=True).to_list():
        cols = ["seed", "top1_acc"] + (["images"] if "images" in tensor.columns else [])
        a = tensor.filter(pl.col("strength") == strength).select(cols)
        b = channel.filter(pl.col("strength") == strength).select(cols)
        both = a.join(b, on="seed", suffix="_channel").sort("seed")
        if both.is_empty():
            continue
        n = int(both["images"][0]) if "images" in both.columns and both["images"][0] is not None else None
        diff, ci = paired_difference(both["top1_acc"].to_numpy(), both["top1_acc_channel"].to_numpy(), level,
                                     images=n)
        ci = None if ci != ci else ci
        rows.append({"strength": strength, "seeds": both.height, "top1_scope": float(both["top1_acc"].mean()),
                     "top1_channel": float(both["top1_acc_channel"].mean()), "difference": diff,
                     "ci_half": ci, "ci_level": level,
                     "depends": None if ci is None else abs(diff) > ci})
    schema = {"strength": pl.Float64, "seeds": pl.Int64, "top1_scope": pl.Float64, "top1_channel": pl.Float64,
              "difference": pl.Float64, "ci_half": pl.Float64, "ci_level": pl.Float64, "depends": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)


def scope_sentence(row: dict, strength_text: str, scope: str = "tensor") -> str:
    """One line for a :func:`scope_effect` row.

    ``"SNR 5: top-1 69.2% with sigma per tensor, 84.1% per output channel (+14.9 +- 9.8 points, paired over
    5 seeds): the answer depends on the scope"``; ``"... does not depend on the scope here (the interval
    holds 0)"``; with one seed, ``"... no interval (one seed): run --seeds 2 or more"``.
    """
    ci = row["ci_half"]
    diff = f"{row['difference']:+.1f}" + ("" if ci is None else f" +- {ci:.1f}")
    head = (f"{strength_text}: top-1 {row['top1_scope']:.1f}% with sigma per {scope}, {row['top1_channel']:.1f}% "
            f"per output channel ({diff} points, paired over {row['seeds']} seed{'s' if row['seeds'] != 1 else ''})")
    if row["depends"] is None:
        return f"{head}: no interval from one seed; run --seeds 2 or more to say whether the scope matters"
    if row["depends"]:
        return f"{head}: the answer depends on the scope"
    return f"{head}: the answer does not depend on the scope here (the interval holds 0)"
