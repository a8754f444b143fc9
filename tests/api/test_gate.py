"""The Python API's CI gate (onnxnoise/api/gate.py): check_model gives the command's verdict, bounds, draws and
files on the demo (1,000 Fashion-MNIST images, clean top-1 932), prints nothing, and raises the project's errors.

Known values: at SNR 100 (linear) seeds 0..4 lose 2, 0, 5, 1, 2 and gain 2, 3, 2, 1, 2 of the images the clean
model gets right (the CLI prints the same per draw), so the mean drop is exactly 0 points and the minimum of
5 draws passes a 5-point budget with bounds [-0.31, 0.38]; at SNR 3 the drop is 67.06 points (a 1-point
budget FAILs on 5 draws).
"""

from __future__ import annotations

import json
import shlex

import pytest

import onnxnoise
from onnxnoise.cli.parser import build_parser
from onnxnoise.data.registry import register_dataset
from onnxnoise.errors import ConfigError
from onnxnoise.noise.gaussian import GaussianSNR
from tests._checks import run_cli


def test_a_generous_budget_passes_on_the_minimum_draws(demo_files, tmp_path, monkeypatch, capfd):
    model, data = demo_files
    monkeypatch.chdir(tmp_path)
    run = onnxnoise.check_model(model, data, snr=100, max_drop=5)
    assert (run.verdict, run.exit_code, run.draws, run.strength) == ("PASS", 0, 5, 100.0)
    assert run.per_draw["seed"].to_list() == [0, 1, 2, 3, 4]
    assert run.per_draw["lost"].to_list() == [2, 0, 5, 1, 2]
    assert run.per_draw["gained"].to_list() == [2, 3, 2, 1, 2]
    assert run.per_draw["drop"].to_list() == pytest.approx([0.0, -0.3, 0.3, 0.0, 0.0])  # (lost - gained) / 10
    assert run.drop == pytest.approx(0.0)
    assert run.lower == pytest.approx(-0.31, abs=0.005) and run.upper == pytest.approx(0.38, abs=0.005)
    assert -(100 - 93.2) <= run.lower < run.drop < run.upper < run.settings.budget == 5  # inside the possible range
    assert run.baseline_top1 == 93.2 and run.trials.height == 6  # the baseline and five draws
    assert run.trials["top1_correct"].to_list()[0] == 932
    assert run.question == "top-1 drop < 5 points at SNR 100 (1% noise)"
    assert run.recheck_command.endswith(" --max-drop 5 --snr 100.0")
    assert (run.out, run.files, run.error, run.protection, run.search) == (None, (), None, None, None)
    assert list(tmp_path.iterdir()) == []  # nothing written without `out`
    assert capfd.readouterr() == ("", "")  # silent by default


def test_an_impossible_budget_fails(demo_files):
    model, data = demo_files
    run = onnxnoise.check_model(model, data, snr=3, max_drop=1.0)
    assert (run.verdict, run.exit_code, run.draws) == ("FAIL", 1, 5)
    assert run.drop == pytest.approx(67.06, abs=0.005)
    assert run.lower > run.settings.budget  # FAIL: the lower bound is above the budget
    assert run.upper == pytest.approx(93.2)  # clipped to the clean accuracy: no drop can exceed it


def test_files_and_report_are_the_commands(demo_files, tmp_path, capsys):
    model, data = demo_files
    options = ("--snr", "100", "--max-drop", "5")
    run = onnxnoise.check_model(model, data, out=tmp_path / "api", snr="100", max_drop="5")
    code, _, _ = run_cli(capsys, "check", model, "--data", data, *options, "--out", tmp_path / "cli")
    assert code == run.exit_code == 0
    assert sorted(p.name for p in run.files) == ["check.json", "check.md", "junit.xml", "trials.csv",
                                                 "trials.parquet"]
    api, cli = (json.loads((tmp_path / side / "check.json").read_text()) for side in ("api", "cli"))
    for report in (api, cli):
        del report["seconds"], report["out_dir"]
    assert api == cli  # the same verdict, bounds, draws, warnings and re-check command
    assert api["recheck_command"] == run.recheck_command


def test_a_registered_name_and_a_noise_object_recheck_as_the_command(demo_files, tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXNOISE_CONFIG_DIR", str(tmp_path / "config"))
    model, data = demo_files
    register_dataset("fashion-demo", data)
    run = onnxnoise.check_model(model, "fashion-demo", noise=GaussianSNR(scope="channel"), snr=100, max_drop=5,
                                limit=300)
    assert run.config.data == data.resolve() and run.notes[0].startswith("--data fashion-demo: registered dataset")
    again = build_parser().parse_args(shlex.split(run.recheck_command)[1:])
    assert again.data == data.resolve() and again.limit == 300 and again.snr == "100.0"
    assert [json.loads(item.split("=", 1)[1]) for item in again.noise_params] == list(
        GaussianSNR(scope="channel").params().values())
    text = onnxnoise.check_model(model, data, noise="gaussian-snr:scope=channel", snr=100, max_drop=5, limit=300)
    assert text.trials["key"].to_list() == run.trials["key"].to_list()
    assert text.per_draw["lost"].to_list() == run.per_draw["lost"].to_list()


def test_protect_auto_plans_the_fewest_layers(demo_files, tmp_path):
    """At SNR 10 draws collapse (INCONCLUSIVE against 1 point); keeping conv1, bn1 and fc2 noise-free passes."""
    model, data = demo_files
    run = onnxnoise.check_model(model, data, out=tmp_path, snr=10, max_drop=1.0, protect="auto")
    assert run.verdict == "INCONCLUSIVE" and run.exit_code == 3  # the plan does not change the verdict
    assert run.protection.verdict == "PASS" and run.protection.kept == ("conv1", "bn1", "fc2")
    assert (tmp_path / "protect-layers.txt").read_text() == "conv1\nbn1\nfc2\n"
    assert tmp_path / "protect-layers.txt" in run.files
    assert " --protect-file " in run.report["protection"]["recheck_command"]


def test_find_limit_returns_the_search_and_the_found_strengths_gate(demo_files):
    """On 300 images the bisection over SNR 3..100 (both ends first) stops at 43.96 (passes) against 42.77 (not)."""
    model, data = demo_files
    run = onnxnoise.check_model(model, data, snr="3,100", max_drop=1.0, find_limit=True, limit=300)
    assert (run.verdict, run.exit_code, run.search.outcome) == ("PASS", 0, "found")
    assert run.search.bracket == (43.96, 42.77) and len(run.search.steps) == 9
    assert [(g.strength, g.verdict) for g in run.search.steps[:2]] == [(100.0, "PASS"), (3.0, "FAIL")]
    assert run.strength == 43.96 and run.gate.verdict == "PASS" and run.upper < 1.0
    assert run.recheck_command.endswith(" --limit 300 --max-drop 1.0 --snr 43.96")
    assert "--find-limit" not in run.recheck_command

def test_progress_prints_one_line_per_draw_on_stderr(demo_files, capfd):
    model, data = demo_files
    onnxnoise.check_model(model, data, snr=100, max_drop=5, progress=True)
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 5 and lines[0].startswith("  SNR 100 (1% noise) seed 0: top-1 93.20%")
    assert lines[-1].endswith("[-0.31, 0.38] PASS")


def test_bad_input_raises_one_line(demo_files, tmp_path):
    model, data = demo_files
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"^out .*afile is a file, not a folder"):
        onnxnoise.check_model(model, data, out=afile, snr=100, max_drop=1)
    with pytest.raises(ConfigError, match=r"^check needs max_drop"):
        onnxnoise.check_model(model, data, snr=100)
    with pytest.raises(ConfigError, match=r"^check chooses its number of draws itself; drop seeds and use max_seeds N"):
        onnxnoise.check_model(model, data, snr=100, max_drop=1, seeds=3)
    with pytest.raises(ConfigError, match=r"^check tests one strength; got 2"):
        onnxnoise.check_model(model, data, snr="10,100", max_drop=1)
    with pytest.raises(ConfigError, match=r"^check takes no option 'budget'"):
        onnxnoise.check_model(model, data, snr=100, budget=1)
    with pytest.raises(ConfigError, match="go with a gate at one strength"):
        onnxnoise.check_model(model, data, snr="10,100", max_drop=1, find_limit=True, protect="auto")


def test_a_baseline_off_its_expectation_fails_before_any_draw(demo_files, tmp_path):
    model, data = demo_files
    run = onnxnoise.check_model(model, data, out=tmp_path, snr=100, max_drop=5, expect_top1=50)
    assert (run.verdict, run.exit_code, run.draws, run.gate) == ("FAIL", 1, 0, None)
    assert run.error == ("clean top-1 93.20% is outside the expected 50% ± 0.5 (--expect-top1 50 --tolerance 0.5); "
                         "no noisy trial was run")
    assert run.baseline_top1 is None and run.report["error"] == run.error
    assert run.trials.height == 1 and run.per_draw.is_empty()  # the baseline only
    assert sorted(p.name for p in run.files) == ["check.json", "check.md", "junit.xml"]  # no trial tables
