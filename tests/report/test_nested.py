"""report/nested.py: the store's JSON text as typed Parquet columns, and the one flattening rule for CSV."""

from __future__ import annotations

import polars as pl

from onnxnoise.report.nested import flat_text, json_rows, typed_nested
from onnxnoise.report.tables import write_table


def _frame() -> pl.DataFrame:
    return pl.DataFrame({
        "layers": ['["conv1","fc"]', "[]"],
        "noise": ['{"bn_variance":"clamp","keep_zeros":false,"params":{}}',
                  '{"bn_variance":"keep","keep_zeros":true,"params":{}}'],
        "settings": ['{"tile_rows":576}', None],
        "changed_values": ['{"conv1":144,"fc":330}', "{}"],
        "versions": ['{"numpy":"2.4.6","onnxnoise":"0.1.0"}', '{"onnxnoise":"0.1.0"}'],
        "seed": [0, 1],
    })


def test_json_columns_become_lists_and_structs_with_their_fields():
    typed = typed_nested(_frame())
    assert typed.schema["layers"] == pl.List(pl.String)
    assert typed.schema["changed_values"] == pl.List(pl.Struct({"layer": pl.String, "count": pl.Int64}))
    # params is {} in every row: Parquet has no empty struct, so the field is left out
    assert typed.schema["noise"] == pl.Struct({"bn_variance": pl.String, "keep_zeros": pl.Boolean})
    assert typed.schema["settings"] == pl.Struct({"tile_rows": pl.Int64})
    assert typed.schema["versions"] == pl.Struct({"numpy": pl.String, "onnxnoise": pl.String})
    assert typed["changed_values"].to_list() == [[{"layer": "conv1", "count": 144}, {"layer": "fc", "count": 330}], []]
    assert typed["versions"].to_list()[1] == {"numpy": None, "onnxnoise": "0.1.0"}  # union of the rows' keys
    assert typed["settings"].to_list() == [{"tile_rows": 576}, None]
    assert typed["seed"].to_list() == [0, 1] and typed_nested(typed).equals(typed)  # typed already: unchanged


def test_python_json_infinity_is_read_too():
    typed = typed_nested(pl.DataFrame({"context": ['{"snr":Infinity,"x":1}', '{"snr":2.0,"x":2}']}))
    assert typed.schema["context"] == pl.Struct({"snr": pl.Float64, "x": pl.Int64})
    assert typed["context"].to_list() == [{"snr": float("inf"), "x": 1}, {"snr": 2.0, "x": 2}]


def test_flat_text_gives_back_the_store_text_and_leaves_text_alone():
    frame = _frame()
    back = flat_text(typed_nested(frame))
    for column in ("layers", "changed_values", "versions", "settings"):
        assert back[column].to_list() == frame[column].to_list(), column
    # the always-empty params cannot be typed, so it is not in the text either
    assert back["noise"].to_list()[0] == '{"bn_variance":"clamp","keep_zeros":false}'
    assert flat_text(frame).equals(frame)


def test_written_parquet_is_typed_and_csv_is_the_json_text(tmp_path):
    frame = _frame()
    write_table(frame, tmp_path, "t")
    parquet = pl.read_parquet(tmp_path / "t.parquet")
    assert parquet.schema["layers"] == pl.List(pl.String)
    assert parquet.schema["changed_values"] == pl.List(pl.Struct({"layer": pl.String, "count": pl.Int64}))
    assert parquet["changed_values"].to_list()[0] == [{"layer": "conv1", "count": 144}, {"layer": "fc", "count": 330}]
    csv = pl.read_csv(tmp_path / "t.csv")
    assert csv["changed_values"].to_list() == ['{"conv1":144,"fc":330}', "{}"]
    assert csv["noise"].to_list() == frame["noise"].to_list()  # the store's text, params included


def test_a_table_with_plain_text_in_a_json_column_name_is_written_as_text(tmp_path):
    write_table(pl.DataFrame({"noise": ["none", "gaussian-snr"]}), tmp_path, "results", json_text=False)
    assert pl.read_parquet(tmp_path / "results.parquet")["noise"].to_list() == ["none", "gaussian-snr"]


def test_json_rows_give_objects():
    assert json_rows(_frame().select("settings", "seed")) == [{"settings": {"tile_rows": 576}, "seed": 0},
                                                             {"settings": None, "seed": 1}]


def test_tables_of_runs_with_other_settings_stack_with_diagonal_relaxed(tmp_path):
    """docs/outputs.md: struct fields follow each table's rows, so two runs' tables stack only relaxed."""
    with_options = pl.DataFrame({"seed": [0], "settings": ['{"dac_bits":8}'],
                                 "context": ['{"provider":"CPUExecutionProvider","provider_options":{"x":"1"}}']})
    without = pl.DataFrame({"seed": [1], "settings": [None], "context": ['{"provider":"CPUExecutionProvider"}']})
    write_table(with_options, tmp_path / "a", "trials")
    write_table(without, tmp_path / "b", "trials")
    frames = [pl.read_parquet(tmp_path / side / "trials.parquet") for side in ("a", "b")]
    assert frames[1].schema["settings"] == pl.Null and frames[1].schema["context"] == pl.Struct({"provider": pl.String})
    try:
        pl.concat(frames)
    except pl.exceptions.SchemaError:
        pass
    else:
        raise AssertionError("plain concat stacked tables whose struct fields differ; update docs/outputs.md")
    stacked = pl.concat(frames, how="diagonal_relaxed")
    assert stacked["context"].to_list() == [
        {"provider": "CPUExecutionProvider", "provider_options": {"x": "1"}},
        {"provider": "CPUExecutionProvider", "provider_options": None}]
    assert stacked["settings"].to_list() == [{"dac_bits": 8}, None]
