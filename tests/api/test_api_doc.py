"""docs/api.md's example runs as written, against the demo shipped in the package (issue 22)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"


def api_example() -> str:
    """The one ```python block of docs/api.md."""
    blocks = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, f"docs/api.md should hold one python example, found {len(blocks)}"
    return blocks[0]


def test_the_api_example_runs_with_the_demo_counts(tmp_path, monkeypatch, capsys):
    """The example asserts the demo's known counts itself (932 clean, 903 at SNR 10 seed 0; the gate at SNR 100
    passes a 5-point budget on its 5 draws, losing 2, 0, 5, 1, 2 images; the experiment file's sweep has the
    sweep's trial keys); run from an empty folder it writes nothing there and prints only what it prints (the
    API is silent)."""
    script = tmp_path / "example.py"
    script.write_text(api_example(), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace = runpy.run_path(str(script), run_name="__main__")
    assert namespace["run"].baseline_top1 == 93.2
    assert namespace["noisy"]["top1_correct"].to_list() == [903]
    gate = namespace["gate"]
    assert (gate.verdict, gate.draws, gate.out) == ("PASS", 5, None)
    assert [run.ran for run in namespace["done"].runs] == [3]
    assert list(work.iterdir()) == []
    out, err = capsys.readouterr()
    assert "refused: SNR must be finite and > 0" in out
    lines = out.splitlines()  # the 9-line summary table (2 rows), the gate's line, the refusal: no progress, no notes
    assert len(lines) == 11 and lines[0] == "shape: (2, 3)" and lines[-1].startswith("refused: ")
    assert lines[9] == "check: PASS, drop 0.00 points, bounds [-0.31, 0.38]"
    assert err == ""


def test_check_wheel_runs_the_api_example():
    script = (ROOT / "scripts" / "check_wheel.sh").read_text(encoding="utf-8")
    assert "docs/api.md" in script and "api_example" in script


def test_every_seeds_form_the_docs_offer_is_taken():
    """Each `seeds=...` that docs/api.md and bench_model's docstring offer parses to the seeds they say (fresh22
    finding 1: both offered `seeds="0-4"`, which raises ConfigError)."""
    import ast

    from onnxnoise.api import measure
    from onnxnoise.options import parse_seeds, resolve_seeds

    form = r'\bseeds=(\[[^\]]*\]|"[^"]*"|\d+)'
    doc = re.findall(form, DOC.read_text(encoding="utf-8"))
    docstring = re.findall(form, measure.bench_model.__doc__)
    parsed = {text: parse_seeds(ast.literal_eval(text)) for text in (*doc, *docstring)}
    seeds = {text: value if value == "auto" else resolve_seeds(value) for text, value in parsed.items()}
    assert seeds == {"5": [0, 1, 2, 3, 4], "[40, 30]": [40, 30], '"40,30"': [40, 30], '"auto"': "auto",
                     "1": [0]}
