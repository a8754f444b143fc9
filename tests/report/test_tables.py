"""report/tables.py: a table that cannot be written is an ``OSError`` naming it, the previous table kept whole."""

from __future__ import annotations

import errno
import resource

import polars as pl
import pytest

from onnxnoise.report.nested import flat_text
from onnxnoise.report.tables import markdown_table, write_table
from tests._disk import leftovers


def test_a_file_size_limit_while_writing_parquet_is_an_os_error_naming_the_table(tmp_path):
    """RLIMIT_FSIZE of 4 KiB (Python ignores SIGXFSZ, so the write fails with EFBIG as a full disk fails with
    ENOSPC): Polars writing to the file raised ``ComputeError: ... Invalid thrift: transport error``."""
    write_table(pl.DataFrame({"seed": [0, 1]}), tmp_path, "trials")
    old = (tmp_path / "trials.parquet").read_bytes()
    big = pl.DataFrame({"seed": list(range(100_000)), "top1": [i / 7 for i in range(100_000)]})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OSError) as info:
            write_table(big, tmp_path, "trials")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.errno == errno.EFBIG and info.value.filename == str(tmp_path / "trials.parquet")
    assert (tmp_path / "trials.parquet").read_bytes() == old and leftovers(tmp_path) == []
    assert pl.read_parquet(tmp_path / "trials.parquet")["seed"].to_list() == [0, 1]


def test_tables_are_written_whole(tmp_path):
    frame = pl.DataFrame({"seed": [3, 4], "acc": [0.5, 0.25]})
    paths = write_table(frame, tmp_path / "new", "summary")
    assert [p.name for p in paths] == ["summary.parquet", "summary.csv"]
    assert pl.read_parquet(paths[0]).equals(frame) and pl.read_csv(paths[1]).equals(frame)


def test_list_columns_stay_typed_in_parquet_and_are_json_text_in_csv(tmp_path):
    frame = pl.DataFrame({"layers": [["conv1"], ["a", "b"], []], "n": [1, 2, 3]},
                         schema={"layers": pl.List(pl.String), "n": pl.Int64})
    write_table(frame, tmp_path, "t")
    assert pl.read_parquet(tmp_path / "t.parquet").equals(frame)
    assert pl.read_csv(tmp_path / "t.csv")["layers"].to_list() == ['["conv1"]', '["a","b"]', "[]"]
    assert flat_text(frame.drop("layers")).equals(frame.drop("layers"))


def test_markdown_table():
    assert markdown_table(["a", "b"], [["1", "2"], ["x", ""]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| x |  |"
