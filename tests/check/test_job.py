"""onnxnoise/check/job.py: the re-check command from options by setting key, the draw options refused, and the
image-term warning (the whole CheckJob runs in tests/cli/test_check_command.py and tests/api/test_gate.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from onnxnoise.check.job import EXIT_CODES, image_term_warnings, recheck_command, refuse_draw_options
from onnxnoise.cli.parser import build_parser
from onnxnoise.errors import ConfigError
from onnxnoise.noise import get_noise_model


def test_recheck_command_from_api_values_parses_back_to_the_same_settings():
    """Options as the Python API gives them (a list, a noise model's parameter dict, a search flag) become the
    command line the CLI's parser reads back to the same values; the search flag and the strength range are
    not repeated, the strength is exact."""
    given = {"data": Path("d d.npz"), "max_drop": 1.5, "mean": [0.5, 0.25, 0.125], "limit": 300,
             "noise_model": "gaussian-snr", "noise_params": {"scope": "channel"}, "find_limit": True,
             "snr": "3,100", "first_seed": 0}
    text = recheck_command("m.onnx", given, 43.96, get_noise_model("gaussian-snr")(), first_seed=1000)
    assert text.startswith("onnxnoise check m.onnx --data 'd d.npz' ") and text.endswith(" --snr 43.96")
    again = build_parser().parse_args(shlex.split(text)[1:])
    assert (again.data, again.max_drop, again.mean, again.limit) == (Path("d d.npz"), 1.5, (0.5, 0.25, 0.125), 300)
    assert again.noise_params == ['scope="channel"'] and again.first_seed == 1000
    assert again.find_limit is None and again.snr == "43.96"
    # search_to: the command searches the range instead, with the search's own resolution as given
    text = recheck_command("m.onnx", {**given, "find_resolution": 0.1}, 100.0, get_noise_model("gaussian-snr")(),
                           search_to=1000.0)
    assert text.endswith(" --find-resolution 0.1 --find-limit --snr 100.0,1000.0")
    again = build_parser().parse_args(shlex.split(text)[1:])
    assert (again.find_limit, again.snr, again.find_resolution, again.max_drop) == (True, "100.0,1000.0", 0.1, 1.5)


def test_seeds_and_ci_halfwidth_are_refused():
    refuse_draw_options({"seeds": None, "ci_halfwidth": None, "max_seeds": 10})  # not given: fine
    with pytest.raises(ConfigError, match=r"^check chooses its number of draws itself; drop --ci-halfwidth"):
        refuse_draw_options({"ci_halfwidth": 0.5})
    assert EXIT_CODES == {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}


def test_the_image_term_warning_only_for_an_inconclusive_gate_whose_images_dominate():
    def report(verdict: str, t_upper: float, se_images: float, floor: float = 0.0) -> dict:
        return {"images": 300, "gate": {"verdict": verdict, "bounds": {"t_upper": t_upper, "se_images": se_images,
                                                                      "floor_upper": floor}}}

    (line,) = image_term_warnings(report("INCONCLUSIVE", 2.0, 0.6), budget=2.0)  # 1.2 > 2 / 2
    assert line.startswith("with 300 images the image term alone is ±1.20 points, more than half the budget (2)")
    assert image_term_warnings(report("INCONCLUSIVE", 2.0, 0.4), budget=2.0) == []  # 0.8 <= 1
    assert "±1.22 points" in image_term_warnings(report("INCONCLUSIVE", 2.0, 0.1, floor=1.22), budget=2.0)[0]
    assert image_term_warnings(report("PASS", 2.0, 0.6), budget=2.0) == []  # a decided gate needs no advice
