"""Trial columns declared once (store.schema): roles, lookups, and a toy column added from a fixture.

The toy counter of :mod:`_columns` is declared by a fixture only; it must then appear, with no
other edit, in a new store's table and ``to_frame()``, in an older store opened again (column
added, old rows NULL, still resumable), in bench's trial table and totals, and summed over seeds
in the bench summary, the console summary table and a report's summary table.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from rich.console import Console

from onnxnoise.bench import run_bench
from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig
from onnxnoise.engine.evaluate import Outcomes, paired_counts
from onnxnoise.engine.metrics import Counts
from onnxnoise.engine.stages import STAGE_COUNTERS
from onnxnoise.errors import StoreError
from onnxnoise.noise import NoiseDraw
from onnxnoise.report.console import summary_table
from onnxnoise.report.study import collect_runs, collect_trials, write_report
from onnxnoise.store import TRIAL_COLUMNS, open_store
from onnxnoise.store.schema import (
    APPLICATION_ID,
    COUNT,
    COUNTER,
    CHANGED,
    Column,
    MEASURED_ROLES,
    PAIRED,
    ROLES,
    RUN_COLUMNS,
    column_names,
    columns,
    create_sql,
    measured_values,
    register_column,
    unregister_column,
)
from onnxnoise.sweep import run_sweep

from tests._builders import conv_bn_resnet, labeled_npz
from tests._columns import TOY_COUNTER, toy_counter  # noqa: F401  (fixture)

IMAGES = 40
CLEAN_TOP1 = 28  # labeled_npz relabels 30% of the images: the clean model gets exactly 70% right


def test_every_column_has_a_role_type_dtype_and_description():
    for column in TRIAL_COLUMNS.values():
        assert column.role in ROLES and column.sql and column.doc and column.polars_dtype in (pl.Int64, pl.Float64, pl.String)
        assert (column.role in MEASURED_ROLES) == (column.source is not None or column.measure is not None), column.name
    assert column_names(COUNT) == ["images", "top1_correct", "top5_correct"]
    assert column_names(COUNTER) == ["nan_count", "bn_variance_changed", "overflow_count", "clipped_count",
                                     "zeros_kept", "dac_clipped", "dac_values", "adc_clipped", "adc_values"]
    assert column_names(source="stages") == list(STAGE_COUNTERS)
    assert column_names(PAIRED) == ["flips", "lost_top1", "gained_top1", "lost_top5", "gained_top5"]
    assert column_names(source="evaluation") == ["images", "top1_correct", "top5_correct", "nan_count"]
    assert column_names(CHANGED) == ["changed_values"]
    assert column_names(source="draw") == ["bn_variance_changed", "overflow_count", "clipped_count", "zeros_kept",
                                           "changed_values"]
    # Each source holds exactly the columns read from it: a new counter in one needs its column, and back.
    assert column_names(source="evaluation") == [f.name for f in dataclasses.fields(Counts)]
    assert column_names(source="draw") == [*NoiseDraw(arrays={}).counters(), "changed_values"]
    assert TRIAL_COLUMNS["changed_values"].json and NoiseDraw(arrays={}).changed_values == {}
    # A trial without the tile's stages has no `stages` source: those columns are NULL, the others measured.
    values = measured_values({"evaluation": Counts(4, 3, 4, 0), "draw": NoiseDraw(arrays={}),
                              "paired": dict.fromkeys(column_names(PAIRED), 0), "stages": None})
    assert {name: values[name] for name in STAGE_COUNTERS} == dict.fromkeys(STAGE_COUNTERS, None)
    assert values["top1_correct"] == 3
    with_stages = measured_values({"evaluation": Counts(4, 3, 4, 0), "draw": NoiseDraw(arrays={}),
                                   "paired": dict.fromkeys(column_names(PAIRED), 0),
                                   "stages": {"dac_clipped": 1, "dac_values": 96, "adc_clipped": 2, "adc_values": 40}})
    assert [with_stages[name] for name in STAGE_COUNTERS] == [1, 96, 2, 40]
    one = Outcomes(1, 1, 1, 0, np.zeros(1, np.int32), np.ones(1, bool), np.ones(1, bool))
    assert column_names(source="paired") == list(paired_counts(one, one))


def test_bad_columns_are_refused():
    with pytest.raises(ValueError, match="role must be one of"):
        Column("x", "gauge", "INTEGER", pl.Int64, "x")
    with pytest.raises(ValueError, match="needs a `source` or a `measure`"):
        Column("x", COUNTER, "INTEGER", pl.Int64, "x")
    with pytest.raises(ValueError, match="identifier"):
        Column("x; DROP TABLE trials", COUNTER, "INTEGER", pl.Int64, "x", source="draw")
    with pytest.raises(ValueError, match="exists already"):
        register_column(Column("flips", PAIRED, "INTEGER", pl.Int64, "again", source="paired"))
    with pytest.raises(ValueError, match="nullable"):
        register_column(Column("x", COUNTER, "INTEGER NOT NULL", pl.Int64, "x", source="draw"))
    with pytest.raises(ValueError, match="not a registered"):
        unregister_column("images")
    with pytest.raises(ValueError, match="unknown column role"):
        columns("gauge")


def _old_file(db: Path, *, without: set[str]) -> None:
    """A version 2 file whose tables lack the columns ``without`` (as an older onnxnoise wrote it), one row."""
    conn = sqlite3.connect(db)
    for table, declared in (("trials", TRIAL_COLUMNS), ("runs", RUN_COLUMNS)):
        conn.execute(create_sql(table, {k: v for k, v in declared.items() if k not in without}))
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    if "finished_at" not in without:
        conn.execute("INSERT INTO trials (key, mode, noise_model, images, finished_at) "
                     "VALUES ('k', 'baseline', 'gaussian-snr', 10, 'then')")
    conn.commit()
    conn.close()


def test_opening_an_older_store_adds_every_missing_column_once(tmp_path):
    db = tmp_path / "old.sqlite"
    _old_file(db, without={"zeros_kept", "flips", "seconds", "context"})
    with open_store(db) as store:
        assert _sql_columns(db)[-4:] == ["zeros_kept", "flips", "seconds", "context"]  # trials.context too
        row = store.to_frame().row(0, named=True)
        assert (row["key"], row["images"], row["zeros_kept"], row["flips"]) == ("k", 10, None, None)
        assert store.runs().columns == list(RUN_COLUMNS)  # runs.context added too
        assert store.record({"key": "k2", "mode": "all", "noise_model": "gaussian-snr", "strength": 2.0,
                             "zeros_kept": 4, "seconds": 1.5})
    with open_store(db) as store:  # nothing left to add
        assert sorted(_sql_columns(db)) == sorted(TRIAL_COLUMNS) and store.to_frame()["zeros_kept"].to_list() == [None, 4]


def test_an_older_store_without_a_required_column_is_refused_unchanged(tmp_path):
    db = tmp_path / "odd.sqlite"
    _old_file(db, without={"finished_at", "flips"})
    before = _sql_columns(db)
    with pytest.raises(StoreError, match=r"lacks the required column\(s\) trials.finished_at; .*unchanged"):
        open_store(db)
    assert _sql_columns(db) == before and "flips" not in before  # nothing added


@pytest.fixture
def setup(tmp_path) -> tuple[Path, Path]:
    model = conv_bn_resnet(num_classes=10)
    onnx.save(model, tmp_path / "m.onnx")
    return tmp_path / "m.onnx", labeled_npz(model, tmp_path / "d.npz", n=IMAGES).path


def _config(setup, strengths) -> RunConfig:
    model, data = setup
    return RunConfig(model=model, data=data, noise=NoiseConfig(strengths=strengths, seeds=2), preset="raw",
                     device="cpu", batch_size=16)


@pytest.fixture
def older_store(setup, tmp_path) -> Path:
    """A run folder whose store was written before the toy column was declared."""
    with open_store(tmp_path / "old" / "trials.sqlite") as store:
        run_sweep(SweepConfig(_config(setup, (3.0,)), modes=("all",)), store)
    return tmp_path / "old"


def _sql_columns(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(trials)")]


def _render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_a_toy_column_declared_in_a_fixture_reaches_store_migration_bench_and_reports(setup, older_store, tmp_path,
                                                                                     toy_counter):
    name = toy_counter.name
    assert name not in _sql_columns(older_store / "trials.sqlite")
    # An older store opened again gets the column; its rows keep NULL and the sweep resumes without rerunning.
    config = SweepConfig(_config(setup, (3.0,)), modes=("all",))
    with open_store(older_store / "trials.sqlite") as store:
        assert _sql_columns(older_store / "trials.sqlite")[-1] == name
        assert store.to_frame()[name].to_list() == [None] * 3
        again = run_sweep(config, store)
        assert (again.done, again.ran) == (3, 0)
        more = run_sweep(SweepConfig(_config(setup, (3.0, 1.0)), modes=("all",)), store)
        assert more.ran == 2
        frame = store.to_frame()
    new = frame.filter(pl.col("strength") == 1.0)
    assert new[name].to_list() == (new["images"] - new["top1_correct"]).to_list()
    assert frame[name].null_count() == 3

    # A new store: the column is in CREATE TABLE and measured in every row, the baseline's exactly.
    run_dir = tmp_path / "new"
    with open_store(run_dir / "trials.sqlite") as store:
        run_sweep(config, store)
        trials = store.to_frame()
    assert _sql_columns(run_dir / "trials.sqlite")[-1] == name and trials.columns[-3] == name
    assert trials.filter(pl.col("mode") == "baseline")[name].to_list() == [IMAGES - CLEAN_TOP1]
    noisy = trials.filter(pl.col("mode") == "all")
    misses = int((noisy["images"] - noisy["top1_correct"]).sum())
    assert noisy[name].to_list() == (noisy["images"] - noisy["top1_correct"]).to_list() and misses > 2 * 12

    # Bench: trial table, totals and summary (summed over seeds), and the console table's header and value.
    bench = run_bench(_config(setup, (3.0,)))
    assert bench.trials[name].to_list() == trials[name].to_list()
    assert bench.meta[name] == IMAGES - CLEAN_TOP1 + misses
    whole = bench.summary.filter(pl.col("mode") == "all").row(0, named=True)
    assert whole[name] == misses
    text = _render(summary_table(bench.summary))
    assert "misses" in text and f"{misses:,}" in text

    # A report of the run folder: the summary table sums it too.
    files = write_report(collect_trials([run_dir]), collect_runs([run_dir]), tmp_path / "report")
    assert files.summary.filter(pl.col("mode") == "all")[name].to_list() == [misses]
    assert pl.read_csv(tmp_path / "report" / "summary.csv").filter(pl.col("mode") == "all")[name].to_list() == [misses]


def test_the_toy_column_is_gone_after_its_fixture():
    assert TOY_COUNTER.name not in TRIAL_COLUMNS
