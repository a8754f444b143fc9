"""JSON text with every non-finite number as null (``onnxnoise.cli.json_text`` over :mod:`onnxnoise.strict_json`)."""

from __future__ import annotations

import numpy as np

from tests._checks import strict_json


def test_json_text_nulls_every_non_finite_number():
    from onnxnoise.cli import json_text

    payload = {"a": float("nan"), "b": [1.5, float("inf"), {"c": np.float32("-inf"), "d": np.float64("nan")}],
               "e": (np.int64(3), np.float32(0.5)), "f": None}
    assert strict_json(json_text(payload)) == {"a": None, "b": [1.5, None, {"c": None, "d": None}],
                                                "e": [3, 0.5], "f": None}
    assert strict_json(json_text(payload, indent=2)) == strict_json(json_text(payload))
