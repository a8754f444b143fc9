"""The check's result panel (onnxnoise/cli/check_summary.py): a tolerance search is told in words."""

from __future__ import annotations

from rich.console import Console

from onnxnoise.cli.check_summary import print_summary
from tests.check.test_outputs import search_report


def test_the_panel_says_no_strength_passes_in_words_and_units():
    """fresh22 finding 4: the panel printed "noisiest passing None, bracket [None, 1.0], 1 gates"; the brackets of
    the strength range are text, not rich markup (which would swallow them)."""
    console = Console(width=120, record=True, color_system=None)
    print_summary(console, search_report(None, (None, 1.0), [(1.0, "INCONCLUSIVE")]))
    lines = [line.strip("│ ") for line in console.export_text().splitlines()]
    assert ("search: no strength in [t = 1 s, t = 10 y] passes (t = 1 s, the least noisy, is INCONCLUSIVE); 1 gate"
            in lines)
    assert not any("None" in line for line in lines)
