"""``onnxnoise check`` end to end on tiny models with labeled data (exact clean accuracy known).

Models: :func:`conv_bn_resnet` (13 layers, 300 images, clean top-1 exactly 70%) and a two-layer
MLP built here whose first layer is fragile (one huge weight that feeds nothing inflates its
``sigma_w``, so per-tensor SNR noise is large for its other weights) and whose head is robust.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import helper, numpy_helper

from onnxnoise.check.gate import IDENTICAL_NOTE
from onnxnoise.cli.app import main
from onnxnoise.cli.check_command import recheck_command

from tests._builders import conv_bn_resnet, image_classifier, labeled_npz
from tests._noise_models import ZERO_ALL_HINT, zeroing_model  # noqa: F401  (a fixture)


def fragile_mlp(*, seed: int = 0, size: int = 8, hidden: int = 32, classes: int = 10,
                outlier: float = 500.0) -> onnx.ModelProto:
    """``input [N, 3, size, size]`` -> Flatten -> Gemm ``fragile`` (-> hidden + 1) -> Relu -> Gemm ``head``.

    Hidden unit ``hidden`` has weight ``outlier`` on pixel 0 and bias ``-2 outlier`` (it never
    fires on pixels in 0..1) and a zero column in ``head``: it changes no clean prediction, but
    makes ``std(fragile.weight)`` ~60x the other weights', so noise at one SNR ruins ``fragile``
    and barely touches ``head``.
    """
    rng = np.random.default_rng(seed)
    d = 3 * size * size
    a = rng.normal(0, np.sqrt(2.0 / d), (hidden + 1, d)).astype(np.float32)
    a[hidden, :] = 0.0
    a[hidden, 0] = outlier
    bias = np.zeros(hidden + 1, np.float32)
    bias[hidden] = -2.0 * outlier
    b = rng.normal(0, 3.0 / np.sqrt(hidden), (classes, hidden + 1)).astype(np.float32)
    b[:, hidden] = 0.0
    inits = [numpy_helper.from_array(a, "fragile.weight"), numpy_helper.from_array(bias, "fragile.bias"),
             numpy_helper.from_array(b, "head.weight"), numpy_helper.from_array(np.zeros(classes, np.float32),
                                                                                 "head.bias")]
    nodes = [helper.make_node("Flatten", ["input"], ["x"], name="flatten", axis=1),
             helper.make_node("Gemm", ["x", "fragile.weight", "fragile.bias"], ["h"], name="fragile", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "head.weight", "head.bias"], ["logits"], name="head", transB=1)]
    return image_classifier(nodes, inits, "fragile_mlp", size=size, classes=classes)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("check-resnet")
    model = conv_bn_resnet(seed=0)
    onnx.save(model, folder / "m.onnx")
    data = labeled_npz(model, folder / "d.npz", n=300)
    assert data.top1_correct == 210
    return folder / "m.onnx", data.path


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("check-mlp")
    model = fragile_mlp()
    onnx.save(model, folder / "mlp.onnx")
    data = labeled_npz(model, folder / "d.npz", n=400)
    assert data.top1_correct == 280
    return folder / "mlp.onnx", data.path


def _strict_json(path: Path) -> dict:
    def refuse(token: str):
        raise AssertionError(f"non-strict JSON token {token} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _check(files: tuple[Path, Path], out: Path, *extra: str) -> int:
    model, data = files
    return main(["check", str(model), "--data", str(data), "--preprocess", "raw", "--out", str(out), *extra])


def _case(out: Path) -> ET.Element:
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    return suite


#: Upper bound of a gate in which no image changed, on 300 images: the exact binomial bound at 0 of 300
#: (one-sided 97.5%), ``100 (1 - 0.025^(1/300))`` points.
NOTHING_CHANGED_UPPER = 100 * (1 - 0.025 ** (1 / 300))


def test_pass_at_huge_snr_in_the_minimum_draws(resnet, tmp_path):
    assert _check(resnet, tmp_path, "--snr", "1e6", "--max-drop", "2") == 0
    report = _strict_json(tmp_path / "check.json")
    assert report["verdict"] == "PASS" and report["exit_code"] == 0
    gate = report["gate"]
    assert gate["draws"] == 5 and gate["seeds"] == [0, 1, 2, 3, 4]
    assert gate["bounds"]["lower"] == 0.0 and gate["bounds"]["upper"] == pytest.approx(NOTHING_CHANGED_UPPER)
    assert NOTHING_CHANGED_UPPER == pytest.approx(1.2221, abs=1e-4)
    assert [d["lost"] for d in gate["per_draw"]] == [0] * 5
    assert report["baseline"]["top1_acc"] == pytest.approx(70.0)
    suite = _case(tmp_path)
    assert suite.get("tests") == "1" and suite.get("failures") == "0" and suite.get("errors") == "0"
    (case,) = suite.findall("testcase")
    assert case.find("failure") is None and case.find("error") is None
    assert "# onnxnoise check: PASS" in (tmp_path / "check.md").read_text()
    trials = pl.read_parquet(tmp_path / "trials.parquet")
    assert trials["mode"].to_list() == ["baseline"] + ["all"] * 5


def test_nothing_discordant_on_few_images_does_not_pass_a_budget_below_the_exact_bound(resnet, tmp_path, capsys):
    """No image changes under the noise, but 300 images cannot show a drop below 1.22 points: a 1-point
    budget is INCONCLUSIVE after --max-seeds draws (it used to PASS at [0.00, 0.00]), with the image term
    warning."""
    assert _check(resnet, tmp_path, "--snr", "1e6", "--max-drop", "1", "--max-seeds", "6") == 3
    report = _strict_json(tmp_path / "check.json")
    gate = report["gate"]
    assert report["verdict"] == "INCONCLUSIVE" and gate["draws"] == 6
    assert [d["lost"] + d["gained"] for d in gate["per_draw"]] == [0] * 6
    assert gate["bounds"]["upper"] == pytest.approx(NOTHING_CHANGED_UPPER) and gate["bounds"]["lower"] == 0.0
    assert gate["bounds"]["floor_upper"] == pytest.approx(NOTHING_CHANGED_UPPER)
    warning = next(w for w in report["warnings"] if "image term" in w)
    assert warning.startswith("with 300 images the image term alone is ±1.22 points, more than half the budget")
    assert "WARNING:" in capsys.readouterr().out


def test_draws_at_chance_are_collapsed_and_bring_the_models_advice(resnet, tmp_path, capsys, zeroing_model):
    """A zeroed head: every draw at 0% (chance 10%), so every draw is collapsed although none is below the
    others; the gate FAILs and the noise model's advice is a warning in check.json and on the terminal."""
    code = _check(resnet, tmp_path, "--noise", "test-zero-all", "--strength", "1", "--layer-regex", "^fc$",
                  "--max-drop", "1")
    report = _strict_json(tmp_path / "check.json")
    gate = report["gate"]
    assert code == 1 and report["verdict"] == "FAIL"
    assert [d["top1_acc"] for d in gate["per_draw"]] == [0.0] * gate["draws"]
    assert gate["collapsed"] == gate["draws"] == 5 and gate["collapse_rate"] == 1.0
    expected = f"test-zero-all: 5 of 5 draws at zeroed 1 collapsed to chance or far below the others; {ZERO_ALL_HINT}"
    assert expected in report["warnings"]
    assert "test advice" in " ".join(capsys.readouterr().out.split())


def test_fail_at_low_snr_with_failure_element(resnet, tmp_path, capsys):
    assert _check(resnet, tmp_path, "--snr", "0.5", "--max-drop", "1") == 1
    report = _strict_json(tmp_path / "check.json")
    gate = report["gate"]
    assert report["verdict"] == "FAIL" and gate["draws"] == 5
    assert gate["bounds"]["lower"] > 1.0
    # the drop of each draw is its paired counts: 100 (lost - gained) / images
    for d in gate["per_draw"]:
        assert d["drop"] == pytest.approx(100.0 * (d["lost"] - d["gained"]) / 300)
    suite = _case(tmp_path)
    assert suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and failure.get("message").startswith("FAIL: drop ")
    out = capsys.readouterr().out
    # 200% noise leaves 14-17% top-1 of a 70% model on 10 classes: a draw below 10 + 0.1 x 60 = 16% is at chance
    # (collapsed) even though no draw is far below the others.
    flags = [d["collapsed"] for d in gate["per_draw"]]
    assert flags == [d["top1_acc"] < 16.0 for d in gate["per_draw"]] and gate["collapsed"] == sum(flags)
    assert "FAIL" in out and f"collapsed draws {sum(flags)}/5" in out


def test_inconclusive_near_the_budget_with_few_draws(resnet, tmp_path):
    assert _check(resnet, tmp_path, "--snr", "300", "--max-drop", "1", "--max-seeds", "6") == 3
    report = _strict_json(tmp_path / "check.json")
    assert report["verdict"] == "INCONCLUSIVE" and report["gate"]["draws"] == 6
    bounds = report["gate"]["bounds"]
    assert bounds["lower"] < 1.0 < bounds["upper"]
    error = _case(tmp_path).find("testcase/error")
    assert error is not None and error.get("type") == "INCONCLUSIVE"


def test_other_seeds_keep_a_clear_verdict(resnet, tmp_path):
    assert _check(resnet, tmp_path, "--snr", "0.5", "--max-drop", "1", "--first-seed", "50") == 1
    assert _strict_json(tmp_path / "check.json")["gate"]["seeds"] == [50, 51, 52, 53, 54]


@pytest.mark.parametrize(("extra", "message"), [
    (["--snr", "10,20", "--max-drop", "1"], "check tests one strength; got 2"),
    (["--max-drop", "1"], "give the one strength to check, e.g. --snr 10"),
    (["--snr", "10", "--max-drop", "1", "--max-seeds", "2"],
     "`--max-seeds` must be an integer from 5 (the minimum number of draws) to 10000, got 2"),
    (["--snr", "10", "--max-drop", "1", "--max-seeds", "1000000000"],  # sized arrays by it: 7 GB in 25 s
     "`--max-seeds` must be an integer from 5 (the minimum number of draws) to 10000, got 1000000000"),
    (["--snr", "10", "--max-drop", "1", "--first-seed", "99999999999999999999999999"],  # a Polars i128 traceback
     "`--first-seed` must be an integer from 0 to 9223372036854775798 (2**63 - 1 less --max-seeds 10 plus 1: seeds "
     "are 64-bit), got 99999999999999999999999999"),
    (["--snr", "10", "--max-drop", "-1"], "`--max-drop` must be percentage points from 0 to 100"),
    (["--snr", "10", "--max-drop", "1", "--seeds", "5"], "check chooses its number of draws itself"),
    (["--snr", "10", "--max-drop", "1", "--find-limit"], "the search range is two strengths"),
    (["--snr", "10", "--max-drop", "1", "--protect", "("], "is not a regular expression"),
    (["--snr", "10", "--max-drop", "1", "--find-resolution", "0.1"], "use it with --find-limit"),
    (["--snr", "2,50", "--max-drop", "1", "--find-limit", "--find-resolution", "0"],
     "`--find-resolution` must be > 0 (e.g. 0.05 for 5%), got 0.0"),
    (["--snr", "2,50", "--max-drop", "1", "--find-min-snr", "--find-resolution", "nan"],
     "`--find-resolution` must be > 0"),
])
def test_bad_input_exits_2_with_one_line(resnet, tmp_path, capsys, extra, message):
    code = _check(resnet, tmp_path, *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0], err


def test_protect_regex_that_matches_nothing_exits_2_before_any_trial(resnet, tmp_path, capsys, monkeypatch):
    import onnxnoise.engine.executor as executor_module

    def no_trial(*args, **kwargs):
        raise AssertionError("a trial ran before --protect was checked")

    monkeypatch.setattr(executor_module, "run_trials", no_trial)
    assert _check(resnet, tmp_path, "--snr", "1", "--max-drop", "1", "--protect", "nothing-like-this") == 2
    captured = capsys.readouterr()
    assert "matches no noised layer" in captured.err
    assert "baseline" not in captured.out.lower()


def test_missing_max_drop_is_a_usage_error(resnet, tmp_path, capsys):
    """It may come from --config FILE, so the check is made once the file is read: one line, exit 2."""
    assert _check(resnet, tmp_path, "--snr", "10") == 2
    assert capsys.readouterr().err.strip() == ("onnxnoise: error: check needs --max-drop POINTS (or `max_drop = ...` "
                                               "in its --config file)")


def test_expect_top1_stops_before_any_noisy_trial(resnet, tmp_path, capsys):
    code = _check(resnet, tmp_path, "--snr", "10", "--max-drop", "1", "--expect-top1", "90", "--tolerance", "1")
    assert code == 1
    assert "clean top-1 70.00% is outside the expected 90% ± 1" in capsys.readouterr().err
    report = _strict_json(tmp_path / "check.json")
    assert report["verdict"] == "FAIL" and report["gate"] is None and "outside the expected" in report["error"]
    assert _case(tmp_path).find("testcase/failure") is not None
    assert not (tmp_path / "trials.parquet").exists()


def test_find_min_snr_result_rechecks(resnet, tmp_path):
    code = _check(resnet, tmp_path / "search", "--find-min-snr", "--snr", "10,10000", "--max-drop", "2",
                  "--max-seeds", "5")
    assert code == 0
    report = _strict_json(tmp_path / "search" / "check.json")
    search = report["search"]
    found, noisier = search["bracket"]
    assert search["outcome"] == "found" and found == search["found"]
    assert 10 < noisier < found < 10000 and found / noisier <= 1.05 + 1e-9
    assert report["gate"]["verdict"] == "PASS" and report["gate"]["strength"] == found
    # the steps: quiet end passes, noisy end does not, every step on the passing side passed
    assert search["steps"][0] == {**search["steps"][0], "strength": 10000.0, "verdict": "PASS"}
    assert search["steps"][1]["strength"] == 10.0 and search["steps"][1]["verdict"] != "PASS"
    for step in search["steps"]:
        assert (step["verdict"] == "PASS") == (step["strength"] >= found)
    command = report["recheck_command"]
    assert command.endswith(f"--snr {found!r}") and "--find-min-snr" not in command and "--out" not in command
    argv = shlex.split(command)[1:] + ["--out", str(tmp_path / "recheck")]
    assert main(argv) == 0
    recheck = _strict_json(tmp_path / "recheck" / "check.json")
    assert recheck["gate"]["bounds"] == report["gate"]["bounds"]
    # the noisier end of the bracket does not pass
    argv = shlex.split(command)[1:-1] + [repr(noisier), "--out", str(tmp_path / "noisier")]
    assert main(argv) != 0


def test_find_limit_with_no_passing_strength_exits_with_the_quiet_verdict(resnet, tmp_path, capsys):
    """Nothing passes in SNR [0.5, 1]: the report re-checks the quiet end (SNR 1, whose FAIL is the verdict) and
    gives the next search, as wide beyond it: SNR [1, 1^2 / 0.5 = 2]; the terminal and check.md say both, and
    the next command runs as printed."""
    assert _check(resnet, tmp_path, "--find-limit", "--snr", "0.5,1", "--max-drop", "1") == 1
    report = _strict_json(tmp_path / "check.json")
    search = report["search"]
    assert search["outcome"] == "none passes" and search["found"] is None and len(search["steps"]) == 1
    assert search["steps"][0]["strength"] == 1.0 and search["steps"][0]["verdict"] == "FAIL"
    start = f"onnxnoise check {resnet[0]} --data {resnet[1]} --preprocess raw --max-drop 1.0 "
    assert report["recheck_command"] == start + "--snr 1.0"
    assert report["next_command"] == start + "--find-limit --snr 1.0,2.0"
    printed = capsys.readouterr()
    assert f"no strength passes; search a quieter range next: {report['next_command']}\n" in printed.out + printed.err
    md = (tmp_path / "check.md").read_text()
    assert f"No strength passes; search a quieter range next:\n\n```bash\n{report['next_command']}\n```" in md
    assert main(shlex.split(report["next_command"])[1:] + ["--out", str(tmp_path / "next")]) in (0, 1, 3)
    after = _strict_json(tmp_path / "next" / "check.json")["search"]
    assert (after["low"], after["high"], after["steps"][0]["strength"]) == (1.0, 2.0, 2.0)


def test_protect_auto_keeps_the_sensitive_layer_and_passes(mlp, tmp_path):
    assert _check(mlp, tmp_path, "--snr", "300", "--max-drop", "2", "--protect", "auto") == 1
    report = _strict_json(tmp_path / "check.json")
    assert report["gate"]["verdict"] == "FAIL"
    plan = report["protection"]
    assert [r["layer"] for r in plan["ranking"]] == ["fragile", "head"]
    assert plan["ranking"][0]["drop"] > 20 and plan["ranking"][1]["drop"] < 1
    # each layer's own drop with its 95% interval (the gate's paired bounds): the two do not overlap
    fragile, head = plan["ranking"]
    assert fragile["lower"] <= fragile["drop"] <= fragile["upper"] and head["lower"] <= head["drop"] <= head["upper"]
    assert fragile["lower"] > head["upper"] and plan["rank_confidence"] == 0.95
    assert plan["kept"] == ["fragile"] and plan["verdict"] == "PASS"
    assert plan["kept_params"] == 33 * 192 + 33 and plan["total_params"] == 33 * 192 + 33 + 10 * 33 + 10
    assert plan["kept_percent"] == pytest.approx(100 * 6369 / 6709)
    assert "(94.93%). Verified with new seeds: **PASS** (" in (tmp_path / "check.md").read_text()
    verification = plan["verification"]
    assert verification["layers_kept"] == ["fragile"] and verification["layers_noised"] == 1
    assert verification["seeds"][0] == 1000 and verification["bounds"]["upper"] < 2
    # the search tested 3/4 of the budget; the plan's re-check command reproduces the verification exactly
    assert plan["search_budget"] == 1.5 and [s["kept"] for s in plan["steps"]] == [1]
    assert plan["steps"][0]["upper"] < 1.5
    command = plan["recheck_command"]
    layers_file = tmp_path / "protect-layers.txt"
    assert plan["layers_file"] == str(layers_file) and layers_file.read_text() == "fragile\n"
    assert f"--protect-file {layers_file}" in command and "--first-seed 1000" in command
    assert main(shlex.split(command)[1:] + ["--out", str(tmp_path / "recheck")]) == 1  # the full-noise gate fails
    recheck = _strict_json(tmp_path / "recheck" / "check.json")["protection"]
    assert recheck["kept"] == ["fragile"] and recheck["verification"]["bounds"] == verification["bounds"]
    suite = _case(tmp_path)
    names = [case.get("name") for case in suite.findall("testcase")]
    assert names == ["top-1 drop < 2 points at SNR 300 (0.333% noise)", "protection plan (auto)"]
    assert suite.get("failures") == "1"
    # the noised layers of the plan's trials are exactly the unkept ones
    trials = pl.read_parquet(tmp_path / "trials.parquet")
    plan_rows = trials.filter((pl.col("mode") == "all") & (pl.col("seed") >= 1000))
    assert plan_rows.height == verification["draws"]
    assert {tuple(layers) for layers in plan_rows["layers"].to_list()} == {("head",)}  # List(String)


def test_protect_search_bisects_on_a_tighter_budget_and_verifies_with_new_seeds():
    from types import SimpleNamespace

    from onnxnoise.check.gate import GateSettings
    from onnxnoise.check.protect import plan_protection
    from onnxnoise.check.sequential import Draw

    names = [f"l{i}" for i in range(8)]
    layers = [SimpleNamespace(name=n, op_type="Conv", num_params=10 * (i + 1)) for i, n in enumerate(names)]
    calls = []

    class Session:
        settings = GateSettings(budget=2.0, first_seed=7)
        context = SimpleNamespace(layers=layers, selected=layers)

        def per_layer(self, strength, seeds):
            assert list(seeds) == [7, 8, 9]
            return {n: [Draw(float(i)), Draw(float(i))] for i, n in enumerate(names)}  # l7 most sensitive

        def gate(self, strength, *, kept=(), first_seed=None, budget=None):
            calls.append((len(kept), budget, first_seed))
            verdict = "PASS" if len(kept) >= 3 else "FAIL"  # the three most sensitive layers are needed
            decision = SimpleNamespace(bounds=SimpleNamespace(mean=0.1, upper=0.2, lower=0.0))
            return SimpleNamespace(verdict=verdict, kept=tuple(kept), draws=[1, 2, 3], decision=decision,
                                   seeds=[first_seed or 7])

    plan = plan_protection(Session(), 10.0, "auto")
    assert [c[0] for c in calls] == [7, 3, 1, 2, 3]  # n - 1 first, bisection, then the verification
    assert all(c[1] == 1.5 for c in calls[:-1]) and calls[-1] == (3, None, 1007)
    assert plan.kept == ("l7", "l6", "l5") and plan.kept_params == 80 + 70 + 60
    assert plan.kept_percent == pytest.approx(100 * 210 / 360) and plan.verdict == "PASS"
    assert plan.undecided is None and plan.note == ""  # k = 2 FAILs: the boundary is decided
    assert [(r.layer, r.drop, r.lower, r.upper) for r in plan.ranking[:2]] == [("l7", 7.0, 7.0, 7.0),
                                                                            ("l6", 6.0, 6.0, 6.0)]


def _fake_session(passing: int, failing: int, layers_count: int = 8):
    """A session whose gate PASSes with ``>= passing`` layers kept, FAILs with ``<= failing``, else INCONCLUSIVE."""
    from types import SimpleNamespace

    from onnxnoise.check.gate import GateSettings
    from onnxnoise.check.sequential import Draw

    names = [f"l{i}" for i in range(layers_count)]
    layers = [SimpleNamespace(name=n, op_type="Conv", num_params=10) for n in names]
    calls = []

    class Session:
        settings = GateSettings(budget=2.0)
        context = SimpleNamespace(layers=layers, selected=layers, data=[0] * 500)

        def per_layer(self, strength, seeds):
            return {n: [Draw(float(i)), Draw(float(i) + 1.0)] for i, n in enumerate(names)}

        def gate(self, strength, *, kept=(), first_seed=None, budget=None):
            calls.append(len(kept))
            k = len(kept)
            verdict = "PASS" if k >= passing else "FAIL" if k <= failing else "INCONCLUSIVE"
            decision = SimpleNamespace(bounds=SimpleNamespace(mean=0.5, upper=1.8, lower=-0.3))
            return SimpleNamespace(verdict=verdict, kept=tuple(kept), draws=[1, 2, 3], decision=decision,
                                   seeds=[first_seed or 0])

    return Session(), calls


def test_protect_withholds_a_plan_the_images_cannot_decide():
    """Only keeping 7 of 8 layers passes, 1..6 are inconclusive: no plan keeping almost everything is proposed;
    the verdict is INCONCLUSIVE and the undecided range is named."""
    from onnxnoise.check.protect import plan_protection

    session, calls = _fake_session(passing=7, failing=0)
    plan = plan_protection(session, 10.0, "auto")
    assert calls == [7, 3, 5, 6] and plan.kept == () and plan.verification is None
    assert plan.verdict == "INCONCLUSIVE" and plan.undecided == (3, 6)
    assert plan.note.startswith("the gate cannot decide on 500 images which layers suffice: keeping 3 to 6 of 8 "
                                "layers is undecided (inconclusive with 3, 5, 6 kept), and only keeping 7 passed")
    # a range with lower bound below the mean: the interval of each layer is the gate's paired bound (t, 1 df)
    top = plan.ranking[0]
    assert top.layer == "l7" and top.drop == 7.5 and top.lower < 7.5 < top.upper


def test_protect_proposes_a_small_plan_and_names_the_undecided_range():
    """Keeping 3 passes, 1 fails, 2 is inconclusive: the plan (3 of 8) is proposed and verified, with k = 2 undecided."""
    from onnxnoise.check.protect import plan_protection

    session, calls = _fake_session(passing=3, failing=1)
    plan = plan_protection(session, 10.0, "auto")
    assert calls == [7, 3, 1, 2, 3] and len(plan.kept) == 3 and plan.verdict == "PASS"
    assert plan.undecided == (2, 2) and plan.note == ""


def test_protect_says_when_no_configuration_can_be_shown_to_pass():
    from onnxnoise.check.protect import plan_protection

    session, calls = _fake_session(passing=99, failing=0)
    plan = plan_protection(session, 10.0, "auto")
    assert calls == [7] and plan.verdict == "INCONCLUSIVE" and plan.kept == ()
    assert plan.note.startswith("the gate cannot decide on 500 images: even keeping 7 of 8 layers noise-free, the "
                                "drop 0.50 has bounds [-0.30, 1.80] against the search's 1.5 points")
    session, calls = _fake_session(passing=99, failing=99)
    plan = plan_protection(session, 10.0, "auto")
    assert plan.verdict == "FAIL" and plan.note.startswith("no configuration passes")


def test_protect_file_keeps_the_named_layers(mlp, tmp_path):
    (tmp_path / "keep.txt").write_text("# kept\nfragile\n\n")
    assert _check(mlp, tmp_path / "out", "--snr", "300", "--max-drop", "2", "--protect-file",
                  str(tmp_path / "keep.txt")) == 1
    plan = _strict_json(tmp_path / "out" / "check.json")["protection"]
    assert plan["kept"] == ["fragile"] and plan["verdict"] == "PASS" and plan["spec"] == f"file {tmp_path / 'keep.txt'}"


@pytest.mark.parametrize(("content", "message"), [
    ("nothing\n", "names 1 layer(s) that are not noised, e.g. 'nothing'"),
    ("# only a comment\n", "names no layer; write one layer name per line"),
    ("fragile\nhead\n", "names every noised layer; nothing would be left to noise"),
])
def test_a_bad_protect_file_exits_2_with_one_line(mlp, tmp_path, capsys, content, message):
    (tmp_path / "keep.txt").write_text(content)
    assert _check(mlp, tmp_path / "out", "--snr", "300", "--max-drop", "2", "--protect-file",
                  str(tmp_path / "keep.txt")) == 2
    assert message in capsys.readouterr().err


def test_protect_and_protect_file_together_exit_2(mlp, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("fragile\n")
    assert _check(mlp, tmp_path / "out", "--snr", "300", "--max-drop", "2", "--protect", "auto", "--protect-file",
                  str(tmp_path / "keep.txt")) == 2
    assert "give either --protect or --protect-file, not both" in capsys.readouterr().err


def test_protect_regex_tests_that_configuration(mlp, tmp_path):
    assert _check(mlp, tmp_path, "--snr", "300", "--max-drop", "2", "--protect", "^frag") == 1
    plan = _strict_json(tmp_path / "check.json")["protection"]
    assert plan["kept"] == ["fragile"] and plan["ranking"] == [] and plan["steps"] == []
    assert plan["verdict"] == "PASS" and plan["verification"]["seeds"][0] == 0
    assert "(94.93%). Gate with these layers kept: **PASS**" in (tmp_path / "check.md").read_text()


def test_recheck_command_keeps_settings_and_quotes():
    from onnxnoise.cli.parser import build_parser
    from onnxnoise.noise import get_noise_model

    argv = ["check", "my model.onnx", "--data", "d.npz", "--snr", "1,2", "--max-drop", "1.5", "--mean", "0.5,0.5,0.5",
            "--no-cache", "--find-min-snr", "--out", "x", "--max-seeds", "6", "--noise-param", "scope=layer"]
    args = build_parser().parse_args(argv)
    text = recheck_command(args, 12.34, get_noise_model("gaussian-snr")())
    assert text.startswith("onnxnoise check 'my model.onnx' ") and text.endswith(" --snr 12.34")
    again = build_parser().parse_args(shlex.split(text)[1:])
    assert again.model == Path("my model.onnx") and again.data == Path("d.npz")
    assert again.snr == "12.34" and again.max_drop == 1.5 and again.max_seeds == 6
    assert again.mean == (0.5, 0.5, 0.5) and again.cache is False and again.noise_params == ["scope=layer"]
    assert again.find_min_snr is None and again.out is None


def test_collapse_flags_follow_the_paired_rule():
    from onnxnoise.check.gate import collapse_flags

    # the BN-kept ResNet20 example: two draws near chance, one near the clean accuracy
    assert collapse_flags([11.0, 13.0, 86.0], clean=91.7, chance=10.0) == [True, True, False]
    assert collapse_flags([88.0, 87.5, 86.0], clean=91.7, chance=10.0) == [False, False, False]


class _FakeSession:
    """A session whose gate passes exactly on the quiet side of ``limit`` (no engine)."""

    def __init__(self, model_name: str, limit: float) -> None:
        from types import SimpleNamespace

        from onnxnoise.noise import make_noise_model

        model = make_noise_model(model_name)
        self.context = SimpleNamespace(config=SimpleNamespace(noise=SimpleNamespace(noise_model=model)))
        self.limit, self.lower_is_noisier, self.tested = limit, model.more_noise_when == "lower", []

    def check_strength(self, value):
        return float(self.context.config.noise.noise_model.check_strength(value))

    def gate(self, strength):
        from types import SimpleNamespace

        self.tested.append(strength)
        ok = strength >= self.limit if self.lower_is_noisier else strength <= self.limit
        return SimpleNamespace(verdict="PASS" if ok else "FAIL", strength=strength)


@pytest.mark.parametrize(("model", "low", "high", "limit"), [
    ("gaussian-snr", 1.0, 1000.0, 37.0),         # lower SNR = more noise: the lowest passing SNR
    ("stuck-at", 1e-4, 0.5, 0.013),              # higher rate = more noise: the highest passing rate
    ("conductance-levels", 2.0, 256.0, 11.0),    # fewer levels = more noise, whole numbers
])
def test_find_limit_direction_and_bracket_from_the_axis(model, low, high, limit):
    from onnxnoise.check.tolerance import find_limit

    session = _FakeSession(model, limit)
    result = find_limit(session, low, high, resolution=0.05)
    found, noisier = result.bracket
    assert result.outcome == "found" and result.found == found
    quiet, noisy = (high, low) if session.lower_is_noisier else (low, high)
    assert session.tested[:2] == [quiet, noisy]
    if session.lower_is_noisier:
        assert noisier < limit <= found
    else:
        assert found <= limit < noisier
    if model == "conductance-levels":
        assert (found, noisier) == (11.0, 10.0) and all(float(v).is_integer() for v in session.tested)
    else:
        assert max(found, noisier) / min(found, noisier) <= 1.05 + 1e-9
        assert all(float(f"{v:.4g}") == v for v in session.tested[2:])  # midpoints rounded to 4 digits


def test_find_limit_on_a_rate_axis_returns_the_highest_passing_value(mlp, tmp_path):
    """multiplicative noise: a higher eta is more noise, so the search returns the largest passing eta."""
    args = ["--noise", "multiplicative", "--find-limit", "--eta", "0.001,0.5", "--max-drop", "5", "--max-seeds", "6"]
    assert _check(mlp, tmp_path / "search", *args) == 0
    report = _strict_json(tmp_path / "search" / "check.json")
    found, noisier = report["search"]["bracket"]
    assert report["search"]["more_noise_when"] == "higher" and 0.001 < found < noisier < 0.5
    assert [s["strength"] for s in report["search"]["steps"][:2]] == [0.001, 0.5]
    command = report["recheck_command"]
    assert command.endswith(f"--eta {found!r}") and "--noise multiplicative" in command
    assert main(shlex.split(command)[1:] + ["--out", str(tmp_path / "recheck")]) == 0


def test_a_failed_noisy_trial_makes_the_gate_inconclusive(resnet, tmp_path, capsys):
    """A noise model that raises: every noisy trial is an error row; the gate stops at once with exit 3."""
    from dataclasses import dataclass
    from typing import ClassVar

    from onnxnoise.noise import NOISE_MODELS, NoiseModel, register

    @dataclass(frozen=True)
    class Raises(NoiseModel):
        name: ClassVar[str] = "test-check-raises"

        def perturb(self, w, strength, rng, tensor):
            raise RuntimeError("device model exploded")

    register(Raises)
    try:
        code = _check(resnet, tmp_path, "--noise", "test-check-raises", "--strength", "1", "--max-drop", "1")
    finally:
        NOISE_MODELS.pop("test-check-raises")
    assert code == 3
    report = _strict_json(tmp_path / "check.json")
    gate = report["gate"]
    assert report["verdict"] == "INCONCLUSIVE" and gate["draws"] == 0
    assert gate["error"] == "seed 0: RuntimeError: device model exploded"
    error = _case(tmp_path).find("testcase/error")
    assert error is not None and "device model exploded" in error.text


def test_bounds_near_the_budget_show_which_side_they_are_on():
    from onnxnoise.check.outputs import bound_points

    assert bound_points(0.9987, 1.0) == "0.999"  # a PASS's upper bound, not "1.00"
    assert bound_points(1.0004, 1.0) == "1.0004"
    assert bound_points(0.88, 1.0) == "0.88"
    assert bound_points(float("nan"), 1.0) == "-"


def test_a_fail_gets_no_image_term_warning_and_its_bounds_stay_in_range(resnet, tmp_path, capsys):
    """SNR 3 on 300 images loses ~55 points: FAIL at the third draw; the image-term warning ("may stay
    INCONCLUSIVE") is for an undecided gate only, and both bounds lie in [-(100 - clean), clean]."""
    assert _check(resnet, tmp_path, "--snr", "3", "--max-drop", "1", "--max-seeds", "5") == 1
    report = _strict_json(tmp_path / "check.json")
    bounds = report["gate"]["bounds"]
    clean = report["baseline"]["top1_acc"]
    assert report["verdict"] == "FAIL" and bounds["lower"] > 1.0
    assert bounds["range_low"] == pytest.approx(clean - 100) and bounds["range_high"] == pytest.approx(clean)
    assert clean - 100 <= bounds["lower"] <= bounds["upper"] <= clean
    assert not any("image term" in w for w in report["warnings"])
    assert "image term" not in capsys.readouterr().out


def test_a_check_with_the_tile_stages_applies_and_names_them(resnet, tmp_path):
    """`--noise none --dac-bits 8 --adc-bits 8`: the gate measures the converters alone, check.md names them,
    the re-check command repeats them, the calibration is kept in the check's folder. No `--strength`: none's one
    strength (0) is the one checked, written in the re-check command."""
    assert _check(resnet, tmp_path, "--noise", "none", "--dac-bits", "8", "--adc-bits", "8",
                  "--max-drop", "50", "--device", "cpu") == 0
    report = _strict_json(tmp_path / "check.json")
    assert report["facts"]["stages"]["dac_bits"] == 8 and (tmp_path / "calibration.json").is_file()
    assert "--dac-bits 8 --adc-bits 8" in report["recheck_command"]
    assert report["recheck_command"].endswith(" --strength 0.0")
    assert ("Input/output stages in every noisy trial: 8-bit DAC, 8-bit ADC (one range per tile); ranges calibrated "
            "(max) on the first 300 evaluation images") in (tmp_path / "check.md").read_text()
    trials = pl.read_parquet(tmp_path / "trials.parquet")
    assert trials["dac_values"][0] is None and trials["dac_values"][1:].to_list() == [300 * 10_000]
    # nothing random (no weight noise, no read noise): one draw, one look at the whole alpha, and it says so
    gate = report["gate"]
    assert gate["draws"] == 1 and gate["seeds"] == [0] and gate["bounds"]["alpha_look"] == pytest.approx(0.05)
    assert gate["bounds"]["se_draws"] == 0.0 and IDENTICAL_NOTE in report["warnings"]
    assert "1 draw (seeds 0)" in (tmp_path / "check.md").read_text()
