"""report/study.py: report.md from a frame (tables and figures per noise model, run settings that differ),
its headings citing the paper only for its noise, and the A_avr footer only with an A_avr table."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from onnxnoise.cli.output import intervals_note
from onnxnoise.report.study import write_report

from tests._checks import run_cli
from tests._disk import fill_disk, leftovers
from tests._frames import DRIFT, layer_frame, seeded_trial_frame, trial_frame
import tests._noise_models  # noqa: F401  (registers test-drift and test-db)


ROOT = Path(__file__).resolve().parents[2]


def _runs() -> pl.DataFrame:
    return pl.DataFrame({"model": ["net"], "model_sha256": ["sha"], "versions": ['{"onnxnoise":"x"}'],
                         "config": ['{"layers_total": 2, "params_total": 100}']})


def test_report_headings_cite_the_paper_only_for_its_noise(tmp_path):
    pcm = write_report(trial_frame("pcm", {}, (1.0,), per_layer=True), _runs(), tmp_path / "pcm").markdown.read_text()
    assert "## Noise in all layers (pcm)\n" in pcm and "Table III" not in pcm
    assert "## Noise in one layer at a time: A_avr (pcm; A_avr as in paper eq. 3)\n" in pcm
    gauss = write_report(trial_frame("gaussian-snr", {}, (10.0,)), _runs(), tmp_path / "g").markdown.read_text()
    assert "## Noise in all layers (paper Table III, Fig. 2)\n" in gauss


def test_report_footer_explains_a_avr_only_with_an_a_avr_table(tmp_path, capsys):
    assert "A_avr" not in intervals_note(a_avr=False) and "A_avr = mean over layers" in intervals_note(a_avr=True)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "sweep", ROOT / "models/demo/fashion_mnist_cnn.onnx", "--data",
                        ROOT / "models/demo/fashion_mnist_test1000.npz", "--limit", "20", "--seeds", "1", "--snr", "10",
                        "--mode", "all", "--device", "cpu", "--out", run)
    assert code == 0, err
    code, out, err = run_cli(capsys, "report", run, "--out", tmp_path / "report")
    assert code == 0, err
    assert "± = 95% Student t interval over seeds" in out and "A_avr" not in out


def test_write_report_tables_and_figures_per_noise_model(tmp_path):
    trials = pl.concat([seeded_trial_frame(), seeded_trial_frame("test-drift", DRIFT, (1.0, 60.0))])
    trials = trials.with_columns(pl.lit('{"onnxnoise":"x"}').alias("versions"))
    runs = pl.DataFrame({"model": ["net"], "model_sha256": ["sha-net"], "versions": ['{"onnxnoise":"x"}'],
                         "config": ['{"layers_total": 3, "params_total": 1234}']})
    files = write_report(trials, runs, tmp_path)
    names = sorted(p.name for p in files.figures if p.suffix == ".png")
    assert names == sorted(f"{stem}-{suffix}.png" for suffix in ("gaussian-snr", "test-drift")
                           for stem in ("accuracy-vs-noise", "degradation-by-model", "per-layer-net", "blame-net"))
    md = files.markdown.read_text()
    assert "| model | noise model | strength | seeds | top-1 % |" in md
    assert "| net | gaussian-snr | SNR 100 (1% noise) | 2 | 71.00 ± 12.71 |" in md
    assert "| net | test-drift | time (s) 60 | 2 |" in md
    assert "additive Gaussian, sigma = std(w)/SNR per tensor (paper eq. 1)" in md
    assert "test-drift: test-drift (nu=0.1)" in md
    summary = pl.read_parquet(tmp_path / "summary.parquet")
    assert {"noise_model", "strength", "strength_text"} <= set(summary.columns)
    assert "noise_pct" not in summary.columns and "snr" not in summary.columns
    one = write_report(seeded_trial_frame(), runs, tmp_path / "one")  # one noise model: today's file names and headers
    assert sorted(p.name for p in one.figures if p.suffix == ".png") == [
        "accuracy-vs-noise.png", "blame-net.png", "degradation-by-model.png", "per-layer-net.png"]
    assert "| model | SNR | seeds |" in one.markdown.read_text()


def test_report_md_first_table_names_the_worst_layers_and_tables_carry_typed_layer_names(tmp_path):
    per_layer = {(s, i): hits for s in (5.0, 10.0) for i, hits in enumerate(([880, 870], [700, 720], [895, 890]))}
    trials = layer_frame(per_layer, names={0: "conv1", 1: "layer2.0.conv2", 2: "fc"}, whole={5.0: [600, 650]})
    trials = trials.with_columns(pl.lit('{"onnxnoise":"x"}').alias("versions"))
    files = write_report(trials, _runs(), tmp_path)
    md = files.markdown.read_text()
    first = next(line for line in md.splitlines() if line.startswith("| "))
    assert first.startswith("| rank | layer | op type | parameters | share % | drop at SNR 5 (20% noise) |")
    rows = [line for line in md.splitlines() if line.startswith("| 1 | ") or line.startswith("| 2 | ")]
    # layer2.0.conv2 at SNR 5: clean 90%, draws 70% and 72%: drop 19 points
    assert rows[0].startswith("| 1 | `layer2.0.conv2` | - | - | - | 19.00 ± 12.71 |")
    assert rows[1].startswith("| 2 | `conv1` |")
    assert md.index("## Layers to blame") < md.index("## Provenance")
    for stem in ("trials", "summary", "blame"):
        table = pl.read_parquet(tmp_path / f"{stem}.parquet")
        assert table.schema["layers"] == pl.List(pl.String), stem
    trials = pl.read_parquet(tmp_path / "trials.parquet")  # the store's JSON text, typed (report/nested.py)
    assert trials.schema["versions"] == pl.Struct({"onnxnoise": pl.String})
    assert trials["versions"].to_list()[0] == {"onnxnoise": "x"}
    assert pl.read_csv(tmp_path / "trials.csv")["versions"][0] == '{"onnxnoise":"x"}'
    blame = pl.read_parquet(tmp_path / "blame.parquet")
    assert blame.filter(pl.col("rank") == 1)["layers"].to_list() == [["layer2.0.conv2"], ["layer2.0.conv2"]]
    assert pl.read_csv(tmp_path / "blame.csv")["layers"][0].startswith('["')  # JSON text in the CSV
    assert (tmp_path / "figures" / "blame-net.png").is_file()


def test_report_md_names_the_run_setting_that_differs(tmp_path):
    """The same sweep at two batch sizes: report.md shows a batch column, not two identical rows."""
    trials = pl.concat([seeded_trial_frame().with_columns(pl.lit(b).alias("batch_size")) for b in (128, 64)])
    trials = trials.with_columns(pl.lit('{"onnxnoise":"x"}').alias("versions"))
    runs = pl.DataFrame({"model": ["net"], "model_sha256": ["sha-net"], "versions": ['{"onnxnoise":"x"}'],
                         "config": ['{"layers_total": 3, "params_total": 1234}']})
    md = write_report(trials, runs, tmp_path).markdown.read_text()
    assert "| model | batch | SNR | seeds | top-1 % |" in md
    assert "| net | 64 | SNR 100 (1% noise) | 2 | 71.00 ± 12.71 |" in md
    assert "| net | 128 | SNR 100 (1% noise) | 2 | 71.00 ± 12.71 |" in md
    assert "| model | batch | SNR | layers | seeds | top-1 A_avr |" in md


@pytest.mark.parametrize("name", ["results.parquet", "trials.parquet", "summary.csv", "accuracy-vs-noise.png",
                                  "per-layer-net.svg", "report.md"])
def test_full_disk_while_writing_a_report_leaves_every_previous_file_whole(tmp_path, monkeypatch, name):
    trials = seeded_trial_frame().with_columns(pl.lit('{"onnxnoise":"x"}').alias("versions"))
    write_report(trials, _runs(), tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert any(p.name == name for p in before)
    refused = fill_disk(monkeypatch, name)
    with pytest.raises(OSError, match="No space left on device"):
        write_report(trials, _runs(), tmp_path)
    assert refused == [name] and leftovers(tmp_path) == []
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}.keys() == before.keys()
    target = next(p for p in before if p.name == name)
    assert target.read_bytes() == before[target]  # the previous file, never an empty or cut one
