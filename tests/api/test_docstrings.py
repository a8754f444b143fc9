"""The examples in the API's docstrings run and print what they say (the demo's known counts); every public
function of onnxnoise/api has one, and none writes into the current folder."""

from __future__ import annotations

import doctest

import pytest

from onnxnoise.api import gate, measure, views


#: Public functions with an example, per module (each function's example runs; none may be dropped).
EXAMPLES = {measure: ("bench_model", "sweep_model", "sweep_experiment"), gate: ("check_model",),
            views: ("make_report", "compare_runs", "model_layers", "noise_models")}


@pytest.mark.parametrize("module", list(EXAMPLES), ids=lambda m: m.__name__)
def test_docstring_examples(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that wrote into the current folder would show here
    finder = doctest.DocTestFinder()
    with_examples = {t.name.rsplit(".", 1)[-1] for t in finder.find(module) if t.examples}
    assert with_examples == set(EXAMPLES[module]) == set(module.__all__)  # every public function has one
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 * len(EXAMPLES[module]) and result.failed == 0
    assert list(tmp_path.iterdir()) == []
