"""The blame table shown: 80-column terminal table (top N), report.md section, drop cells, the figure."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from onnxnoise.report.blame import blame_table
from onnxnoise.report.blame_view import (
    blame_console, blame_groups, blame_markdown, drop_cell, drop_limits, plot_blame,
)
from onnxnoise.report.stats import summarize_trials
from tests._frames import layer_frame

LONG = "/features/features.16/conv/conv.3/Conv_depthwise_folded"


def _blame(layers: int = 120) -> pl.DataFrame:
    per_layer = {(s, i): [900 - (i * 7) % 50 - (20 if s == 3.0 else 0), 890 - (i * 7) % 50] for s in (3.0, 10.0)
                 for i in range(layers)}
    names = {i: (LONG if i == 3 else f"block{i}.conv") for i in range(layers)}
    frame = layer_frame(per_layer, names=names)
    return blame_table(frame, summarize_trials(frame))


def test_drop_cell_plus_minus_and_clipped_to_the_possible_drops():
    assert drop_cell(5.08, 3.084) == "5.08 ± 3.08"
    assert drop_cell(1.0, None) == "1.00" and drop_cell(None, 1.0) == "-"
    # clean 90%: a drop lies in [-10, 90]
    assert drop_cell(85.0, 10.0, 90.0) == "85.00 [75.00, 90.00]"
    assert drop_cell(-8.0, 5.0, 90.0) == "-8.00 [-10.00, -3.00]"


def test_console_table_shows_the_top_n_and_fits_80_columns():
    tables = blame_console(_blame(), top=10)
    assert len(tables) == 1
    console = Console(record=True, width=80, color_system=None)
    console.print(tables[0])
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    words = " ".join(text.split())
    assert "worst 10 of 120" in words and "SNR 3" in words
    rows = [line for line in text.splitlines() if line.startswith("│") and line[1:4].strip().isdigit()]
    assert len(rows) == 10
    # rank 1: layer 7 ((7*7) % 50 = 49, the largest drop); layer 1 ((1*7) % 50 = 7) is far from the top 10
    assert rows[0].split("│")[1].strip() == "1" and "block7.conv" in rows[0]
    assert "block1.conv " not in text


def test_markdown_names_every_layer_worst_first_with_drops_at_each_strength():
    lines = "\n".join(blame_markdown(_blame(layers=5))).splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| rank | layer | op type | parameters | share % | drop at SNR 3")
    assert "drop at SNR 10" in table[0]
    body = table[1:]
    assert len(body) == 5 and body[0].startswith("| 1 | `block4.conv` |")  # (4*7) % 50 = 28: largest drop
    # layer 4 at SNR 3: clean 900 hits of 1000, draws 900-28-20 = 852 and 890-28 = 862 hits: drops 4.8 and 3.8
    # points, mean 4.3 ± t(.975, 1) 0.707 / sqrt(2) = 6.35; at SNR 10: 872 and 862 hits, mean drop 3.3
    assert "| 4.30 ± 6.35 | 3.30 |" in body[0]
    assert blame_markdown(pl.DataFrame()) == []


def test_plot_blame_labels_the_worst_layers_by_name():
    blame = _blame()
    (_, part), = blame_groups(blame)
    fig = plot_blame(part, blame, worst=15)
    left, right = fig.axes
    labels = [t.get_text() for t in right.get_yticklabels()]
    assert len(labels) == 15 and labels[0] == "block7.conv (#7)"
    assert len(left.get_lines()) == 2 + 1  # one line per strength and the zero line


def test_plot_blame_error_bars_stay_in_the_possible_drops():
    """A layer whose two draws lose 80 and 0 points (clean 90%): mean 40 ± t(.975, 1) 56.57 / sqrt(2) = 508.2; the
    table prints [-10.00, 90.00] and the bar's whiskers end there too (they reached -468 and 548 before)."""
    frame = layer_frame({(3.0, 0): [100, 900], (3.0, 1): [890, 880]})
    blame = blame_table(frame, summarize_trials(frame))
    (_, part), = blame_groups(blame)
    row = part.row(0, named=True)
    assert row["drop_ci_half"] == pytest.approx(12.7062 * 40.0, rel=1e-4)
    assert drop_cell(row["drop_mean"], row["drop_ci_half"], row["top1_base"]) == "40.00 [-10.00, 90.00]"
    fig = plot_blame(part, blame, worst=2)
    _, right = fig.axes
    whiskers = [seg for coll in right.collections for seg in coll.get_segments()]
    ends = sorted(((float(min(s[:, 0])), float(max(s[:, 0]))) for s in whiskers if np.ptp(s[:, 0]) > 0),
                  key=lambda e: e[1] - e[0])
    assert len(ends) == 2 and ends[-1] == pytest.approx((-10.0, 90.0))  # layer 0's whisker, the widest
    low, high = drop_limits([40.0, 1.5], [508.2, 0.5], [90.0, float("nan")])
    assert low.tolist() == [-10.0, 1.0] and high.tolist() == [90.0, 2.0]
