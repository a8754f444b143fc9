"""The package's metadata: one version, the Apache-2.0 license shipped, a changelog entry (issue 22)."""

from __future__ import annotations

from pathlib import Path

import onnxnoise
from onnxnoise.strict_json import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_version_is_declared_once_in_the_package():
    project = _pyproject()
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "onnxnoise/__init__.py"
    assert onnxnoise.__version__.count(".") == 2


def test_license_is_apache_2_and_shipped():
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_changelog_names_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog")
    assert f"## [{onnxnoise.__version__}]" in changelog
    assert "## [Unreleased]" in changelog


def test_ci_checks_the_installed_wheel():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/check_wheel.sh" in ci
    script = (ROOT / "scripts" / "check_wheel.sh").read_text(encoding="utf-8")
    assert "python3 -m venv" in script and "onnxnoise\" bench" in script
