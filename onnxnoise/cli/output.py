"""What the CLI prints and writes besides tables: notes, progress, and strict JSON (:mod:`onnxnoise.strict_json`)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from onnxnoise.report.progress import RichProgress
from onnxnoise.strict_json import json_text

__all__ = ["SEED_INTERVAL", "A_AVR_NOTE", "INTERVALS", "intervals_note", "json_text", "RichProgress", "written_lines"]

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


def written_lines(folder: Path, files: Sequence[Path], *, width: int = 80) -> list[str]:
    """The closing line naming the files a command wrote in ``folder``: one line when it fits ``width`` columns.

    A table written as both ``.parquet`` and ``.csv`` is named once by its stem, the others by their file name:
    ``wrote runs/b/: results, summary, trials (.parquet + .csv), bench.json``. Where the folder makes that
    longer than ``width``: ``wrote in FOLDER/:`` (the folder whole, however long), then the list indented by
    two spaces, in lines of at most ``width`` columns.

    Args:
        folder: The folder written.
        files: The files written in it, in the order to name them.
        width: Terminal columns.
    """
    stems = [p.stem for p in files if p.suffix == ".parquet" and p.with_suffix(".csv") in files]
    others = [p.name for p in files if p.stem not in stems]
    listing = ", ".join([*([", ".join(stems) + " (.parquet + .csv)"] if stems else []), *others])
    one = f"wrote {folder}/: {listing}"
    if len(one) <= width:
        return [one]
    return [f"wrote in {folder}/:", *textwrap.wrap(listing, width, initial_indent="  ", subsequent_indent="  ",
                                                   break_on_hyphens=False, break_long_words=False)]
