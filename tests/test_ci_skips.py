"""tests/conftest.py: under ``CI=true`` a skipped test fails the run; elsewhere a skip stays a skip.

Each case runs pytest in-process (``pytester``) on a small project whose conftest is a copy
of ours, so the real hook and the real data fixtures are exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")

SAMPLE = """
import pytest

def test_passes():
    pass

def test_skips_in_body():
    pytest.skip("no accelerator here")

def test_needs_missing_data(shared_data):
    shared_data("no-such-dataset-for-onnxnoise-tests")
"""

MODULE_SKIP = """
import pytest

pytest.importorskip("no_such_module_for_onnxnoise_tests", reason="optional package missing")

def test_never_collected():
    pass
"""

HEADER = "skipped tests fail the run under CI=true"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder laid out like the repository: ``tests/conftest.py`` copied from ours."""
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "conftest.py").write_text(CONFTEST.read_text())
    return pytester


def _run(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None, **files: str):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    for name, text in files.items():
        (project.path / "tests" / f"{name}.py").write_text(text)
    return project.runpytest("tests", "-p", "no:cacheprovider", "-ra")


def test_skip_fails_the_run_in_ci(project, monkeypatch):
    result = _run(project, monkeypatch, "true", test_sample=SAMPLE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=2)  # still reported as skips, but the run fails
    result.stdout.fnmatch_lines([
        f"*{HEADER}*",
        "SKIPPED (fails in CI) tests/test_sample.py::test_skips_in_body: no accelerator here",
        "SKIPPED (fails in CI) tests/test_sample.py::test_needs_missing_data: *not found: *",
        "2 skipped; in CI every test must run*",
    ])


def test_module_level_skip_fails_the_run_in_ci(project, monkeypatch):
    result = _run(project, monkeypatch, "true", test_optional=MODULE_SKIP)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*{HEADER}*", "SKIPPED (fails in CI) tests/test_optional.py: optional package missing"])


@pytest.mark.parametrize("ci", [None, "false", "1"])
def test_skip_is_a_skip_outside_ci(project, monkeypatch, ci):
    result = _run(project, monkeypatch, ci, test_sample=SAMPLE, test_optional=MODULE_SKIP)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=3)
    assert HEADER not in result.stdout.str()


def test_ci_without_skips_passes(project, monkeypatch):
    result = _run(project, monkeypatch, "true", test_clean="def test_passes():\n    pass\n")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
    assert HEADER not in result.stdout.str()


def test_real_failure_keeps_its_exit_status_in_ci(project, monkeypatch):
    result = _run(project, monkeypatch, "true", test_sample=SAMPLE + "\ndef test_fails():\n    assert False\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1, skipped=2)
    result.stdout.fnmatch_lines([f"*{HEADER}*"])
