"""The command line's parser (onnxnoise/cli/parser.py): every command's --help fits an 80-column terminal."""

from __future__ import annotations

import argparse

from onnxnoise.cli.parser import build_parser


def _parsers(parser: argparse.ArgumentParser, name: str = "onnxnoise") -> dict[str, argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser below it, by their command line (``onnxnoise data add``)."""
    found = {name: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, child in action.choices.items():
                found |= _parsers(child, f"{name} {command}")
    return found


def test_every_help_fits_80_columns(monkeypatch):
    """fresh22 finding 7: `bench --help` and `check --help` had an 82-character group title at COLUMNS=80 (argparse
    wraps help text to the terminal, not group titles)."""
    monkeypatch.setenv("COLUMNS", "80")
    parsers = _parsers(build_parser())
    assert {"onnxnoise bench", "onnxnoise sweep", "onnxnoise check", "onnxnoise report", "onnxnoise compare",
            "onnxnoise layers", "onnxnoise noise-models", "onnxnoise data", "onnxnoise data add"} <= set(parsers)
    long = {name: line for name, parser in parsers.items() for line in parser.format_help().splitlines()
            if len(line) > 80}
    assert long == {}
    bench = parsers["onnxnoise bench"].format_help().splitlines()
    assert "analog tile input/output stages (DAC, ADC, read noise, tiles; off by default):" in bench
