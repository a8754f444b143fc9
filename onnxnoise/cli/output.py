"""What the CLI prints and writes besides tables: notes, progress, and strict JSON (:mod:`onnxnoise.strict_json`)."""

from __future__ import annotations

from onnxnoise.report.progress import RichProgress
from onnxnoise.strict_json import json_text

__all__ = ["SEED_INTERVAL", "A_AVR_NOTE", "INTERVALS", "intervals_note", "json_text", "RichProgress"]

#: What ± means in the report and compare tables.
SEED_INTERVAL = ("± = 95% Student t interval over seeds ([low, high] when it leaves the possible range: below 0, "
                 "above 100%)")
#: What A_avr means, for output that shows an A_avr table.
A_AVR_NOTE = "A_avr = mean over layers of a/a0 with noise in one layer at a time (paper eq. 3)"
#: Both notes: the footer of ``compare`` (always an A_avr table).
INTERVALS = f"{SEED_INTERVAL}; {A_AVR_NOTE}"


def intervals_note(*, a_avr: bool) -> str:
    """The footer under summary tables: what ± means, and what A_avr means only when an A_avr table is shown."""
    return INTERVALS if a_avr else SEED_INTERVAL
