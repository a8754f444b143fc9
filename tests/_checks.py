"""Small helpers the tests share: rows in a trial store, a rich table as text, accuracy columns,
the CLI run in process (exit code, stdout, stderr), its one error line, a command's help, strict JSON."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from onnxnoise.cli import main
from onnxnoise.store import open_store


def stored_rows(db: Path) -> int:
    """Trials committed to the SQLite store ``db`` so far (0 before the writer made it), read-only."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.Error:
        return 0  # the writer is still creating the schema


def console_text(renderable) -> str:
    """What rich prints for ``renderable`` on a 300-column console without colours."""
    console = Console(record=True, width=300, color_system=None)
    console.print(renderable)
    return console.export_text()


def with_accuracy(frame: pl.DataFrame) -> pl.DataFrame:
    """``top1_acc`` / ``top5_acc`` (percent) from the ``*_correct`` counts and ``images``."""
    return frame.with_columns((100.0 * pl.col(f"{t}_correct") / pl.col("images")).alias(f"{t}_acc")
                              for t in ("top1", "top5"))


def run_cli(capture, *argv) -> tuple[int, str, str]:
    """``onnxnoise.cli.main(argv)`` in process: ``(exit code, stdout, stderr)`` read from ``capture``.

    ``capture`` is pytest's ``capsys`` (or ``capfd`` where ONNX Runtime's own C++ log on fd 2 counts);
    each item of ``argv`` is passed as ``str(item)``, so paths may be given as they are.
    """
    code = main([str(a) for a in argv])
    out, err = capture.readouterr()
    return code, out, err


def help_words(capture, command: str) -> str:
    """``onnxnoise COMMAND --help`` as words joined by single spaces (argparse wraps lines); exit 0 checked."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capture.readouterr().out.split())


def one_line(err: str) -> str:
    """The one line of ``err``; fails the test when it holds more lines or a traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def flat(text: str) -> str:
    """Console text with rich's line wrapping undone (runs of whitespace become one space)."""
    return " ".join(text.split())


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity tokens, as strict parsers do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def stored_frame(out: Path) -> pl.DataFrame:
    with open_store(out / "trials.sqlite", create=False) as store:
        return store.to_frame()


#: On a test that reads the committed reports/ (it checks those reports themselves): skipped where they are absent,
#: as in the files of the sdist (pyproject's sdist `exclude`; fresh22 finding 5).
needs_committed_reports = pytest.mark.skipif(
    not (Path(__file__).resolve().parents[1] / "reports").is_dir(),
    reason="reads the committed reports/, which the sdist leaves out (pyproject.toml: sdist exclude)")
