"""experiment.py: experiment-file messages name keys in the file's own syntax."""

from __future__ import annotations

import re

import pytest

from onnxnoise.errors import ExperimentError
from onnxnoise.experiment import load_experiment
from tests._checks import one_line, run_cli


def test_experiment_file_messages_use_the_file_syntax(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(f'[data]\npath = "{tmp_path / "d.npz"}"\n[models.m]\npath = "{tmp_path / "m.onnx"}"\n'
                    '[[sweeps]]\nnoise = "pcm"\nt = ["1s", "soon"]\n')
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert str(info.value) == (f"{path}: [[sweeps]] #1: `t` value 'soon' is not a number; give a list of numbers, "
                               "e.g. [100, 10, 5]")
    path.write_text(path.read_text().replace('t = ["1s", "soon"]', 't = ["-1d"]'))
    with pytest.raises(ExperimentError, match=re.escape('times must be >= 0 (e.g. ["0s", "1s", "1h", "1d", "30d", '
                                                        '"1y"])')):
        load_experiment(path)


def test_a_deeply_nested_experiment_file_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(ExperimentError, match=r"deep.toml is not valid TOML: the TOML text nests arrays or objects "
                       "more than 64 levels deep$"):
        load_experiment(path)
    code, _, err = run_cli(capsys, "sweep", "--config", path)
    assert code == 2 and one_line(err).endswith("is not valid TOML: the TOML text nests arrays or objects more than "
                                                "64 levels deep")
