"""compare.md, compare.json and the verdict table written from two models' trials; one model; nothing to compare."""

from __future__ import annotations

import json

import polars as pl
import pytest

import onnxnoise
from onnxnoise.errors import StoreError
from onnxnoise.report.comparison import write_comparison
from onnxnoise.report.versus import verdict_schema
from tests._frames import layer_frame


def _runs(*models: str) -> pl.DataFrame:
    return pl.DataFrame({"model": list(models), "model_sha256": [f"sha-{m}" for m in models],
                         "config": [json.dumps({"layers_total": 2, "params_total": 100 * (i + 1), "images": 1000})
                                    for i, _ in enumerate(models)]})


def _trials(per_layer: bool = True) -> pl.DataFrame:
    a = layer_frame({(5.0, 0): [880, 860, 870], (5.0, 1): [800, 820, 790]} if per_layer else {},
                    whole={5.0: [700, 650, 720], 10.0: [850, 860, 840]}, model="resnet20.onnx")
    b = layer_frame({(5.0, 0): [895, 890, 900], (5.0, 1): [880, 870, 890]} if per_layer else {},
                    whole={5.0: [800, 760, 830], 10.0: [860, 850, 845]}, model="resnet32.onnx", clean=920)
    return pl.concat([a, b], how="vertical")


def test_compare_md_leads_with_the_verdicts_and_json_holds_them(tmp_path):
    files = write_comparison(_trials(), _runs("resnet20.onnx", "resnet32.onnx"), tmp_path)
    md = files.markdown.read_text()
    assert md.startswith("# onnxnoise compare: resnet32.onnx against resnet20.onnx\n\n## Verdicts\n\n- ")
    # SNR 5, all layers: 80, 76, 83 vs 70, 65, 72: differences 10, 11, 11: +10.67; draws alone t(.975, 2) 0.577 /
    # sqrt(3) = 1.43, with the images' term (at least 10-11% of 1,000 images differ) 2.04 (tests/report/test_versus.py)
    assert ("- resnet32 keeps 10.7 +- 2.0 points more top-1 than resnet20 at SNR 5 (20% noise) (paired over 3 seeds "
            "on the same 1000 images)") in md
    # SNR 10: 86.0, 85.0, 84.5 vs 85, 86, 84: +0.17 points, the interval holds 0
    assert "- no difference shown: resnet32 keeps +0.2 +- " in md
    assert "| SNR 5 (20% noise) | resnet20.onnx | resnet32.onnx | 69.00 | 79.67 | +10.67 ± 2.04 | -8.67 ± 2.04 |" in md
    assert "## Noise in one layer at a time" in md and "resnet32 loses " in md
    data = json.loads((tmp_path / "compare.json").read_text())
    assert (data["tool"], data["version"]) == ("onnxnoise compare", onnxnoise.__version__)
    assert data["reference"] == "resnet20.onnx" and len(data["verdicts"]) == 3
    assert {v["mode"] for v in data["verdicts"]} == {"all", "per-layer"}
    snr5 = next(v for v in data["verdicts"] if v["mode"] == "all" and v["strength"] == 5.0)
    assert snr5["ci_half"] == pytest.approx(2.04, abs=0.005) and {v["ci_level"] for v in data["verdicts"]} == {0.95}
    assert all(isinstance(v["noise"], dict) for v in data["verdicts"])  # noise settings as objects, not JSON text
    verdicts = pl.read_parquet(tmp_path / "verdicts.parquet")
    assert verdicts.height == 3 and {"ci_half", "ci_level"} <= set(verdicts.columns) and "ci" not in verdicts.columns
    assert (tmp_path / "compare.parquet").is_file()


def test_whole_model_sweeps_alone_are_compared(tmp_path):
    files = write_comparison(_trials(per_layer=False), _runs("resnet20.onnx", "resnet32.onnx"), tmp_path)
    assert files.a_avr is None and set(files.summary["mode"]) == {"all"}
    assert files.summary.schema == verdict_schema()  # the empty table of one model has these columns too
    assert not (tmp_path / "compare.parquet").exists()
    assert (tmp_path / "figures" / "compare-accuracy-vs-noise.png").is_file()


def test_one_model_per_layer_keeps_its_a_avr_table_and_no_verdict(tmp_path):
    trials = _trials().filter(pl.col("model") == "resnet20.onnx")
    files = write_comparison(trials, _runs("resnet20.onnx"), tmp_path)
    assert files.summary.is_empty() and files.a_avr is not None
    assert files.summary.schema == verdict_schema()  # typed columns, no rows (fresh22 finding 17)
    assert "- no two models share" in files.markdown.read_text()
    assert json.loads((tmp_path / "compare.json").read_text())["verdicts"] == []
    # verdicts.parquet / .csv are written for one model too: no rows, the columns of the two-model table, so a
    # script reads them without a special case and stacks them with another compare's table.
    assert tmp_path / "verdicts.parquet" in files.tables and tmp_path / "verdicts.csv" in files.tables
    empty = pl.read_parquet(tmp_path / "verdicts.parquet")
    assert empty.height == 0 and empty.columns == list(verdict_schema())
    assert {k: v for k, v in empty.schema.items() if k != "noise"} == \
        {k: v for k, v in verdict_schema().items() if k != "noise"} and empty.schema["noise"] == pl.Null
    assert pl.read_csv(tmp_path / "verdicts.csv").columns == list(verdict_schema())
    assert "- `verdicts.parquet` / `verdicts.csv`: " in files.markdown.read_text()
    write_comparison(_trials(per_layer=False), _runs("resnet20.onnx", "resnet32.onnx"), tmp_path / "two")
    two = pl.read_parquet(tmp_path / "two" / "verdicts.parquet")
    assert two.height == 2 and two.columns == empty.columns
    assert pl.concat([empty, two], how="diagonal_relaxed").height == 2
    with pytest.raises(StoreError, match="nothing to compare: these runs hold 1 model"):
        write_comparison(_trials(per_layer=False).filter(pl.col("model") == "resnet20.onnx"),
                         _runs("resnet20.onnx"), tmp_path / "none")
