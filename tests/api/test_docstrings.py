"""The examples in the API's docstrings run and print what they say (the demo's known counts)."""

from __future__ import annotations

import doctest

import pytest

from onnxnoise.api import measure, views


@pytest.mark.parametrize("module", [measure, views], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0
