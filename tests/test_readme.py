"""README.md stays a five-minute read whose commands are the real ones.

Its Python block runs (on the demo shipped in the package) and gives the counts the README states; its test
command is the one `.ci/run` runs; it stays short (the reference lives in docs/); every docs page is in the
site's navigation (mkdocs.yml), so a new page cannot go missing from the site.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _fenced(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``text`` in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_python_block_runs_and_gives_the_stated_top1(capsys):
    """The demo: clean top-1 93.20% (932 of 1,000); SNR 10 seeds 0, 1, 2 give 903, 302, 907 (mean 70.4%)."""
    (code,) = _fenced(README, "python")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    summary = namespace["run"].summary
    top1 = dict(zip(summary["strength"].to_list(), summary["top1_acc_mean"].to_list()))
    assert top1[None] == 93.2 and "93.20%" in README and "30.2%" in README  # the collapsed draw, seed 1
    assert top1[100.0] == 93.2
    assert abs(top1[10.0] - (903 + 302 + 907) / 30) < 1e-9  # 70.4
    assert "top1_acc_mean" in capsys.readouterr().out  # the printed table


def test_ci_runs_the_test_command_the_readme_states():
    testing = README.split("## Testing", 1)[1]
    (command,) = _fenced(testing.split("\n## ", 1)[0], "bash")
    assert command.strip() in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "5 minutes" in testing and "15 minutes" in testing  # the suite's duration, quiet and under load


def test_readme_is_short():
    assert len(README.encode("utf-8")) < 7000, "README.md is the five-minute read; move reference text to docs/"


def test_every_docs_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    listed = set(re.findall(r"^\s+- (?:[^:\n]+: )?([\w/-]+\.md)\s*$", nav, flags=re.MULTILINE))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages - listed == set(), "add the page to mkdocs.yml's nav"
    assert listed - pages == set()
