"""onnxnoise/cli/output.py: the closing line naming the files a command wrote (bench's run folder)."""

from __future__ import annotations

from pathlib import Path

from onnxnoise.cli.output import written_lines

BENCH = ("results", "summary", "trials")


def _files(folder: Path, stems=BENCH, others=("bench.json",)) -> list[Path]:
    return [*(folder / f"{s}.{x}" for s in stems for x in ("parquet", "csv")), *(folder / o for o in others)]


def test_a_short_folder_and_its_tables_are_one_line():
    assert written_lines(Path("runs/b"), _files(Path("runs/b"))) == [
        "wrote runs/b/: results, summary, trials (.parquet + .csv), bench.json"]


def test_a_long_folder_gets_its_own_line_and_the_list_stays_within_80_columns():
    folder = Path("/tmp/pytest-of-someone/pytest-123/test_a_long_folder_name0/reports/resnet20-20261205-104500")
    files = _files(folder, (*BENCH, "scope-check"), ("bench.json", "calibration.json"))
    lines = written_lines(folder, files)
    assert lines == [f"wrote in {folder}/:",
                     "  results, summary, trials, scope-check (.parquet + .csv), bench.json,",
                     "  calibration.json"]
    assert max(len(line) for line in lines[1:]) <= 80
    # the two-line form whenever the one line would pass the width
    assert written_lines(Path("runs/b"), _files(Path("runs/b")), width=40)[0] == "wrote in runs/b/:"
