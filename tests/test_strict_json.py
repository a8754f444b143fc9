"""JSON text with every non-finite number as null (``onnxnoise.cli.json_text`` over :mod:`onnxnoise.strict_json`)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxnoise.strict_json import MAX_NESTING, parse_json, parse_toml

from tests._checks import strict_json


def test_json_text_nulls_every_non_finite_number():
    from onnxnoise.cli import json_text

    payload = {"a": float("nan"), "b": [1.5, float("inf"), {"c": np.float32("-inf"), "d": np.float64("nan")}],
               "e": (np.int64(3), np.float32(0.5)), "f": None}
    assert strict_json(json_text(payload)) == {"a": None, "b": [1.5, None, {"c": None, "d": None}],
                                                "e": [3, 0.5], "f": None}
    assert strict_json(json_text(payload, indent=2)) == strict_json(json_text(payload))


@pytest.mark.parametrize("parse", [parse_json, lambda text: parse_toml(f"a = {text}")])
def test_nesting_is_bounded_not_a_recursion_error(parse):
    assert MAX_NESTING == 64
    assert parse("[" * 63 + "1" + "]" * 63) is not None  # 63 arrays (64 levels with a TOML table): read as before
    for depth in (65, 100_000):  # 100000 levels: Python's parsers raise RecursionError
        with pytest.raises(ValueError, match=r"^the (JSON|TOML) text nests arrays or objects more than 64 levels "
                           r"deep$"):
            parse("[" * depth + "1" + "]" * depth)
    with pytest.raises(ValueError):  # a syntax error is a ValueError as well
        parse("[1,")
