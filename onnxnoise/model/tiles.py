"""How a weight's input rows are cut into analog tiles: one rule for the tile stages and the mappings.

An analog crossbar has a fixed number of input rows ``R`` (aihwkit's ``max_input_size``, 512 in
its inference presets; CrossSim's array rows, 576 in its ISCA 2024 tutorial). A weight matrix with
more input rows is stored on several tiles whose partial sums are read separately
(:mod:`onnxnoise.tile`) and whose columns may each have their own full scale
(:mod:`onnxnoise.noise.mapping`, ``mapping=tile-column``). Both read the cut from
:func:`tile_chunks`, so a tile's weights and its partial sum are the same set of rows.

The rule: the fewest tiles of at most ``R`` rows, with the rows spread over them as evenly as
whole units allow (aihwkit's ``TileModuleArray`` cuts the rows into ``ceil(rows / R)`` equal
parts: ResNet-32's 576-row 3x3 convolutions into 288 + 288, not 512 + 64). A unit is one input
channel's whole kernel for a convolution (``kh * kw`` rows, never cut: a tile holds at most
``floor(R / (kh * kw))`` channels, at least 1) and one row of ``K`` for Gemm / MatMul.
"""

from __future__ import annotations

__all__ = ["tile_chunks"]


def tile_chunks(units: int, unit_rows: int, tile_rows: int) -> tuple[tuple[int, int], ...]:
    """The tiles of a weight: ``(start, stop)`` ranges of its input units, in order.

    Args:
        units: Input units of the weight (a convolution's input channels per group; ``K`` of a
            Gemm / MatMul), >= 1.
        unit_rows: Input rows per unit (``kh * kw`` for a convolution, 1 otherwise), >= 1.
        tile_rows: ``R``, the most input rows per tile; 0 (or less) for one tile.

    Returns:
        ``n = ceil(units / max(1, R // unit_rows))`` ranges covering ``0..units``; their sizes
        differ by at most one unit, the larger ones first. E.g. 1,000 rows of K with ``R = 256``:
        4 tiles of 250; 64 channels of 3x3 kernels with ``R = 512``: 2 tiles of 32 channels (288 rows).
    """
    if tile_rows <= 0 or units <= 0:
        return ((0, max(units, 0)),)
    most = max(1, tile_rows // max(unit_rows, 1))
    count = -(-units // most)
    size, extra = divmod(units, count)
    chunks, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        chunks.append((start, stop))
        start = stop
    return tuple(chunks)
