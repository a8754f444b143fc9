"""The one rule that cuts a weight's input rows into tiles (stages and tile-column mapping share it)."""

from __future__ import annotations

import pytest

from onnxnoise.model.tiles import tile_chunks


@pytest.mark.parametrize(("units", "unit_rows", "rows", "expected"), [
    (1000, 1, 256, ((0, 250), (250, 500), (500, 750), (750, 1000))),   # the 1,000-row layer: 4 tiles
    (64, 9, 512, ((0, 32), (32, 64))),                                  # ResNet-32's 576-row convs: 288 + 288 (aihwkit)
    (10, 1, 3, ((0, 3), (3, 6), (6, 8), (8, 10))),                      # uneven: larger tiles first
    (16, 9, 4, tuple((c, c + 1) for c in range(16))),                   # a kernel larger than R: one channel per tile
    (7, 1, 0, ((0, 7),)),                                               # R = 0: one tile
    (7, 1, 100, ((0, 7),)),                                             # fits in one tile
])
def test_tile_chunks_are_the_fewest_tiles_of_at_most_r_rows_spread_evenly(units, unit_rows, rows, expected):
    chunks = tile_chunks(units, unit_rows, rows)
    assert chunks == expected
    assert all((stop - start) * unit_rows <= max(rows, unit_rows) or rows <= 0 for start, stop in chunks)
