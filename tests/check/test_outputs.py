"""check.md and junit.xml of a protection plan that is withheld (onnxnoise/check/outputs.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from onnxnoise.check.outputs import bound_points, junit_xml, markdown, points

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
