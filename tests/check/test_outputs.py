"""check.md and junit.xml of a protection plan that is withheld, and a tolerance search in words
(onnxnoise/check/outputs.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from onnxnoise.check.outputs import bound_points, junit_xml, markdown, next_step_text, points, search_text

NOTE = ("the gate cannot decide on 500 images which layers suffice: keeping 3 to 6 of 8 layers is undecided "
        "(inconclusive with 3, 5, 6 kept), and only keeping 7 passed; no plan proposed: evaluate more images")


def _report() -> dict:
    plan = {"spec": "auto", "verdict": "INCONCLUSIVE", "kept": [], "kept_params": 0, "total_params": 80,
            "kept_percent": 0.0, "rank_confidence": 0.95, "search_budget": 0.75, "undecided": [3, 6], "note": NOTE,
            "ranking": [{"layer": "l7", "drop": 7.5, "lower": 1.25, "upper": 13.75}],
            "steps": [{"kept": 7, "verdict": "PASS", "draws": 5, "mean": 0.5, "lower": -0.3, "upper": 0.7}],
            "verification": None}
    return {"verdict": "FAIL", "question": "top-1 drop < 1 points at SNR 10", "model": "m.onnx", "dataset": "d",
            "images": 500, "noise_model": "gaussian-snr", "baseline": {"top1_acc": 91.4, "top5_acc": 99.6},
            "gate": None, "protection": plan, "error": "stopped", "seconds": 1.0}


def test_a_withheld_plan_says_why_and_keeps_the_ranking_with_intervals():
    text = markdown(_report())
    assert f"**INCONCLUSIVE**: {NOTE}." in text and text.lower().count("no plan proposed") == 1  # said once
    report = _report()
    report["protection"]["note"] = None
    assert "No plan proposed (**INCONCLUSIVE**): no configuration passed." in markdown(report)
    assert "Keep noise-free" not in text
    assert "| layer | drop alone (points) | 95% interval |" in text and "| l7 | 7.50 | [1.25, 13.75] |" in text


def test_a_withheld_plan_is_an_error_case_in_junit():
    root = ET.fromstring(junit_xml(_report()).split("?>", 1)[1])
    cases = root.findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["top-1 drop < 1 points at SNR 10", "protection plan (auto)"]
    error = cases[1].find("error")
    assert error is not None and error.get("type") == "INCONCLUSIVE" and error.get("message") == f"INCONCLUSIVE: {NOTE}"


def test_numbers_that_round_to_zero_carry_no_minus_sign():
    # a lower bound of -0.004 points printed as "[-0.00, 1.65]" (fresh-user finding)
    assert points(-0.004) == "0.00" and bound_points(-0.004, 1.0) == "0.00"
    assert points(-0.006) == "-0.01" and bound_points(-0.25, 1.0) == "-0.25"
    assert bound_points(0.9987, 1.0) == "0.999" and points(None) == "-"


def search_report(found, bracket, steps, *, noise_model="pcm", low=1.0, high=315_360_000.0, more="higher") -> dict:
    """A check report of a tolerance search (``steps``: (strength, verdict) pairs) and nothing else."""
    return {"verdict": "INCONCLUSIVE", "question": "noisiest strength", "model": "m.onnx", "dataset": "d",
            "images": 200, "noise_model": noise_model, "baseline": {"top1_acc": 91.5, "top5_acc": 100.0},
            "gate": None, "protection": None, "error": None, "seconds": 1.0, "recheck_command": None,
            "search": {"outcome": "?", "found": found, "bracket": list(bracket), "low": low, "high": high,
                       "more_noise_when": more, "log_scale": True, "resolution": 0.05,
                       "steps": [{"strength": v, "verdict": w, "draws": 5, "lower": 0.0, "upper": 1.0}
                                 for v, w in steps]}}


def test_a_search_reads_in_words_with_the_strength_unit():
    """fresh22 finding 4: "noisiest passing None, bracket [None, 1.0], 1 gates" is told in words and units."""
    none = search_report(None, (None, 1.0), [(1.0, "INCONCLUSIVE")])
    assert search_text(none) == ("no strength in [t = 1 s, t = 10 y] passes (t = 1 s, the least noisy, is "
                                 "INCONCLUSIVE); 1 gate")
    found = search_report(86400.0, (86400.0, 2_592_000.0), [(1.0, "PASS"), (2_592_000.0, "FAIL"), (86400.0, "PASS")])
    assert search_text(found) == "t = 1 d passes, t = 30 d does not; 3 gates"
    snr = search_report(10.0, (10.0, None), [(10.0, "PASS")], noise_model="gaussian-snr", low=10.0, high=100.0,
                        more="lower")  # SNR: the quiet end is the high one
    assert search_text(snr) == "every strength in [SNR 100 (1% noise), SNR 10 (10% noise)] passes; 1 gate"
    # What to run next: the next search's command, or the plain statement that nothing quieter can be searched
    # (a check.json written before next_command existed says neither)
    assert next_step_text(none) is None and next_step_text(found) is None
    assert next_step_text({**none, "next_command": "onnxnoise check m.onnx --find-limit --t 0.1,1.0"}) == (
        "no strength passes; search a quieter range next: onnxnoise check m.onnx --find-limit --t 0.1,1.0")
    rate = search_report(None, (None, 0.0), [(0.0, "FAIL")], noise_model="stuck-at", low=0.0, high=0.1)
    assert next_step_text({**rate, "next_command": None}) == (
        "no strength passes, and stuck-at takes no strength quieter than p = 0% faulty devices: no quieter range "
        "to search")
    assert "Next: no strength passes, and stuck-at takes no strength quieter than p = 0% faulty devices" in \
        markdown({**rate, "next_command": None, "settings": {}, "warnings": []})
    case = ET.fromstring(junit_xml({**none, "search": {**none["search"], "outcome": "none passes"}}))
    assert case.find(".//error").text == ("none passes: no strength in [t = 1 s, t = 10 y] passes (t = 1 s, the "
                                          "least noisy, is INCONCLUSIVE); 1 gate; re-check: None")
